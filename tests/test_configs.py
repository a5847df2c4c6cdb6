"""Every pretraining config loads, its derived numbers are computed from the recipe, full-size models build."""

import pytest
from mmengine.config import Config

from mim_zoo.registry import MODELS

from .conftest import CATALOGUE, REPO

PRETRAIN_CONFIGS = CATALOGUE.configs()


@pytest.mark.parametrize("path", PRETRAIN_CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_config_loads_and_derives_its_numbers(path):
    cfg = Config.fromfile(str(path))
    assert cfg.model.type is not None and cfg.train_cfg.max_epochs > 0
    if "batch_size" in cfg:
        assert cfg.batch_size == cfg.num_gpus * cfg.train_dataloader.batch_size
        assert cfg.optim_wrapper.optimizer.lr == pytest.approx(cfg.base_lr * cfg.batch_size / 256)
    warmup, cosine = cfg.param_scheduler
    assert warmup.end == cosine.begin == cfg.warmup_epochs and cosine.end == cfg.train_cfg.max_epochs


def test_mae_recipe_is_the_official_one():
    """facebookresearch/mae PRETRAIN.md / main_pretrain.py."""
    b800 = Config.fromfile(str(REPO / "configs/mae/vitb_800e.py"))
    assert b800.batch_size == 4096 and b800.optim_wrapper.optimizer.lr == pytest.approx(2.4e-3)
    assert b800.optim_wrapper.optimizer.betas == (0.9, 0.95) and b800.optim_wrapper.optimizer.weight_decay == 0.05
    assert b800.warmup_epochs == 40 and b800.train_cfg.max_epochs == 800
    assert b800.model.masking.ratio == 0.75 and b800.model.target.norm == "patch"
    assert dict(b800.model.decoder) == dict(embed_dim=512, depth=8, num_heads=16)
    for impl, choice in b800.pipelines.items():  # every input pipeline the config can switch to
        crop = next(step for step in choice.pipeline if "crop_ratio_range" in step)
        assert crop.crop_ratio_range == (0.2, 1.0) and crop.interpolation == "bicubic", impl
        assert any(step.type.__name__.endswith("RandomFlip") and step.prob == 0.5 for step in choice.pipeline), impl
    b1600 = Config.fromfile(str(REPO / "configs/mae/vitb_1600e.py"))
    assert b1600.train_cfg.max_epochs == b1600.param_scheduler[1].end == 1600
    large = Config.fromfile(str(REPO / "configs/mae/vitl_800e.py"))
    assert large.model.encoder.arch == "vit_large_patch16_224" and large.batch_size == 4096


@pytest.mark.parametrize("name", ["mae/vitb_800e.py", "mae/vitl_800e.py"])
def test_full_size_models_build(name):
    model = MODELS.build(Config.fromfile(str(REPO / "configs" / name)).model)
    assert model.encoder.grid_size == (14, 14)
