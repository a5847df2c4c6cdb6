"""tools/export.py and mim_zoo.core.checkpoints.export: each target's file loads into that library's model, and for every
algorithm (BootMAE, MR-MAE, a combo, MixMAE) the loader and each export carry exactly the pretraining weights."""

from __future__ import annotations

import importlib

import pytest
import timm
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

import mim_zoo  # noqa: F401
from mim_zoo.core.downstream import load_pretrained_encoder
from mim_zoo.engine.benchmark import method_label, recipe_config
from mim_zoo.core.checkpoints.layouts import ConversionError, Converted, timm_vit_to_openmmlab
from mim_zoo.core.checkpoints.export import export_encoder
from mim_zoo.core.downstream.loading import load_checked

from .conftest import load_tool, run_tool

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
    from mim_zoo.core.downstream.mmdet import ViTDetBackbone
    from mim_zoo.core.downstream.mmseg import MIMBEiT

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


# --- every algorithm: the loader and each export give the pretraining weights -------------------------------------
# tiny config -> the method label of its checkpoint's results row
ALGORITHMS = {"BootMAE": "BootMAE", "MRMAE": "MRMAE", "mae_momentum": "MAE+MomentumTarget", "MixMAE": "MixMAE"}
TWIN_OF_TARGET = {"mmpretrain": "linear", "mmseg": "ade20k", "mmdet": "coco"}  # a backbone in that layout


def checkpoint_encoder(path: str) -> dict[str, torch.Tensor]:
    """The encoder tensors as stored in a pretraining checkpoint, keyed as the canonical model names them
    (``ViTEncoder`` holds timm's ViT at ``encoder.vit``, ``MixMIMEncoder`` mmpretrain's model at ``encoder.mixmim``)."""
    state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    encoder = {k: v for k, v in state.items() if k.startswith("encoder.")}
    assert all(k.startswith(("encoder.vit.", "encoder.mixmim.")) for k in encoder)
    return {k.split(".", 2)[2]: v for k, v in encoder.items()}


def assert_same_tensors(exported: dict[str, torch.Tensor], source: dict[str, torch.Tensor]) -> None:
    """Every exported tensor is one of ``source``'s, bit for bit, and every ``source`` tensor is exported once."""
    remaining = list(source.values())
    for key, tensor in exported.items():
        match = next((i for i, t in enumerate(remaining) if t.shape == tensor.shape and torch.equal(t, tensor)), None)
        assert match is not None, f"exported {key} is not a pretrained tensor"
        remaining.pop(match)
    assert not remaining, f"{len(remaining)} pretrained tensors were not exported"


def library_backbone(pretrained, target: str):
    """The CPU twin's backbone of ``target``'s library for this encoder, built from the twin config (no weights) at
    the pretraining resolution, which the exported positions keep."""
    cfg = Config.fromfile(str(recipe_config(TWIN_OF_TARGET[target], pretrained, tiny=True)))
    if "img_size" in cfg.model.backbone:
        cfg.model.backbone.img_size = pretrained.encoder_cfg["img_size"]
    for module in cfg.custom_imports["imports"]:
        importlib.import_module(module)
    registry = importlib.import_module(f"{cfg.default_scope}.registry")
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        return registry.MODELS.build(cfg.model.backbone)


@pytest.mark.parametrize("name", ALGORITHMS)
def test_every_algorithm_loads_and_exports_its_pretrained_encoder(name, pretraining_checkpoint, tmp_path):
    checkpoint = pretraining_checkpoint(name)
    stored = checkpoint_encoder(checkpoint)
    pretrained = load_pretrained_encoder(checkpoint)
    assert method_label(pretrained) == ALGORITHMS[name] and pretrained.epoch == 1
    assert pretrained.state_dict.keys() == stored.keys()
    assert all(torch.equal(pretrained.state_dict[k], v) for k, v in stored.items())
    export = load_tool("export").main
    for target in ("timm", "mmpretrain", "mmseg", "mmdet"):
        out = str(tmp_path / f"{target}.pth")
        if target == "timm" and pretrained.canonical != "timm":
            with pytest.raises(SystemExit, match="has no timm model; export --to mmpretrain, mmseg or mmdet"):
                export([checkpoint, "--to", target, "--out", out])
            continue
        export([checkpoint, "--to", target, "--out", out])
        saved = torch.load(out, map_location="cpu", weights_only=True)
        if target == "timm":  # a plain timm state dict of the encoder's architecture, loaded strictly
            pretrained.encoder.build_canonical().load_state_dict(saved, strict=True)
            assert saved.keys() == stored.keys()
            assert all(torch.equal(saved[k], v) for k, v in stored.items())
            continue
        state = {k.removeprefix("backbone."): v for k, v in saved["state_dict"].items()}
        dropped = saved["meta"]["mim_zoo"]["dropped"]
        assert_same_tensors(state, {k: v for k, v in stored.items() if k not in dropped})
        backbone = library_backbone(pretrained, target)  # the names are that library's: it takes every tensor
        load_checked(backbone, Converted(state), backbone.new_keys, out)
