"""mim_zoo.core.downstream.vitdet: ViTDet's backbone, simple feature pyramid and layer decay (detectron2 semantics)."""

from __future__ import annotations

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope
from timm.models.vision_transformer_sam import Block
from torch import nn

import mim_zoo  # noqa: F401
from mim_zoo.core.downstream.mmdet import SimpleFeaturePyramid, ViTDetBackbone
from mim_zoo.core.downstream.pos_embed import resize_pos_embed

TINY = dict(patch_size=4, embed_dim=64, depth=2, num_heads=4, window_size=4, global_blocks=(1,), pretrain_img_size=32)


def test_weights_equal_the_pretrained_encoder(tiny_checkpoint, tiny_pretrained):
    vitdet = ViTDetBackbone(img_size=64, mim_checkpoint=tiny_checkpoint, **TINY)
    vitdet.init_weights()
    own = vitdet.state_dict()
    for key, value in tiny_pretrained.state_dict.items():
        if key in ("cls_token", "norm.weight", "norm.bias"):
            assert key not in own
        else:
            assert torch.equal(own[key], value), key  # pos_embed too: kept at the pretraining grid
    assert not own["blocks.0.attn.rel_pos_h"].any() and own["blocks.0.attn.rel_pos_h"].shape == (7, 16)
    assert own["blocks.1.attn.rel_pos_w"].shape == (31, 16)  # global block: 2 * 16 - 1 positions at 64 px
    # per forward the grid part is interpolated (ViTDet's get_abs_pos); at the pretraining grid it is the table
    assert torch.equal(vitdet.abs_pos((8, 8)).reshape(1, 64, 64), own["pos_embed"][:, 1:])
    grid16 = resize_pos_embed(own["pos_embed"], (8, 8), (16, 16))[:, 1:]
    assert torch.equal(vitdet.abs_pos((16, 16)).reshape(1, 256, 64), grid16)


def test_window_attention_is_global_attention_inside_each_window():
    torch.manual_seed(0)
    windowed = Block(32, 4, use_rel_pos=True, window_size=4, input_size=(8, 8)).eval()
    single = Block(32, 4, use_rel_pos=True, window_size=0, input_size=(4, 4)).eval()
    single.load_state_dict(windowed.state_dict())
    with torch.no_grad():
        for p in (windowed.attn.rel_pos_h, windowed.attn.rel_pos_w):
            p.normal_()
        single.load_state_dict(windowed.state_dict())
        x = torch.randn(2, 8, 8, 32)
        out = windowed(x)
        for r in (0, 4):
            for c in (0, 4):
                assert torch.allclose(out[:, r:r + 4, c:c + 4], single(x[:, r:r + 4, c:c + 4]), atol=1e-5)


def test_backbone_runs_at_sizes_that_need_window_padding(tiny_checkpoint):
    vitdet = ViTDetBackbone(img_size=64, mim_checkpoint=tiny_checkpoint, **TINY)
    vitdet.init_weights()
    (out,) = vitdet(torch.randn(1, 3, 40, 56))  # 10 x 14 tokens, windows of 4 padded
    assert out.shape == (1, 64, 10, 14)


def test_simple_feature_pyramid_levels():
    fpn = SimpleFeaturePyramid(in_channels=64, out_channels=32, num_outs=5)
    outs = fpn((torch.randn(2, 64, 16, 16),))
    assert [tuple(o.shape) for o in outs] == [(2, 32, 64, 64), (2, 32, 32, 32), (2, 32, 16, 16), (2, 32, 8, 8),
                                              (2, 32, 4, 4)]
    assert all(c.bias is None for c in fpn.modules() if type(c) is nn.Conv2d)  # a norm follows: no bias
    # compiled mmcv's RoIAlign reads its input as contiguous [B, C, H, W] whatever the strides: a channels-last view
    # out of LayerNorm2d would be pooled wrongly (tests/engine/test_mmcv_ops.py shows the hazard)
    assert all(o.is_contiguous() for o in outs)


def detectron2_lr_scale(name: str, rate: float, num_layers: int) -> float:
    """detectron2 modeling/backbone/vit.py:get_vit_lr_decay_rate, restated."""
    layer_id = num_layers + 1
    if name.startswith("backbone"):
        if ".pos_embed" in name or ".patch_embed" in name:
            layer_id = 0
        elif ".blocks." in name and ".residual." not in name:
            layer_id = int(name[name.find(".blocks."):].split(".")[2]) + 1
    return rate ** (num_layers + 1 - layer_id)


def test_layer_decay_and_weight_decay_follow_vitdet_on_every_parameter():
    from mmdet.registry import MODELS

    cfg = Config.fromfile("configs/benchmarks/coco/det_mask-rcnn_vitdet_tiny_cpu.py")
    with DefaultScope.overwrite_default_scope("mmdet"):
        model = MODELS.build(cfg.model)
        groups = build_optim_wrapper(model, cfg.optim_wrapper).optimizer.param_groups
    lr, wd = cfg.optim_wrapper.optimizer.lr, cfg.optim_wrapper.optimizer.weight_decay
    rate = cfg.optim_wrapper.paramwise_cfg.layer_decay_rate
    norms = {f"{m}.{p}" for m, mod in model.named_modules() if isinstance(mod, (nn.LayerNorm, nn.GroupNorm,
                                                                                  nn.modules.batchnorm._BatchNorm))
             for p, _ in mod.named_parameters(recurse=False)}
    assert any(n.startswith("neck.") for n in norms) and any(n.startswith("roi_head.") for n in norms)
    got = {g["param_name"]: g for g in groups}
    assert set(got) == {n for n, p in model.named_parameters() if p.requires_grad}
    for name, group in got.items():
        assert group["lr"] == pytest.approx(lr * detectron2_lr_scale(name, rate, 2)), name
        expected_wd = 0.0 if name in norms or "pos_embed" in name else wd
        assert group["weight_decay"] == pytest.approx(expected_wd), name
