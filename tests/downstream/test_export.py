"""tools/export.py and mim_zoo.downstream.export: each target's file loads into that library's model."""

from __future__ import annotations

import pytest
import timm
import torch

import mim_zoo  # noqa: F401
from mim_zoo.downstream.convert import ConversionError, timm_vit_to_openmmlab
from mim_zoo.downstream.export import export_encoder

from .conftest import run_tool

TINY_TIMM = dict(model_name="vit_tiny_patch16_224", img_size=32, patch_size=4, embed_dim=64, depth=2, num_heads=4)


def test_timm_export_loads_with_timm_pretrained_cfg_overlay(tiny_checkpoint, tiny_pretrained, tmp_path):
    out = tmp_path / "timm.pth"
    proc = run_tool("tools/export.py", tiny_checkpoint, "--to", "timm", "--out", str(out))
    assert "MAE encoder (epoch 2)" in proc.stdout
    model = timm.create_model(pretrained=True, num_classes=0, pretrained_cfg_overlay=dict(file=str(out)), **TINY_TIMM)
    for key, value in tiny_pretrained.state_dict.items():
        assert torch.equal(model.state_dict()[key], value), key


def test_mmpretrain_export_loads_into_mmpretrain_vit(tiny_checkpoint, tiny_pretrained, tmp_path):
    from mmengine.runner import load_checkpoint
    from mmpretrain.models.backbones import VisionTransformer

    out = str(tmp_path / "mmpretrain.pth")
    export_encoder(tiny_checkpoint, "mmpretrain", out)
    vit = VisionTransformer(arch=dict(embed_dims=64, num_layers=2, num_heads=4, feedforward_channels=256),
                            img_size=32, patch_size=4, final_norm=True)
    saved = torch.load(out, weights_only=True)["state_dict"]
    assert set(saved) == {"backbone." + k for k in vit.state_dict()}
    load_checkpoint(vit, out, revise_keys=[(r"^backbone\.", "")], strict=True)
    x = torch.randn(2, 3, 32, 32)
    expected = tiny_pretrained.encoder(x)[:, 0]  # class token after the final norm
    vit.eval()
    assert torch.allclose(vit(x)[0], expected, atol=1e-5)


def test_mmseg_and_mmdet_exports_have_their_backbone_keys(tiny_checkpoint, tmp_path):
    from mim_zoo.downstream.mmdet import ViTDetBackbone
    from mim_zoo.downstream.mmseg import MIMBEiT

    seg, det = str(tmp_path / "seg.pth"), str(tmp_path / "det.pth")
    export_encoder(tiny_checkpoint, "mmseg", seg)
    meta = export_encoder(tiny_checkpoint, "mmdet", det)
    assert set(meta["dropped"]) == {"cls_token", "norm.weight", "norm.bias"}
    beit = MIMBEiT(img_size=32, patch_size=4, embed_dims=64, num_layers=2, num_heads=4, init_values=1.0)
    new = ("gamma_", "relative_position")
    assert set(torch.load(seg, weights_only=True)["state_dict"]) == {k for k in beit.state_dict()
                                                                     if not any(n in k for n in new)}
    vitdet = ViTDetBackbone(img_size=64, patch_size=4, embed_dim=64, depth=2, num_heads=4, window_size=4,
                            global_blocks=(1,), pretrain_img_size=32)
    assert set(torch.load(det, weights_only=True)["state_dict"]) == {"backbone." + k for k in vitdet.state_dict()
                                                                     if "rel_pos" not in k}


def test_bad_requests_are_errors(tiny_checkpoint, tmp_path):
    with pytest.raises(ValueError, match="unknown export target"):
        export_encoder(tiny_checkpoint, "onnx", str(tmp_path / "x.pth"))
    with pytest.raises(ConversionError, match="qk_norm|no conversion rule|not supported"):
        timm_vit_to_openmmlab({"blocks.0.attn.q_norm.weight": torch.zeros(1)})
