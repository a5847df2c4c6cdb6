"""Official layout -> convert -> train one step -> export each format -> load into each downstream model, for every
algorithm with official checkpoints (MAE, BootMAE, MixMAE).

The official files are tiny models in the official key layouts (``tests/helpers/official.py``) at the size of each
algorithm's ``configs/<algo>/tiny_cpu.py``. Training starts from the converted weights (one AdamW step of lr 1e-3
moves no weight further than that; BootMAE's momentum encoder continues the file's EMA), and every downstream model,
loaded through its library's own path, holds the trained weights bit for bit (nothing is resized: the downstream
models are built at the pretraining resolution).
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

import mim_zoo  # noqa: F401  (registers the plugins)
from mim_zoo.core.checkpoints.export import TARGETS
from mim_zoo.core.checkpoints.read import load_pretrained_encoder
from mim_zoo.core.schedules import evaluate
from mim_zoo.engine.benchmark import recipe_config

from ..downstream.conftest import load_tool
from ..helpers.library_loading import (
    MMPRETRAIN_MIXMIM,
    MMPRETRAIN_VIT,
    assert_loaded,
    assert_same_tensors,
    checkpoint_encoder,
    detector_load_from,
    mmpretrain_classifier,
    mmseg_segmentor,
    timm_model,
    vitdet_init_weights,
)
from ..helpers.official import bootmae_state_dict, mae_state_dict, mixmim_state_dict

LR, WEIGHT_DECAY = 1e-3, 0.05


@dataclass(frozen=True)
class Case:
    config: str
    layout: str
    official: Callable[[int], dict[str, torch.Tensor]]  # seed -> official state dict at the config's size
    ema: bool = False  # the official run kept an EMA (``model_ema``)


CASES = {
    "MAE": Case("configs/mae/tiny_cpu.py", "mae", lambda seed: mae_state_dict(64, 2, 32, 1, 4, 8, seed=seed)),
    "BootMAE": Case("configs/bootmae/tiny_cpu.py", "bootmae",
                    lambda seed: bootmae_state_dict(64, 2, 4, 32, 2, 3, 2, 4, 4, 8, seed=seed), ema=True),
    "MixMAE": Case("configs/mixmae/tiny_cpu.py", "mixmim",
                   lambda seed: mixmim_state_dict(32, [1, 1, 2], [1, 2, 4], [4, 4, 4], 16, 2, 32, 1, 192, seed=seed)),
}
# the tiny encoders in the libraries' backbone arguments
VIT_MMPRETRAIN = dict(arch=dict(embed_dims=64, num_layers=2, num_heads=4, feedforward_channels=256), img_size=32,
                      patch_size=4, frozen_stages=2)
VIT_MMSEG = dict(img_size=(32, 32), patch_size=4, embed_dims=64, num_layers=2, num_heads=4, out_indices=[0, 1])
VIT_VITDET = dict(img_size=32, patch_size=4, embed_dim=64, depth=2, num_heads=4, window_size=4, global_blocks=(1,),
                  pretrain_img_size=32)
SWIN_MMPRETRAIN = dict(arch=dict(embed_dims=32, depths=[1, 1, 2], num_heads=[1, 2, 4]), img_size=32, patch_size=2,
                       window_size=[4, 4, 4])


def load(path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module", params=list(CASES))
def run(request, tmp_path_factory) -> SimpleNamespace:
    """Each algorithm's round trip, once: the official file, its conversion, one training step, the four exports."""
    case, root = CASES[request.param], tmp_path_factory.mktemp(request.param)
    entries = dict(model=case.official(0), epoch=9, args=argparse.Namespace(model="tiny"))
    if case.ema:
        entries["model_ema"] = case.official(7)
    torch.save(entries, root / "official.pth")
    converted = str(root / "converted.pth")
    load_tool("convert_checkpoint").main([str(root / "official.pth"), converted, "--from", case.layout,
                                          "--config", case.config, "--check"])
    batch = Config.fromfile(case.config).train_dataloader.batch_size
    load_tool("train").main([case.config, "--work-dir", str(root / "run"), "--cfg-options", f"load_from={converted}",
                             "train_cfg.max_epochs=1", f"train_dataloader.dataset.indices={batch}",
                             "param_scheduler=[]", f"optim_wrapper.optimizer.lr={LR}"])
    trained = str(root / "run" / "epoch_1.pth")
    pretrained = load_pretrained_encoder(trained)
    exports = {}
    for target in TARGETS:
        out = str(root / f"{target}.pth")
        if target == "timm" and pretrained.canonical != "timm":
            with pytest.raises(SystemExit, match="has no timm model; export --to mmpretrain, mmseg or mmdet"):
                load_tool("export").main([trained, "--to", target, "--out", out])
            continue
        load_tool("export").main([trained, "--to", target, "--out", out])
        exports[target] = out
    return SimpleNamespace(name=request.param, case=case, converted=converted, trained=trained,
                           pretrained=pretrained, exports=exports)


