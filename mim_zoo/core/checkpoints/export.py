"""Export the encoder of a pretraining checkpoint for another library (``tools/export.py``).

==============  ==========================================================================================
``--to``        file written
==============  ==========================================================================================
``timm``        a plain timm state dict: ``timm.create_model(arch, pretrained=True, num_classes=0,
                pretrained_cfg_overlay=dict(file=FILE))`` loads it (STYLE R3). ViT encoders only.
``mmpretrain``  ``{'state_dict': {'backbone.<key>': ...}, 'meta': ...}``: mmpretrain ``VisionTransformer``
                (``final_norm=True``) or ``MixMIMTransformer`` keys, for ``init_cfg=dict(type='Pretrained',
                checkpoint=FILE, prefix='backbone.')``.
``mmseg``       ``{'state_dict': {...}, 'meta': ...}`` in mmseg's ``MAE``/BEiT backbone layout (no final norm),
                or the ``MIMMixMIMPyramid`` layout for MixMAE, for the backbone's ``init_cfg``/``pretrained``.
``mmdet``       ``{'state_dict': {'backbone.<key>': ...}, 'meta': ...}`` in the ViTDet backbone layout (timm
                names, no class token or final norm), or ``MIMMixMIMPyramid``'s for MixMAE.
==============  ==========================================================================================

Weights stay at the pretraining resolution; the downstream backbones resize positions when they load.
"""

from __future__ import annotations

import os

import torch

from .layouts import Converted, identity, timm_vit_to_openmmlab, timm_vit_to_vitdet
from .read import PretrainedEncoder, load_pretrained_encoder

TARGETS = ("timm", "mmpretrain", "mmseg", "mmdet")


def convert_for(pretrained: PretrainedEncoder, target: str) -> Converted:
    """The encoder in ``target``'s layout (table in the module docstring)."""
    if target not in TARGETS:
        raise ValueError(f"unknown export target {target!r}; choose one of {', '.join(TARGETS)}")
    if pretrained.canonical == "mmpretrain":  # MixMIM's Swin: one layout everywhere
        if target == "timm":
            raise ValueError(f"{pretrained.method}'s encoder (mmpretrain MixMIMTransformer) has no timm model; export "
                             "--to mmpretrain, mmseg or mmdet")
        return identity(pretrained.state_dict)
    if pretrained.canonical != "timm":
        raise ValueError(f"no export rule for encoders in the {pretrained.canonical!r} layout")
    if target == "timm":
        return identity(pretrained.state_dict)
    if target == "mmpretrain":
        return timm_vit_to_openmmlab(pretrained.state_dict, final_norm=True)
    if target == "mmseg":
        return timm_vit_to_openmmlab(pretrained.state_dict, final_norm=False)
    return timm_vit_to_vitdet(pretrained.state_dict)


def export_encoder(checkpoint: str, target: str, out: str) -> dict:
    """Write the encoder of ``checkpoint`` for ``target`` to ``out``; return the saved object's ``meta``."""
    pretrained = load_pretrained_encoder(checkpoint)
    converted = convert_for(pretrained, target)
    meta = dict(method=pretrained.method, epoch=pretrained.epoch, source=os.path.abspath(checkpoint),
                canonical=pretrained.canonical, layout=target, encoder_cfg=pretrained.encoder_cfg,
                dropped=converted.dropped)
    state = {k: v.contiguous() for k, v in converted.state_dict.items()}
    if target in ("mmpretrain", "mmdet"):
        state = {f"backbone.{k}": v for k, v in state.items()}
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    torch.save(state if target == "timm" else dict(state_dict=state, meta=dict(mim_zoo=meta)), out)
    return meta
