"""mim_zoo.core.downstream.mixmim_pyramid: MixMIM's Swin as a 4-level pyramid, equal to mmpretrain's where they
overlap."""

from __future__ import annotations

import torch
from mmpretrain.models.backbones import MixMIMTransformer

import mim_zoo  # noqa: F401
from mim_zoo.core.checkpoints.read import PretrainedEncoder
from mim_zoo.core.downstream.loading import load_checked
from mim_zoo.core.downstream.mixmim_pyramid import MIMMixMIMPyramid, window_block_forward

ARCH = dict(embed_dims=16, depths=[1, 1, 2, 1], num_heads=[1, 2, 2, 4])
WINDOWS = [4, 4, 4, 2]


def pretrained_mixmim() -> tuple[MixMIMTransformer, PretrainedEncoder]:
    torch.manual_seed(0)
    source = MixMIMTransformer(arch=ARCH, img_size=64, window_size=WINDOWS)
    source.eval()  # mmpretrain backbones' train() returns None, so no chaining
    for name, param in source.named_parameters():
        if "relative_position_bias_table" in name or name == "absolute_pos_embed":
            param.data.normal_(std=0.1)  # non-trivial tables, so that a wrong window or position shows
    return source, PretrainedEncoder(encoder=source, state_dict=source.state_dict(), canonical="mmpretrain",
                                     method="MixMAE", epoch=1, iteration=1, encoder_cfg={}, source="memory")


def loaded_pyramid(pretrained: PretrainedEncoder) -> MIMMixMIMPyramid:
    pyramid = MIMMixMIMPyramid(arch=ARCH, window_size=WINDOWS, pretrain_img_size=64)
    report = load_checked(pyramid, pyramid.convert_pretrained(pretrained)[0], pyramid.new_keys, "memory")
    assert report.initialised == [f"out_norms.{i}.{p}" for i in range(3) for p in ("weight", "bias")]
    pyramid.eval()
    return pyramid


def test_padded_window_block_equals_mixmim_block_when_windows_tile_the_map():
    source, _ = pretrained_mixmim()
    block = source.layers[0].blocks[0]  # 16 x 16 tokens, window 4
    x = torch.randn(2, 256, 16)
    assert torch.allclose(window_block_forward(block, x, (16, 16)), block(x), atol=1e-6)


def test_last_level_equals_the_pretrained_encoder_features():
    source, pretrained = pretrained_mixmim()
    pyramid = loaded_pyramid(pretrained)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        tokens, _ = source.patch_embed(x)
        tokens = tokens + source.absolute_pos_embed
        for layer in source.layers:
            tokens = layer(tokens)
        expected = source.norm(tokens).reshape(2, 2, 2, 128).permute(0, 3, 1, 2)
        outs = pyramid(x)
    assert [tuple(o.shape) for o in outs] == [(2, 16, 16, 16), (2, 32, 8, 8), (2, 64, 4, 4), (2, 128, 2, 2)]
    assert torch.allclose(outs[3], expected, atol=1e-5)


def test_any_input_size_divisible_by_the_patch():
    _, pretrained = pretrained_mixmim()
    outs = loaded_pyramid(pretrained)(torch.randn(1, 3, 72, 40))  # 18 x 10 tokens: windows padded
    assert [tuple(o.shape[-2:]) for o in outs] == [(18, 10), (9, 5), (5, 3), (3, 2)]


def test_layer_depths_follow_mmpretrain_mixmim():
    pyramid = MIMMixMIMPyramid(arch=ARCH, window_size=WINDOWS, pretrain_img_size=64)
    depth = {n: pyramid.get_layer_depth("backbone." + n, "backbone.") for n, _ in pyramid.named_parameters()}
    assert depth["patch_embed.projection.weight"] == (0, 7)
    assert depth["layers.0.blocks.0.attn.qkv.weight"] == (1, 7)
    assert depth["layers.2.blocks.1.ffn.layers.1.weight"] == (4, 7)
    assert depth["layers.2.downsample.reduction.weight"] == (4, 7)
    assert depth["out_norms.0.weight"] == (5, 7) and depth["norm.weight"] == (5, 7)
    assert pyramid.get_layer_depth("decode_head.conv_seg.weight", "backbone.") == (6, 7)