def test_training_continues_from_the_official_weights(run):
    converted, trained = load(run.converted)["state_dict"], load(run.trained)["state_dict"]
    assert converted.keys() == trained.keys()
    moved = 0
    for key, before in converted.items():
        if key.startswith("feature_target.ema."):
            continue  # the momentum encoder: below
        largest = before.abs().max().item()  # one AdamW step: |update| <= lr (1 + wd |w|), plus fp32 rounding
        bound = LR * (1 + WEIGHT_DECAY * largest) + 4 * torch.finfo(torch.float32).eps * largest
        step = (trained[key].float() - before.float()).abs().max().item()
        assert step <= bound, f"{key} moved {step:.2e} > {bound:.2e}: training did not start from the converted file"
        moved += step > LR / 2
    assert moved > len(converted) / 2  # and it trained: most tensors took a full step
    if run.case.ema:  # the file's EMA continued: one EMA step from it towards the trained online encoder
        hook = Config.fromfile(run.case.config).custom_hooks[0]
        momentum = evaluate(hook["momentum"], 0, 1)
        for key, ema in converted.items():
            if key.startswith("feature_target.ema."):
                online = trained["encoder." + key.removeprefix("feature_target.ema.")]
                torch.testing.assert_close(trained[key], momentum * ema + (1 - momentum) * online, rtol=0, atol=1e-6)


def _library_backbone(pretrained, task: str, init_cfg: dict) -> torch.nn.Module:
    """The backbone of the CPU twin of ``task`` for this encoder, initialised through ``init_cfg``."""
    cfg = Config.fromfile(str(recipe_config(task, pretrained, tiny=True)))
    for module in cfg.custom_imports["imports"]:
        importlib.import_module(module)
    registry = importlib.import_module(f"{cfg.default_scope}.registry")
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        backbone = registry.MODELS.build(dict(cfg.model.backbone, mim_checkpoint=None, init_cfg=init_cfg))
        backbone.init_weights()
    return backbone


def test_every_export_loads_into_each_downstream_model_with_the_trained_weights(run):
    stored = checkpoint_encoder(run.trained)
    exported = {target: load(path) for target, path in run.exports.items()}
    state = {target: {k.removeprefix("backbone."): v for k, v in saved["state_dict"].items()}
             for target, saved in exported.items() if target != "timm"}
    dropped = {target: saved["meta"]["mim_zoo"]["dropped"] for target, saved in exported.items() if target != "timm"}
    for target, tensors in state.items():  # each export carries exactly the trained encoder's tensors
        assert_same_tensors(tensors, {k: v for k, v in stored.items() if k not in dropped[target]})
    if run.pretrained.canonical == "timm":
        create = run.pretrained.encoder.timm_create_kwargs()
        assert_loaded(timm_model(run.exports["timm"], create), stored)
        assert_loaded(timm_model(run.exports["timm"], create, num_classes=10), stored, new=("head.",))
        linear = mmpretrain_classifier(run.exports["mmpretrain"], MMPRETRAIN_VIT["linear"], VIT_MMPRETRAIN, 64)
        assert_loaded(linear.backbone, state["mmpretrain"])
        assert_loaded(mmseg_segmentor(run.exports["mmseg"], VIT_MMSEG).backbone, state["mmseg"],
                      new=("gamma_", "relative_position"))
        from mim_zoo.core.downstream.vitdet import ViTDetBackbone

        init_cfg = dict(type="Pretrained", checkpoint=run.exports["mmdet"])
        assert_loaded(vitdet_init_weights(ViTDetBackbone(**VIT_VITDET), init_cfg), exported["mmdet"]["model"],
                      new=("rel_pos",))
        assert_loaded(detector_load_from(run.exports["mmdet"], ViTDetBackbone(**VIT_VITDET)), state["mmdet"],
                      new=("rel_pos",))
    else:  # MixMIM's Swin: mmpretrain's MixMIMTransformer, and mim_zoo's pyramid for mmseg / mmdet
        classifier = mmpretrain_classifier(run.exports["mmpretrain"], MMPRETRAIN_MIXMIM, SWIN_MMPRETRAIN, 128)
        assert_loaded(classifier.backbone, state["mmpretrain"])
        seg = _library_backbone(run.pretrained, "ade20k", dict(type="Pretrained", checkpoint=run.exports["mmseg"]))
        assert_loaded(seg, state["mmseg"], new=("out_norms.",))
        det = _library_backbone(run.pretrained, "coco", dict(type="Pretrained", checkpoint=run.exports["mmdet"],
                                                            prefix="backbone."))
        assert_loaded(det, state["mmdet"], new=("out_norms.",))
