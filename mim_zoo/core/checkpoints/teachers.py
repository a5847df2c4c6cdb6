"""Frozen teacher files (OpenAI CLIP, DINO) -> the plain timm ViT state dict that
:class:`~mim_zoo.core.targets.TeacherTarget` loads, as ``timm.create_model(arch, pretrained_cfg_overlay=dict(file=..))``
does.

``TeacherTarget`` reads the original files directly; converting them once gives a ``torch.save`` file that loads
with ``weights_only=True`` (OpenAI ships CLIP as a TorchScript archive, whose loader torch deprecates), holds the
image tower alone, in fp32, and is checked against its timm architecture before anything trains on it.

* ``openai_clip``: ``ViT-B-16.pt`` (openai/CLIP ``clip/clip.py:_MODELS``): ``visual.*`` keys, converted by timm's
  ``_convert_openai_clip``; the image-text projection ``visual.proj`` becomes timm's ``head`` (``project=True``).
* ``dino``: ``dino_vitbase16_pretrain.pth`` (facebookresearch/dino): timm names already, no head.

The timm model is the layout's ViT family (``vit_base_patch16_clip_quickgelu_224``, ``vit_base_patch16_224``) with
the sizes read from the file (``embed_dim``, ``depth``, ``patch_size``, ``img_size``: a position table of another
resolution is kept as it is, and ``TeacherTarget`` resamples it to the student's grid, as it does for the original
files). A state dict holds no head count; both families use ``width // 64`` (openai/CLIP ``clip/model.py:build_model``
``vision_heads = vision_width // 64``; DINO's ViT-S/B: 6/12), which is recorded with the sizes (``model_kwargs``)
and only matters to ``--check``: the config's ``TeacherTarget`` builds its own.
"""

from __future__ import annotations

import math
from typing import Any

from torch import Tensor, nn

from ..targets import teacher_state_dict
from .keys import ConversionError, StateDict, state_dict_entry
from .sources import SourceLayout, no_epoch, register_source

ARCHS = {"openai_clip": "vit_base_patch16_clip_quickgelu_224", "dino": "vit_base_patch16_224"}


def _sizes(patch_weight: Tensor, positions: int, depth: int) -> dict[str, int]:
    """timm ``model_kwargs`` of a ViT: ``patch_weight [W, 3, p, p]``, ``positions = 1 + L`` (class row first)."""
    width, _, patch, _ = patch_weight.shape
    if depth == 0:
        raise ConversionError("no transformer blocks in the file: not a ViT image tower of this layout")
    return dict(embed_dim=int(width), depth=depth, num_heads=max(int(width) // 64, 1), patch_size=int(patch),
                img_size=math.isqrt(positions - 1) * int(patch))


def _depth(state: StateDict, prefix: str) -> int:
    return len({k[len(prefix):].split(".", 1)[0] for k in state if k.startswith(prefix)})


def teacher_model(arch: str, model_kwargs: dict[str, int], state: StateDict) -> nn.Module:
    """The timm ViT a converted teacher state dict fits (``arch`` with ``model_kwargs``; its head if it has one)."""
    from timm import create_model  # timm loads when a teacher is converted, not with the layouts

    head = state["head.weight"].shape[0] if "head.weight" in state else 0
    return create_model(arch, pretrained=False, num_classes=head, **model_kwargs)


def teacher_to_timm(raw: StateDict, arch: str, model_kwargs: dict[str, int], num_classes: int,
                    source: str) -> StateDict:
    """``raw`` (an original teacher layout) -> the state dict of ``timm.create_model(arch, **model_kwargs)`` with
    a ``num_classes`` head (0: none)."""
    from timm import create_model  # timm loads when a teacher is converted, not with the layouts

    model = create_model(arch, pretrained=False, num_classes=num_classes, **model_kwargs)
    state = teacher_state_dict(raw, model, arch, source, keep_head=num_classes > 0)
    model.load_state_dict(state)  # fp16 CLIP weights -> the model's fp32, names and shapes checked above
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def openai_clip_to_timm(checkpoint: Any) -> StateDict:
    """OpenAI CLIP (``visual.*`` beside the text tower) -> timm, the image-text projection as ``head``."""
    raw = state_dict_entry(checkpoint, ("state_dict",))
    if "visual.conv1.weight" not in raw:
        raise ConversionError("no visual.conv1.weight: not an OpenAI CLIP file (ViT-B-16.pt)")
    sizes = _sizes(raw["visual.conv1.weight"], raw["visual.positional_embedding"].shape[0],
                   _depth(raw, "visual.transformer.resblocks."))
    projection = raw["visual.proj"].shape[1] if "visual.proj" in raw else 0  # [W, E]
    return teacher_to_timm(raw, ARCHS["openai_clip"], sizes, projection, source="openai_clip")


def dino_to_timm(checkpoint: Any) -> StateDict:
    """DINO (timm names, no head) -> timm."""
    raw = state_dict_entry(checkpoint, ("state_dict", "teacher"))
    if "patch_embed.proj.weight" not in raw or "pos_embed" not in raw:
        raise ConversionError("no patch_embed.proj.weight / pos_embed: not a DINO ViT file")
    sizes = _sizes(raw["patch_embed.proj.weight"], raw["pos_embed"].shape[1], _depth(raw, "blocks."))
    return teacher_to_timm(raw, ARCHS["dino"], sizes, 0, source="dino")


def model_kwargs_of(state: StateDict) -> dict[str, int]:
    """The sizes of a converted (timm) teacher state dict."""
    return _sizes(state["patch_embed.proj.weight"], state["pos_embed"].shape[1], _depth(state, "blocks."))


register_source(SourceLayout(
    name="openai_clip",
    summary="OpenAI CLIP image tower, for TeacherTarget (MR-MAE's CLIP teacher; head = the image-text projection)",
    files="ViT-B-16.pt (openai/CLIP clip/clip.py:_MODELS, a TorchScript archive; other ViT sizes too)",
    convert=openai_clip_to_timm,
    kind="teacher",
    arch=ARCHS["openai_clip"],
    epoch=no_epoch,
))
register_source(SourceLayout(
    name="dino",
    summary="DINO ViT, for TeacherTarget (MR-MAE's DINO teacher)",
    files="dino_vitbase16_pretrain.pth (facebookresearch/dino; dino_deitsmall16_pretrain.pth and the others)",
    convert=dino_to_timm,
    kind="teacher",
    arch=ARCHS["dino"],
    epoch=no_epoch,
))
