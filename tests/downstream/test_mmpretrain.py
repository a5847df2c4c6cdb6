"""mim_zoo.core.downstream.mmpretrain: ImageNet backbones initialised from a pretraining checkpoint."""

from __future__ import annotations

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper

import mim_zoo  # noqa: F401
from mim_zoo.core.checkpoints.read import CheckpointError, PretrainedEncoder, load_pretrained_encoder
from mim_zoo.core.downstream.mmpretrain import MIMMixMIMTransformer, MIMVisionTransformer
from mim_zoo.core.downstream.pos_embed import resize_pos_embed

TINY_ARCH = dict(embed_dims=64, num_layers=2, num_heads=4, feedforward_channels=256)


def tiny_vit(checkpoint: str | None, **kwargs) -> MIMVisionTransformer:
    args = dict(arch=TINY_ARCH, img_size=32, patch_size=4, mim_checkpoint=checkpoint)
    return MIMVisionTransformer(**{**args, **kwargs})


def test_weights_equal_the_pretrained_encoder_up_to_pos_embed_resizing(tiny_checkpoint, tiny_pretrained):
    vit = tiny_vit(tiny_checkpoint, img_size=64, out_type="avg_featmap", final_norm=False)
    before = vit.ln2.weight.detach().clone()
    vit.init_weights()
    own, timm_sd = vit.state_dict(), tiny_pretrained.state_dict
    assert torch.equal(own["patch_embed.projection.weight"], timm_sd["patch_embed.proj.weight"])
    assert torch.equal(own["cls_token"], timm_sd["cls_token"])
    for i in range(2):
        pairs = {"ln1": "norm1", "attn.qkv": "attn.qkv", "attn.proj": "attn.proj", "ln2": "norm2",
                 "ffn.layers.0.0": "mlp.fc1", "ffn.layers.1": "mlp.fc2"}
        for ours, theirs in pairs.items():
            for kind in ("weight", "bias"):
                assert torch.equal(own[f"layers.{i}.{ours}.{kind}"], timm_sd[f"blocks.{i}.{theirs}.{kind}"])
    assert torch.equal(own["pos_embed"], resize_pos_embed(timm_sd["pos_embed"], (8, 8), (16, 16)))
    assert torch.equal(own["ln2.weight"], before)  # the new fc_norm keeps its own init


def test_forward_equals_the_timm_encoder_at_the_pretraining_size(tiny_checkpoint, tiny_pretrained):
    vit = tiny_vit(tiny_checkpoint)  # class token after the final norm, as the linear probe reads it
    vit.init_weights()
    vit.eval()
    x = torch.randn(3, 3, 32, 32)
    assert torch.allclose(vit(x)[0], tiny_pretrained.encoder(x)[:, 0], atol=1e-5)


def test_linear_probe_truncation_keeps_the_first_blocks(tiny_checkpoint, tiny_pretrained):
    arch = dict(TINY_ARCH, num_layers=1)
    vit = tiny_vit(tiny_checkpoint, arch=arch, truncate_pretrained=True, out_type="avg_featmap",
                   final_norm=False, frozen_stages=1)
    report = vit.load_pretraining(tiny_checkpoint)
    assert {k for k in report.dropped if k.startswith("blocks.1.")} == {k for k in tiny_pretrained.state_dict
                                                                        if k.startswith("blocks.1.")}
    assert not any(p.requires_grad for p in vit.parameters())  # linear probe: ln2 (fc_norm) frozen too
    with pytest.raises(CheckpointError, match="checkpoint tensors the backbone lacks: layers.1"):
        tiny_vit(tiny_checkpoint, arch=arch).init_weights()  # a shallower model without truncate: an error


def test_no_checkpoint_or_a_wrong_size_is_an_error(tiny_checkpoint):
    with pytest.raises(CheckpointError, match="never starts from a random encoder"):
        tiny_vit(None).init_weights()
    with pytest.raises(CheckpointError, match="shape mismatch"):
        tiny_vit(tiny_checkpoint, arch=dict(TINY_ARCH, embed_dims=32, feedforward_channels=128)).init_weights()
    with pytest.raises(CheckpointError, match="takes mmpretrain encoders"):
        MIMMixMIMTransformer(arch=dict(embed_dims=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1]),
                             img_size=32, window_size=[2, 2, 2, 1], mim_checkpoint=tiny_checkpoint).init_weights()


