"""Every full-size benchmark config builds (model, optimizer with layer decay, data pipeline), without data.

Also checks the recipe numbers each config derives (batch = GPUs x per-GPU batch, learning rate) and that every
backbone is a checked mim_zoo adapter still waiting for its checkpoint (``mim_checkpoint=None``).
"""

from __future__ import annotations

import importlib
import re
import warnings
from pathlib import Path

import pytest
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope

import mim_zoo  # noqa: F401
from mim_zoo.core.downstream.loading import PretrainedBackboneMixin

from ..conftest import CATALOGUE

# the networks the Runner trains (the depth probe fits linear maps on frozen features: test_depth_probe.py)
RECIPES = {r.name: r for r in CATALOGUE.recipes() if r.task != "depth_probe"}
CONFIGS = [Path(r.config) for r in RECIPES.values() if not r.twin_of]
TINY = {Path(r.config): Path(RECIPES[r.twin_of].config) for r in RECIPES.values() if r.twin_of}  # twin -> full
LIBRARY = {"mmpretrain": "mmpretrain.registry", "mmseg": "mmseg.registry", "mmdet": "mmdet.registry"}


def load(path: Path) -> Config:
    cfg = Config.fromfile(str(path))
    for module in cfg.custom_imports["imports"]:
        importlib.import_module(module)
    return cfg


def test_the_benchmark_configs_are_all_here():
    names = {p.name for p in CONFIGS}
    assert len(CONFIGS) == 12, names
    assert {p.parent.name for p in CONFIGS} == {"imagenet", "ade20k", "coco"}
    assert len(TINY) == 8  # one per task and encoder family (tiny ViT, tiny MixMIM Swin)


@pytest.mark.slow
@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_full_config_builds_model_optimizer_and_pipeline(path: Path):
    cfg = load(path)
    registry = importlib.import_module(LIBRARY[cfg.default_scope])
    assert cfg.model.backbone.mim_checkpoint is None
    assert cfg.batch_size == cfg.num_gpus * cfg.batch_per_gpu  # what tools/train.py checks the launch against
    assert cfg.train_dataloader.batch_size == cfg.batch_per_gpu
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        model = registry.MODELS.build(cfg.model)
        assert isinstance(model.backbone, PretrainedBackboneMixin)
        wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
        trainable = {id(p) for p in model.parameters() if p.requires_grad}
        assert trainable <= {id(p) for g in wrapper.optimizer.param_groups for p in g["params"]}
        if path.name.startswith("linear_"):  # a linear probe trains the linear head only (BatchNorm without affine)
            assert {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad} == {"head"}
        for loader in ("train_dataloader", "val_dataloader", "test_dataloader"):
            # mmengine passes every key of collate_fn but `type` to the function: none may be left from inheritance
            assert set(cfg[loader].get("collate_fn") or {"type": None}) == {"type"}, cfg[loader].collate_fn
            dataset = cfg[loader].dataset
            assert registry.DATASETS.get(dataset.type) is not None, dataset.type
            for transform in dataset.pipeline:
                registry.TRANSFORMS.build(transform)
        if "paramwise_cfg" in cfg.optim_wrapper and "layer_decay_rate" in cfg.optim_wrapper.paramwise_cfg:
            scales = {g.get("lr_scale") for g in wrapper.optimizer.param_groups}
            assert min(scales) < 1.0 == max(scales)  # decayed encoder layers, undecayed head


def test_derived_numbers():
    vitdet = Config.fromfile("configs/benchmarks/coco/det_mask-rcnn_vitdet-b16_mae-pre_16xb4-lsj-100e_coco.py")
    assert (vitdet.max_iters, vitdet.milestones) == (184375, [163889, 177546])  # ViTDet's own numbers
    short = Config.fromfile("configs/benchmarks/coco/det_mask-rcnn_vitdet-b16_mae-pre_16xb4-lsj-25e_coco.py")
    assert short.train_cfg.max_iters == short.max_iters == 46094
    assert short.param_scheduler[1].milestones == [round(46094 * 8 / 9), round(46094 * 26 / 27)]
    mae_ft = Config.fromfile("configs/benchmarks/imagenet/finetune_vit-b16_mae-pre_8xb128-coslr-100e_in1k.py")
    assert mae_ft.optim_wrapper.optimizer.lr == pytest.approx(2e-3)
    boot_ft = Config.fromfile("configs/benchmarks/imagenet/finetune_vit-b16_bootmae-pre_8xb256-coslr-100e_in1k.py")
    assert (boot_ft.optim_wrapper.optimizer.lr, boot_ft.optim_wrapper.paramwise_cfg.layer_decay_rate) == (5e-3, 0.6)
    assert boot_ft.param_scheduler[0].end == 20 and boot_ft.custom_hooks[0].momentum == pytest.approx(2e-4)
    boot_lin = Config.fromfile(
        "configs/benchmarks/imagenet/linear_vit-b16_bootmae-pre_8xb1024x2-lars-coslr-90e_in1k.py")
    assert boot_lin.optim_wrapper.optimizer.lr == pytest.approx(6.4) and boot_lin.model.backbone.frozen_stages == 10


@pytest.mark.parametrize("path", sorted(TINY), ids=lambda p: p.name)
def test_tiny_twins_keep_the_model_and_optimizer_of_their_full_config(path: Path):
    # the twin inherits the full config its metafile names, or the twin of a sibling that full config is a delta of
    # (the MixMIM twins are the ViT twins of their task with the backbone swapped, as their full configs are)
    ancestors, full = _local_bases(path), TINY[path]
    assert full in ancestors or any(TINY.get(a) in _local_bases(full) for a in ancestors), ancestors
    twin = Config.fromfile(str(path))
    base = Config.fromfile(str(TINY[path]))
    assert twin.model.type == base.model.type and twin.model.backbone.type == base.model.backbone.type
    assert (twin.model.get("neck") or {}).get("type") == (base.model.get("neck") or {}).get("type")
    assert twin.optim_wrapper.get("constructor") == base.optim_wrapper.get("constructor")
    assert twin.optim_wrapper.optimizer.type == base.optim_wrapper.optimizer.type
    assert [s.type for s in twin.param_scheduler] == [s.type for s in base.param_scheduler]
    assert twin.val_evaluator.type == base.val_evaluator.type


def _local_bases(path: Path) -> list[Path]:
    """The chain of configs of this folder that ``path`` inherits (``_base_ = './<name>'``), nearest first."""
    chain = []
    while True:
        name = re.search(r"^_base_ = \[?\s*'([^']+)'", path.read_text(), re.M).group(1)  # the first base
        if not name.startswith("./"):
            return chain
        path = path.parent / name.removeprefix("./")
        chain.append(path)


def test_a_launch_that_changes_the_batch_of_a_benchmark_config_is_warned_about(monkeypatch):
    """Benchmark configs (no recipe) compute their lr in the file for num_gpus x batch_per_gpu: a launch with another
    world size is told so (the pretraining configs instead resolve their recipe for the launch, without a warning)."""
    from mim_zoo.engine.config import prepare_config

    path = "configs/benchmarks/imagenet/linear_vit_tiny_cpu.py"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        prepare_config(Config.fromfile(path))  # launched as written: 1 process x 32
    assert not [w for w in caught if "learning rate" in str(w.message)]
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.warns(UserWarning, match=r"total batch of 32 \(1 GPUs x 32\), but this run has 2 process\(es\) x "
                                         r"32 = 64"):
        prepare_config(Config.fromfile(path))
