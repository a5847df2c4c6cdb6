"""Frozen teacher files (OpenAI CLIP, DINO) -> the plain timm ViT state dict that
:class:`~mim_zoo.core.targets.TeacherTarget` loads, as ``timm.create_model(arch, pretrained_cfg_overlay=dict(file=..))``
does.

``TeacherTarget`` reads the original files directly; converting them once gives a ``torch.save`` file that loads
with ``weights_only=True`` (OpenAI ships CLIP as a TorchScript archive, whose loader torch deprecates), holds the
image tower alone, in fp32, and is checked against its timm architecture before anything trains on it.

* ``openai_clip``: ``ViT-B-16.pt`` (openai/CLIP ``clip/clip.py:_MODELS``): ``visual.*`` keys, converted by timm's
  ``_convert_openai_clip``; the image-text projection ``visual.proj`` becomes timm's ``head`` (``project=True``).
* ``dino``: ``dino_vitbase16_pretrain.pth`` (facebookresearch/dino): timm names already, no head.

The timm architecture follows from the patch-embedding width and patch size (tables below); a position table of
another resolution is kept as it is (``img_size`` of the architecture set to match) and ``TeacherTarget`` resamples
it to the student's grid, as it does for the original files.
"""

from __future__ import annotations

import math
from typing import Any

import timm
from torch import Tensor, nn

from ..targets import teacher_state_dict
from .keys import ConversionError, StateDict, state_dict_entry
from .sources import SourceLayout, no_epoch, register_source

# (width, patch) -> timm architecture
CLIP_ARCHS = {(768, 16): "vit_base_patch16_clip_quickgelu_224", (768, 32): "vit_base_patch32_clip_quickgelu_224",
              (1024, 14): "vit_large_patch14_clip_quickgelu_224"}
DINO_ARCHS = {(384, 16): "vit_small_patch16_224", (384, 8): "vit_small_patch8_224",
              (768, 16): "vit_base_patch16_224", (768, 8): "vit_base_patch8_224"}


def _geometry(state: StateDict, patch_key: str, pos_key: str) -> tuple[int, int, int]:
    """``(width, patch, img_size)`` of a ViT state dict from its patch embedding and position table."""
    if patch_key not in state or pos_key not in state:
        raise ConversionError(f"no {patch_key!r} / {pos_key!r}: not a ViT image tower of this layout")
    width, _, patch, _ = state[patch_key].shape
    positions = state[pos_key].shape[-2] - 1  # [.., 1 + L, D]: the class row first
    side = math.isqrt(positions)
    return int(width), int(patch), side * int(patch)


def _lookup(table: dict[tuple[int, int], str], width: int, patch: int, layout: str) -> str:
    if (width, patch) not in table:
        known = ", ".join(f"{w}-d/{p}px" for w, p in table)
        raise ConversionError(f"a {width}-d ViT with {patch}-px patches is not a known {layout} teacher ({known})")
    return table[(width, patch)]


def teacher_to_timm(raw: StateDict, arch: str, img_size: int, keep_head: bool, source: str) -> StateDict:
    """``raw`` (an original teacher layout) -> the state dict of ``timm.create_model(arch, img_size=img_size)``."""
    model = timm.create_model(arch, pretrained=False, img_size=img_size, **({} if keep_head else {"num_classes": 0}))
    state = teacher_state_dict(raw, model, arch, source, keep_head=keep_head)
    model.load_state_dict(state)  # fp16 CLIP weights -> the model's fp32, names and shapes checked above
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def teacher_model(arch: str, state: StateDict) -> nn.Module:
    """The timm ViT a converted teacher state dict fits: ``arch`` at the file's resolution, with its head if any."""
    patch = state["patch_embed.proj.weight"].shape[-1]
    img_size = math.isqrt(state["pos_embed"].shape[1] - 1) * patch
    head = {"num_classes": state["head.weight"].shape[0]} if "head.weight" in state else {"num_classes": 0}
    return timm.create_model(arch, pretrained=False, img_size=int(img_size), **head)


def openai_clip_to_timm(checkpoint: Any) -> StateDict:
    raw = state_dict_entry(checkpoint, ("state_dict",))
    width, patch, img_size = _geometry(raw, "visual.conv1.weight", "visual.positional_embedding")
    return teacher_to_timm(raw, _lookup(CLIP_ARCHS, width, patch, "OpenAI CLIP"), img_size, True, "openai_clip")


def dino_to_timm(checkpoint: Any) -> StateDict:
    raw = state_dict_entry(checkpoint, ("state_dict", "teacher"))
    width, patch, img_size = _geometry(raw, "patch_embed.proj.weight", "pos_embed")
    return teacher_to_timm(raw, _lookup(DINO_ARCHS, width, patch, "DINO"), img_size, False, "dino")


def _arch_of(table: dict[tuple[int, int], str]) -> Any:
    def arch(state: dict[str, Tensor]) -> str:
        width, _, patch, _ = state["patch_embed.proj.weight"].shape
        return table[(int(width), int(patch))]
    return arch


register_source(SourceLayout(
    name="openai_clip",
    summary="OpenAI CLIP image tower, for TeacherTarget (MR-MAE's CLIP teacher; head = the image-text projection)",
    files="ViT-B-16.pt (openai/CLIP clip/clip.py:_MODELS, a TorchScript archive; ViT-B/32, ViT-L/14 too)",
    convert=openai_clip_to_timm,
    kind="teacher",
    arch=_arch_of(CLIP_ARCHS),
    epoch=no_epoch,
))
register_source(SourceLayout(
    name="dino",
    summary="DINO ViT, for TeacherTarget (MR-MAE's DINO teacher)",
    files="dino_vitbase16_pretrain.pth (facebookresearch/dino; ViT-S/16, S/8, B/8 too)",
    convert=dino_to_timm,
    kind="teacher",
    arch=_arch_of(DINO_ARCHS),
    epoch=no_epoch,
))
