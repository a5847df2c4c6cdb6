"""The MAE peers: mmpretrain's MAE built at mim_zoo's geometry computes the same FLOPs; the official-code shims.

facebookresearch/mae itself is not vendored: set MIM_ZOO_MAE_CHECKOUT to a checkout to run its test.
"""

from __future__ import annotations

import os
import sys
import warnings

import numpy as np
import pytest
import torch
from timm.models.vision_transformer import Block

from benchmarks.common import CATALOGUE, build_algorithm, build_optimizer, load_config, total_loss
from benchmarks.measure import Subject, step_flops, timed_step
from benchmarks.peers import (
    VIT_B16,
    MAEGeometry,
    _numpy_float_alias,
    _timm_block_without_qk_scale,
    mmpretrain_mae,
    official_mae,
)


@pytest.fixture(scope="module")
def tiny_mae() -> Subject:
    cfg = load_config(CATALOGUE.tiny_config("MAE"))
    torch.manual_seed(0)
    model, _ = build_algorithm(cfg)
    return Subject("MAE", model, lambda x: total_loss(model(x, mode="loss")), build_optimizer(model, cfg.optim_wrapper),
                   image_size=(32, 32))


def test_geometry_is_read_from_the_built_mae(tiny_mae):
    geo = MAEGeometry.of(tiny_mae.model)
    assert geo == MAEGeometry(img_size=32, patch_size=4, embed_dim=64, depth=2, num_heads=4, mlp_ratio=4.0,
                              decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=4, mask_ratio=0.75,
                              norm_pix=True)


def test_paper_config_geometry_is_vit_b16():
    from mim_zoo.registry import MODELS

    cfg = load_config("configs/mae/vitb_800e.py")
    with torch.device("meta"):  # geometry only: no 112M-parameter allocation
        model = MODELS.build(cfg.model)
    assert MAEGeometry.of(model) == VIT_B16


def test_mmpretrain_mae_matches_mim_zoo_flops_and_trains(tiny_mae):
    peer = mmpretrain_mae(MAEGeometry.of(tiny_mae.model), torch.device("cpu"))
    images = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert step_flops(peer, images, "fp32") == step_flops(tiny_mae, images, "fp32")  # the same computation
    assert sum(p.numel() for p in peer.model.parameters() if p.requires_grad) == \
        sum(p.numel() for p in tiny_mae.model.parameters() if p.requires_grad)
    before = [p.detach().clone() for p in peer.model.parameters() if p.requires_grad]
    timed_step(peer, images, "fp32")
    after = [p for p in peer.model.parameters() if p.requires_grad]
    assert all(not torch.equal(a, b) for a, b in zip(before, after, strict=True) if a.dim() > 1)
    assert peer.info["peer"] and peer.group == "MAE"


def test_qk_scale_shim_accepts_only_the_default():
    block = _timm_block_without_qk_scale(Block)(16, 2, 4.0, qkv_bias=True, qk_scale=None)
    assert isinstance(block, Block) and block.attn.scale == (16 // 2) ** -0.5
    with pytest.raises(ValueError, match="qk_scale"):
        _timm_block_without_qk_scale(Block)(16, 2, 4.0, qkv_bias=True, qk_scale=0.5)


def test_numpy_float_alias_exists_only_inside_the_block():
    with _numpy_float_alias():
        assert np.arange(3, dtype=np.float).dtype == np.float64  # what util/pos_embed.py needs
    with warnings.catch_warnings(), pytest.raises(AttributeError):
        warnings.simplefilter("ignore")
        np.float  # noqa: B018  (removed in numpy 1.24, and the shim leaves no trace)


def test_official_mae_refuses_a_directory_that_is_not_a_checkout(tmp_path):
    with pytest.raises(FileNotFoundError, match="facebookresearch/mae"):
        official_mae(tmp_path, VIT_B16, torch.device("cpu"))


@pytest.mark.skipif(not os.environ.get("MIM_ZOO_MAE_CHECKOUT"), reason="set MIM_ZOO_MAE_CHECKOUT to a mae checkout")
def test_official_mae_matches_mim_zoo_flops(tiny_mae):
    peer = official_mae(os.environ["MIM_ZOO_MAE_CHECKOUT"], MAEGeometry.of(tiny_mae.model), torch.device("cpu"))
    images = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert step_flops(peer, images, "fp32") == step_flops(tiny_mae, images, "fp32")
    assert "util.pos_embed" not in sys.modules  # the checkout's `util` package does not leak
