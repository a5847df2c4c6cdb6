"""mim_zoo.core.downstream.mmseg: the BEiT/MAE segmentation backbone initialised from a pretraining checkpoint."""

from __future__ import annotations

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope

import mim_zoo  # noqa: F401
from mim_zoo.core.checkpoints.read import CheckpointError
from mim_zoo.core.downstream.mmseg import MIMBEiT
from mim_zoo.core.downstream.pos_embed import resize_pos_embed

TINY = dict(patch_size=4, embed_dims=64, num_layers=2, num_heads=4, init_values=1.0,
            norm_cfg=dict(type="LN", eps=1e-6))


def test_weights_equal_the_pretrained_encoder_and_new_parts_keep_their_init(tiny_checkpoint, tiny_pretrained):
    beit = MIMBEiT(img_size=64, out_indices=[0, 1], mim_checkpoint=tiny_checkpoint, **TINY)
    beit.init_weights()
    own, timm_sd = beit.state_dict(), tiny_pretrained.state_dict
    assert torch.equal(own["layers.1.attn.qkv.bias"], timm_sd["blocks.1.attn.qkv.bias"])  # full q, k, v bias
    assert torch.equal(own["layers.0.ffn.layers.0.0.weight"], timm_sd["blocks.0.mlp.fc1.weight"])
    assert torch.equal(own["layers.1.ln2.bias"], timm_sd["blocks.1.norm2.bias"])
    assert torch.equal(own["pos_embed"], resize_pos_embed(timm_sd["pos_embed"], (8, 8), (16, 16)))
    for i in range(2):  # BEiT's additions: zero relative bias, layer scale = init_values
        assert not own[f"layers.{i}.attn.relative_position_bias_table"].any()
        assert torch.equal(own[f"layers.{i}.gamma_1"], torch.ones(64))


def test_at_the_pretraining_size_the_features_are_the_pretrained_blocks(tiny_checkpoint, tiny_pretrained):
    """Zero relative bias and unit layer scale make each BEiT block compute exactly the pretrained timm block."""
    beit = MIMBEiT(img_size=32, out_indices=[0, 1, 1], mim_checkpoint=tiny_checkpoint, **TINY)
    beit.init_weights()
    beit.eval()
    vit = tiny_pretrained.encoder.vit
    x = torch.randn(2, 3, 32, 32)
    outs = beit(x)
    assert len(outs) == 3 and torch.equal(outs[1], outs[2])  # one map per out_indices entry, repeats allowed
    tokens = vit._pos_embed(vit.patch_embed(x))
    for i, block in enumerate(vit.blocks):
        tokens = block(tokens)
        expected = tokens[:, 1:].reshape(2, 8, 8, 64).permute(0, 3, 1, 2)
        assert torch.allclose(outs[i], expected, atol=1e-5), i


def test_refuses_unchecked_loading_and_a_missing_checkpoint(tiny_checkpoint):
    with pytest.raises(ValueError, match="drop `pretrained`"):
        MIMBEiT(img_size=32, pretrained=tiny_checkpoint, **TINY)
    with pytest.raises(CheckpointError, match="mim_checkpoint"):
        MIMBEiT(img_size=32, **TINY).init_weights()
    with pytest.raises(CheckpointError, match="backbone parameters the checkpoint lacks: layers.2"):
        MIMBEiT(img_size=32, mim_checkpoint=tiny_checkpoint, **dict(TINY, num_layers=3)).init_weights()


def build_tiny_segmentor():
    from mmseg.registry import MODELS

    cfg = Config.fromfile("configs/benchmarks/ade20k/seg_upernet_vit_tiny_cpu.py")
    with DefaultScope.overwrite_default_scope("mmseg"):
        return cfg, MODELS.build(cfg.model)


def test_layer_decay_matches_mmseg_own_constructor_on_every_parameter():
    from mmseg.engine.optimizers import LearningRateDecayOptimizerConstructor

    cfg, model = build_tiny_segmentor()
    with DefaultScope.overwrite_default_scope("mmseg"):
        ours = build_optim_wrapper(model, cfg.optim_wrapper).optimizer.param_groups
    rate = cfg.optim_wrapper.paramwise_cfg.layer_decay_rate
    reference = LearningRateDecayOptimizerConstructor(
        dict(type="OptimWrapper", optimizer=dict(cfg.optim_wrapper.optimizer)),
        dict(num_layers=2, decay_rate=rate))(model).optimizer.param_groups
    names = {id(p): n for n, p in model.named_parameters()}
    expected = {names[id(p)]: (g["lr"], g["weight_decay"]) for g in reference for p in g["params"]}
    got = {g["param_name"]: (g["lr"], g["weight_decay"]) for g in ours}
    assert got.keys() == expected.keys() == {n for n, p in model.named_parameters() if p.requires_grad}
    for name, (lr, wd) in expected.items():
        assert got[name] == pytest.approx((lr, wd)), name
    lr = cfg.optim_wrapper.optimizer.lr  # and the depths themselves: stem 0, block i -> i + 1, heads 3
    assert got["backbone.pos_embed"][0] == pytest.approx(lr * rate ** 3)
    assert got["backbone.layers.1.gamma_2"][0] == pytest.approx(lr * rate)
    assert got["decode_head.conv_seg.weight"][0] == pytest.approx(lr)
