"""tools/export.py and mim_zoo.core.checkpoints.export: each target's file loads through the loading path of that
library's own configs, and for every algorithm (BootMAE, MR-MAE, a combo, MixMAE) the loader and each export carry
exactly the pretraining weights."""

from __future__ import annotations

import importlib

import pytest
import timm
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

import mim_zoo  # noqa: F401
from mim_zoo.core.checkpoints.export import export_encoder
from mim_zoo.core.checkpoints.layouts import ConversionError, Converted, timm_vit_to_openmmlab
from mim_zoo.core.downstream import load_pretrained_encoder
from mim_zoo.core.downstream.loading import load_checked
from mim_zoo.engine.benchmark import method_label, recipe_config

from ..helpers.library_loading import (
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
from .conftest import load_tool, run_tool

TINY_TIMM = dict(model_name="vit_tiny_patch16_224", img_size=32, patch_size=4, embed_dim=64, depth=2, num_heads=4)
# the tiny encoder of configs/mae/tiny_cpu.py in each library's backbone arguments
TINY_MMPRETRAIN = dict(arch=dict(embed_dims=64, num_layers=2, num_heads=4, feedforward_channels=256), img_size=32,
                       patch_size=4)
TINY_MMSEG = dict(img_size=(32, 32), patch_size=4, embed_dims=64, num_layers=2, num_heads=4, out_indices=[0, 1])
TINY_VITDET = dict(img_size=32, patch_size=4, embed_dim=64, depth=2, num_heads=4, window_size=4, global_blocks=(1,),
                   pretrain_img_size=32)


def saved_state(path: str, key: str = "state_dict", prefix: str = "") -> dict[str, torch.Tensor]:
    state = torch.load(path, map_location="cpu", weights_only=True)[key]
    assert all(k.startswith(prefix) for k in state)
    return {k.removeprefix(prefix): v for k, v in state.items()}


def test_timm_export_loads_with_timm_pretrained_cfg_overlay(tiny_checkpoint, tiny_pretrained, tmp_path):
    out = tmp_path / "timm.pth"
    proc = run_tool("tools/export.py", tiny_checkpoint, "--to", "timm", "--out", str(out))
    assert "MAE encoder (epoch 2)" in proc.stdout
    model = timm.create_model(pretrained=True, num_classes=0, pretrained_cfg_overlay=dict(file=str(out)), **TINY_TIMM)
    for key, value in tiny_pretrained.state_dict.items():
        assert torch.equal(model.state_dict()[key], value), key
    finetune = timm_model(str(out), TINY_TIMM, num_classes=10)  # a fine-tuning model: the head stays fresh
    assert_loaded(finetune, tiny_pretrained.state_dict, new=("head.",))


@pytest.mark.parametrize("recipe", ["linear", "finetune"])
def test_mmpretrain_export_loads_through_the_backbones_init_cfg(recipe, tiny_checkpoint, tiny_pretrained, tmp_path):
    """mmpretrain's own MAE benchmark configs: ``init_cfg=dict(type='Pretrained', checkpoint=FILE,
    prefix='backbone.')``; the linear probe keeps the final norm (``ln1``), the fine-tune recipe pools with a new
    ``ln2`` instead, so it ignores ``ln1`` (its ``strict=False`` load skips it)."""
    from mmpretrain.models.backbones import VisionTransformer

    out = str(tmp_path / "mmpretrain.pth")
    export_encoder(tiny_checkpoint, "mmpretrain", out)
    vit = VisionTransformer(final_norm=True, **TINY_MMPRETRAIN)
    state = saved_state(out, prefix="backbone.")
    assert set(state) == set(vit.state_dict())
    backbone = dict(TINY_MMPRETRAIN, frozen_stages=2) if recipe == "linear" else TINY_MMPRETRAIN
    classifier = mmpretrain_classifier(out, MMPRETRAIN_VIT[recipe], backbone, head_channels=64)
    if recipe == "linear":
        assert_loaded(classifier.backbone, state)
        x = torch.randn(2, 3, 32, 32)
        expected = tiny_pretrained.encoder(x)[:, 0]  # class token after the final norm
        classifier.eval()
        assert torch.allclose(classifier.backbone(x)[0], expected, atol=1e-5)
    else:
        assert_loaded(classifier.backbone, {k: v for k, v in state.items() if not k.startswith("ln1.")}, ("ln2.",))


def test_mmseg_export_loads_through_the_segmentors_pretrained(tiny_checkpoint, tmp_path):
    """mmseg's MAE UperNet config: ``model.pretrained=FILE`` -> the backbone's ``init_cfg=dict(type='Pretrained')``;
    layer scale (``gamma``) is new at fine-tuning."""
    from mim_zoo.core.downstream.mmseg import MIMBEiT

    seg = str(tmp_path / "seg.pth")
    export_encoder(tiny_checkpoint, "mmseg", seg)
    beit = MIMBEiT(img_size=32, patch_size=4, embed_dims=64, num_layers=2, num_heads=4, init_values=1.0)
    new = ("gamma_", "relative_position")
    state = saved_state(seg)
    assert set(state) == {k for k in beit.state_dict() if not any(n in k for n in new)}
    assert_loaded(mmseg_segmentor(seg, TINY_MMSEG).backbone, state, new=new)


def test_mmdet_export_loads_through_vitdet_init_cfg_and_a_detectors_load_from(tiny_checkpoint, tmp_path):
    """ViTDet's configs: ``init_cfg=dict(type='Pretrained', checkpoint=FILE)``, whose ``ViT.init_weights`` reads
    ``ckpt['model']`` (a file without it fails there, as the export of mim_zoo 0.1 did); a detector's
    ``load_from`` reads ``state_dict``. Both carry the same tensors; relative positions are new."""
    from mim_zoo.core.downstream.mmdet import ViTDetBackbone

    det = str(tmp_path / "det.pth")
    meta = export_encoder(tiny_checkpoint, "mmdet", det)
    assert set(meta["dropped"]) == {"cls_token", "norm.weight", "norm.bias"}
    saved = torch.load(det, map_location="cpu", weights_only=True)
    model, state = saved["model"], {k.removeprefix("backbone."): v for k, v in saved["state_dict"].items()}
    assert model.keys() == state.keys() and all(k.startswith("backbone.") for k in saved["state_dict"])
    assert all(model[k] is state[k] for k in model)  # one set of tensors, stored once
    vitdet_names = {"pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias"} | {
        f"blocks.{i}.{part}.{p}" for i in range(2) for p in ("weight", "bias")
        for part in ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2")}
    assert set(model) == vitdet_names  # ViTDet's ViT names, rel_pos_h/w aside (projects/ViTDet/vitdet/vit.py)
    vitdet = vitdet_init_weights(ViTDetBackbone(**TINY_VITDET), dict(type="Pretrained", checkpoint=det))
    assert_loaded(vitdet, model, new=("rel_pos",))
    assert_loaded(detector_load_from(det, ViTDetBackbone(**TINY_VITDET)), state, new=("rel_pos",))


def test_bad_requests_are_errors(tiny_checkpoint, tmp_path):
    with pytest.raises(ValueError, match="unknown export target"):
        export_encoder(tiny_checkpoint, "onnx", str(tmp_path / "x.pth"))
    with pytest.raises(ConversionError, match="qk_norm|no conversion rule|not supported"):
        timm_vit_to_openmmlab({"blocks.0.attn.q_norm.weight": torch.zeros(1)})


# --- every algorithm: the loader and each export give the pretraining weights -------------------------------------
# tiny config -> the method label of its checkpoint's results row
ALGORITHMS = {"BootMAE": "BootMAE", "MRMAE": "MRMAE", "mae_momentum": "MAE+MomentumTarget", "MixMAE": "MixMAE"}
TWIN_OF_TARGET = {"mmpretrain": "linear", "mmseg": "ade20k", "mmdet": "coco"}  # a backbone in that layout


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
