"""Each library's own loading path for an exported encoder (``tools/export.py``), as that library's configs use it.

Configs are the libraries' own where the installed packages ship them (``mmengine.hub.get_config`` reads
``mmpretrain::`` / ``mmseg::`` configs), with the backbone shrunk to the tiny encoder; mmdet's ViTDet project is not
installed, so :func:`vitdet_init_weights` does what its ``ViT.init_weights`` does, written anew from reading
open-mmlab/mmdetection@f32af44 ``projects/ViTDet/vitdet/vit.py``. Every function returns the model *after* its
library loaded the file, for the caller to compare with the pretrained weights.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

import timm
import torch
from mmengine.hub import get_config
from mmengine.registry import DefaultScope
from mmengine.runner import load_checkpoint
from mmengine.runner.checkpoint import CheckpointLoader
from torch import nn

# mmpretrain 1.2.0's MAE linear probe / fine-tune and MixMIM fine-tune, mmseg 1.2.2's MAE UperNet
MMPRETRAIN_VIT = {"linear": "mmpretrain::mae/benchmarks/vit-base-p16_8xb2048-linear-coslr-90e_in1k.py",
                  "finetune": "mmpretrain::mae/benchmarks/vit-base-p16_8xb128-coslr-100e_in1k.py"}
MMPRETRAIN_MIXMIM = "mmpretrain::mixmim/benchmarks/mixmim-base_8xb128-coslr-100e_in1k.py"
MMSEG_MAE = "mmseg::mae/mae-base_upernet_8xb2-amp-160k_ade20k-512x512.py"


def checkpoint_encoder(path: str) -> dict[str, torch.Tensor]:
    """The encoder tensors as stored in a pretraining checkpoint, keyed as the canonical model names them
    (``ViTEncoder`` holds timm's ViT at ``encoder.vit``, ``MixMIMEncoder`` mmpretrain's model at ``encoder.mixmim``)."""
    state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    encoder = {k: v for k, v in state.items() if k.startswith("encoder.")}
    assert all(k.startswith(("encoder.vit.", "encoder.mixmim.")) for k in encoder)
    return {k.split(".", 2)[2]: v for k, v in encoder.items()}


def assert_same_tensors(exported: Mapping[str, torch.Tensor], source: Mapping[str, torch.Tensor]) -> None:
    """Every exported tensor is one of ``source``'s, bit for bit, and every ``source`` tensor is exported once."""
    remaining = list(source.values())
    for key, tensor in exported.items():
        match = next((i for i, t in enumerate(remaining) if t.shape == tensor.shape and torch.equal(t, tensor)), None)
        assert match is not None, f"exported {key} is not a pretrained tensor"
        remaining.pop(match)
    assert not remaining, f"{len(remaining)} pretrained tensors were not exported"


def assert_loaded(model: nn.Module, exported: Mapping[str, torch.Tensor], new: tuple[str, ...] = ()) -> None:
    """``model`` holds every exported tensor under its name, bit for bit, and every other tensor of ``model``
    is one of its declared new ones (``new``: key substrings)."""
    own = model.state_dict()
    for key, tensor in exported.items():
        assert key in own, f"{type(model).__name__} has no {key}: the export's names are not the library's"
        assert torch.equal(own[key], tensor), f"{key} was not loaded"
    others = [k for k in own if k not in exported and not any(n in k for n in new)]
    assert not others, f"{type(model).__name__} tensors the export does not provide: {others[:6]}"


def _build(scope: str, cfg: Mapping[str, Any]) -> nn.Module:
    registry = importlib.import_module(f"{scope}.registry")
    with DefaultScope.overwrite_default_scope(scope):
        model = registry.MODELS.build(cfg)
        model.init_weights()
    return model


def timm_model(file: str, create_kwargs: Mapping[str, Any], num_classes: int = 0) -> nn.Module:
    """``timm.create_model(arch, pretrained=True, pretrained_cfg_overlay=dict(file=FILE))`` (STYLE R3). With a head
    (``num_classes > 0``, fine-tuning) the overlay also says the file has none, so timm leaves the head fresh."""
    kwargs = dict(create_kwargs, num_classes=num_classes)
    return timm.create_model(pretrained=True, pretrained_cfg_overlay=dict(file=file, num_classes=0), **kwargs)


def mmpretrain_classifier(file: str, config: str, backbone: Mapping[str, Any], head_channels: int) -> nn.Module:
    """mmpretrain's ``ImageClassifier`` of ``config``, backbone sized by ``backbone``, initialised as mmpretrain
    does: ``init_weights`` applies the backbone's ``init_cfg=dict(type='Pretrained', checkpoint=..., prefix=...)``."""
    cfg = get_config(config).model
    cfg.backbone.update(backbone)
    cfg.backbone.init_cfg.checkpoint = file
    cfg.head.in_channels = head_channels
    return _build("mmpretrain", cfg)


def mmseg_segmentor(file: str, backbone: Mapping[str, Any]) -> nn.Module:
    """mmseg's MAE UperNet (``model.pretrained = FILE``: ``EncoderDecoder`` hands it to the backbone, whose
    ``BEiT.init_weights`` loads ``checkpoint['state_dict']``), backbone sized by ``backbone``."""
    cfg = get_config(MMSEG_MAE).model
    cfg.pretrained = file
    cfg.backbone.update(backbone)
    cfg.decode_head.update(in_channels=[backbone["embed_dims"]] * 4, channels=16)
    cfg.auxiliary_head.update(in_channels=backbone["embed_dims"], channels=16)
    cfg.neck.embed_dim = backbone["embed_dims"]
    return _build("mmseg", cfg)


def vitdet_init_weights(backbone: nn.Module, init_cfg: Mapping[str, Any]) -> nn.Module:
    """ViTDet's ``ViT.init_weights`` with ``init_cfg=dict(type='Pretrained', checkpoint=FILE)`` (the project's
    configs, e.g. ``lsj-100e_coco-instance.py``): ``CheckpointLoader.load_checkpoint``, then the ``'model'`` entry
    loaded with ``strict=False`` into a module of ViTDet's names (``patch_embed.proj``, ``pos_embed``,
    ``blocks.i.{norm1, attn.{qkv, proj, rel_pos_h, rel_pos_w}, norm2, mlp.{fc1, fc2}}``)."""
    ckpt = CheckpointLoader.load_checkpoint(init_cfg["checkpoint"], map_location="cpu")
    backbone.load_state_dict(ckpt["model"], strict=False)  # a file without 'model' fails here, as in ViTDet
    return backbone


def detector_load_from(file: str, backbone: nn.Module) -> nn.Module:
    """A detector's ``load_from`` (mmengine's ``load_checkpoint`` on the whole model: ``state_dict``,
    ``backbone.*``), on a model holding ``backbone``."""
    detector = nn.Module()
    detector.backbone = backbone
    load_checkpoint(detector, file, map_location="cpu", strict=False)
    return backbone