def test_mixmim_loads_its_own_layout_and_resizes_positions():
    from mmpretrain.models.backbones import MixMIMTransformer

    arch = dict(embed_dims=16, depths=[1, 1, 2, 1], num_heads=[1, 2, 2, 4])
    source = MixMIMTransformer(arch=arch, img_size=64, window_size=[4, 4, 4, 2])
    source.absolute_pos_embed.data.normal_()
    pretrained = PretrainedEncoder(encoder=source, state_dict=source.state_dict(), canonical="mmpretrain",
                                   method="MixMAE", epoch=1, iteration=1, encoder_cfg={}, source="memory")
    target = MIMMixMIMTransformer(arch=arch, img_size=128, window_size=[4, 4, 4, 2])
    converted, resized = target.convert_pretrained(pretrained)
    assert resized == {"absolute_pos_embed": (torch.Size([1, 256, 16]), torch.Size([1, 1024, 16]))}
    target.load_state_dict(converted.state_dict)
    assert torch.equal(target.absolute_pos_embed, resize_pos_embed(source.absolute_pos_embed, (16, 16), (32, 32), 0))
    assert torch.equal(target.layers[2].blocks[1].attn.qkv.weight, source.layers[2].blocks[1].attn.qkv.weight)


def test_layer_decay_of_the_finetune_twin_gives_every_parameter_its_depth(tiny_checkpoint):
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS

    cfg = Config.fromfile("configs/benchmarks/imagenet/finetune_vit_tiny_cpu.py")
    with DefaultScope.overwrite_default_scope("mmpretrain"):
        model = MODELS.build(cfg.model)
        wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    rate, lr = cfg.optim_wrapper.paramwise_cfg.layer_decay_rate, cfg.optim_wrapper.optimizer.lr
    expected_depth = {"backbone.cls_token": 0, "backbone.pos_embed": 0, "backbone.patch_embed.projection.weight": 0,
                      "backbone.layers.0.attn.qkv.weight": 1, "backbone.layers.1.ffn.layers.1.bias": 2,
                      "backbone.ln2.weight": 3, "head.fc.weight": 3}
    groups = {g["param_name"]: g for g in wrapper.optimizer.param_groups}
    assert set(groups) == {n for n, p in model.named_parameters() if p.requires_grad}
    for name, depth in expected_depth.items():
        assert groups[name]["lr"] == pytest.approx(lr * rate ** (3 - depth)), name
    for name, group in groups.items():  # every block parameter sits at its block's depth
        if name.startswith("backbone.layers."):
            assert group["layer_id"] == int(name.split(".")[2]) + 1, name
    assert groups["backbone.layers.0.attn.qkv.bias"]["weight_decay"] == 0.0
    assert groups["backbone.layers.0.attn.qkv.weight"]["weight_decay"] == pytest.approx(0.05)


TINY_SWIN = dict(arch=dict(embed_dims=32, depths=[1, 1, 2], num_heads=[1, 2, 4]), img_size=32, patch_size=2,
                 window_size=[4, 4, 4])  # the encoder of configs/mixmae/tiny_cpu.py


def test_mixmim_linear_probe_reads_the_frozen_pooled_final_features(pretraining_checkpoint):
    checkpoint = pretraining_checkpoint("MixMAE")
    encoder = load_pretrained_encoder(checkpoint).encoder
    probe = MIMMixMIMTransformer(**TINY_SWIN, frozen_stages=3, mim_checkpoint=checkpoint)
    probe.init_weights()
    probe.train()  # the Runner's call: the frozen encoder stays in eval mode
    assert not any(p.requires_grad for p in probe.parameters())
    frozen = (probe.patch_embed, probe.drop_after_pos, *probe.layers, probe.norm)
    assert not any(m.training for part in frozen for m in part.modules())
    x = torch.randn(2, 3, 32, 32)
    assert torch.allclose(probe(x)[0], encoder(x).mean(dim=1), atol=1e-5)  # average of the final-normed tokens

    partly = MIMMixMIMTransformer(**TINY_SWIN, frozen_stages=1)
    trainable = {name.split(".")[0] + name.split(".")[1] * name.startswith("layers")
                 for name, p in partly.named_parameters() if p.requires_grad}
    assert trainable == {"layers1", "layers2", "norm"}
    with pytest.raises(ValueError, match=r"frozen_stages must be in \[0, 3\]"):
        MIMMixMIMTransformer(**TINY_SWIN, frozen_stages=4)
