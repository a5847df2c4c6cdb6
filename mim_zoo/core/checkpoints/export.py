"""The export direction: the encoder of a pretraining checkpoint, for another library (``tools/export.py``).

Each :class:`ExportTarget` writes the file its library's *own* loading path reads, as that library's configs use
it (the ``loads_with`` column; tested with those configs in ``tests/downstream/test_export.py``):

==============  ==========================================================================================
``--to``        file written, and what loads it
==============  ==========================================================================================
``timm``        a plain timm state dict (STYLE R3): ``timm.create_model(arch, pretrained=True, num_classes=0,
                pretrained_cfg_overlay=dict(file=FILE))``. ViT encoders only.
``mmpretrain``  ``{'state_dict': {'backbone.<key>': ...}, 'meta'}``, mmpretrain ``VisionTransformer``
                (``final_norm=True``: the final norm is ``ln1``) or ``MixMIMTransformer`` keys: the backbone's
                ``init_cfg=dict(type='Pretrained', checkpoint=FILE, prefix='backbone.')`` (mmpretrain's benchmark
                configs), or a classifier's ``load_from``.
``mmseg``       ``{'state_dict': {...}, 'meta'}`` in mmseg's ``MAE``/BEiT layout (no final norm): the segmentor's
                ``pretrained=FILE`` or the backbone's ``init_cfg=dict(type='Pretrained', checkpoint=FILE)``
                (``BEiT.init_weights`` reads ``state_dict``); MixMAE: ``MIMMixMIMPyramid``'s layout, same loader.
``mmdet``       ViTDet's layout (timm names, no class token or final norm) twice over one set of tensors:
                ``model`` for ViTDet's ``init_cfg=dict(type='Pretrained', checkpoint=FILE)`` (mmdet
                ``projects/ViTDet/vitdet/vit.py:ViT.init_weights`` reads ``ckpt['model']``) and
                ``state_dict`` with ``backbone.`` for a detector's ``load_from`` or
                ``init_cfg=dict(..., prefix='backbone.')``. MixMAE: ``MIMMixMIMPyramid``'s layout.
==============  ==========================================================================================

Weights stay at the pretraining resolution; the downstream backbones resize positions when they load.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch

from ..encoders.vit import ViTEncoder
from .keys import Converted, StateDict
from .layouts import identity, timm_vit_to_openmmlab, timm_vit_to_vitdet
from .read import PretrainedEncoder, load_pretrained_encoder


def _plain(state: StateDict, meta: dict) -> StateDict:
    return state


def _state_dict(prefix: str) -> Callable[[StateDict, dict], dict]:
    def package(state: StateDict, meta: dict) -> dict:
        return dict(state_dict={prefix + k: v for k, v in state.items()}, meta=dict(mim_zoo=meta))
    return package


def _vitdet(state: StateDict, meta: dict) -> dict:
    """``model`` (ViTDet's ``init_weights``) and ``state_dict`` (``load_from``): the same tensors, saved once."""
    return dict(model=dict(state), state_dict={f"backbone.{k}": v for k, v in state.items()}, meta=dict(mim_zoo=meta))


@dataclass(frozen=True)
class ExportTarget:
    """One export layout: ``convert`` per canonical encoder layout (``"timm"`` ViTs, ``"mmpretrain"`` MixMIM Swin),
    ``package``: the converted state dict and the meta -> the saved object, ``loads_with``: how the library loads it."""

    name: str
    loads_with: str
    convert: dict[str, Callable[[StateDict], Converted]]
    package: Callable[[StateDict, dict], Any]


EXPORTS: dict[str, ExportTarget] = {t.name: t for t in (
    ExportTarget("timm", "timm.create_model(arch, pretrained=True, num_classes=0, "
                 "pretrained_cfg_overlay=dict(file=FILE))",
                 {"timm": identity}, _plain),
    ExportTarget("mmpretrain", "backbone init_cfg=dict(type='Pretrained', checkpoint=FILE, prefix='backbone.')",
                 {"timm": partial(timm_vit_to_openmmlab, final_norm=True), "mmpretrain": identity},
                 _state_dict("backbone.")),
    ExportTarget("mmseg", "segmentor pretrained=FILE, or backbone init_cfg=dict(type='Pretrained', checkpoint=FILE)",
                 {"timm": partial(timm_vit_to_openmmlab, final_norm=False), "mmpretrain": identity},
                 _state_dict("")),
    ExportTarget("mmdet", "ViTDet backbone init_cfg=dict(type='Pretrained', checkpoint=FILE), or the detector's "
                 "load_from", {"timm": timm_vit_to_vitdet, "mmpretrain": identity}, _vitdet),
)}
TARGETS = tuple(EXPORTS)


def convert_for(pretrained: PretrainedEncoder, target: str) -> Converted:
    """The encoder in ``target``'s layout (table in the module docstring)."""
    if target not in EXPORTS:
        raise ValueError(f"unknown export target {target!r}; choose one of {', '.join(TARGETS)}")
    rules = EXPORTS[target].convert
    if pretrained.canonical not in rules:
        if pretrained.canonical == "mmpretrain":  # MixMIM's Swin has no timm model
            raise ValueError(f"{pretrained.method}'s encoder (mmpretrain MixMIMTransformer) has no timm model; "
                             "export --to mmpretrain, mmseg or mmdet")
        raise ValueError(f"no {target} export rule for encoders in the {pretrained.canonical!r} layout")
    return rules[pretrained.canonical](pretrained.state_dict)


def timm_create_call(encoder: ViTEncoder, file: str) -> str:
    """The ``timm.create_model(...)`` call that builds ``encoder``'s architecture (arch and size arguments) and loads
    its ``--to timm`` export ``file`` strictly (timm's pretrained loading: ``load_state_dict(strict=True)``)."""
    kwargs = encoder.timm_create_kwargs()
    arch = kwargs.pop("model_name")
    args = ", ".join([repr(arch), "pretrained=True", f"pretrained_cfg_overlay=dict(file={file!r})"]
                     + [f"{k}={v!r}" for k, v in kwargs.items()])
    return f"timm.create_model({args})"


def export_encoder(checkpoint: str, target: str, out: str) -> dict:
    """Write the encoder of ``checkpoint`` for ``target`` to ``out``; return the saved object's ``meta``, with
    ``loads_with``: how the target library loads the file (for ``timm``, the exact ``timm.create_model`` call)."""
    pretrained = load_pretrained_encoder(checkpoint)
    converted = convert_for(pretrained, target)
    meta = dict(method=pretrained.method, epoch=pretrained.epoch, source=os.path.abspath(checkpoint),
                canonical=pretrained.canonical, layout=target, encoder_cfg=pretrained.encoder_cfg,
                dropped=converted.dropped)
    state = {k: v.contiguous() for k, v in converted.state_dict.items()}
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    torch.save(EXPORTS[target].package(state, meta), out)
    if target == "timm" and isinstance(pretrained.encoder, ViTEncoder):
        return {**meta, "loads_with": timm_create_call(pretrained.encoder, out)}
    return {**meta, "loads_with": EXPORTS[target].loads_with.replace("FILE", repr(out))}
