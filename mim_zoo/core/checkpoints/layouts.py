"""The export direction's key maps: canonical encoder state dicts -> the layouts of mmpretrain, mmseg and ViTDet.

Every map is a pure function ``state_dict -> Converted(state_dict, dropped)``: renamed tensors (never
copied or modified; resizing is the loader's job) and the checkpoint keys it deliberately leaves out, each with the
reason. A key no rule knows raises: a converter never silently forgets weights.

Key maps (timm names on the left; ``i`` is the block index):

============================  ====================================  ==========================================
timm ``VisionTransformer``    mmpretrain ``VisionTransformer``      mmseg ``BEiT``/``MAE`` backbone
============================  ====================================  ==========================================
``cls_token``, ``pos_embed``  same                                  same
``patch_embed.proj.*``        ``patch_embed.projection.*``          ``patch_embed.projection.*``
``blocks.i.norm1.*``          ``layers.i.ln1.*``                    ``layers.i.ln1.*``
``blocks.i.attn.qkv.*``       ``layers.i.attn.qkv.*``               ``layers.i.attn.qkv.*``
``blocks.i.attn.proj.*``      ``layers.i.attn.proj.*``              ``layers.i.attn.proj.*``
``blocks.i.norm2.*``          ``layers.i.ln2.*``                    ``layers.i.ln2.*``
``blocks.i.mlp.fc1.*``        ``layers.i.ffn.layers.0.0.*``         ``layers.i.ffn.layers.0.0.*``
``blocks.i.mlp.fc2.*``        ``layers.i.ffn.layers.1.*``           ``layers.i.ffn.layers.1.*``
``norm.*``                    ``ln1.*`` (``final_norm=True``)       dropped (the recipe has no final norm)
============================  ====================================  ==========================================

mmpretrain's names follow ``mmpretrain/models/backbones/vision_transformer.py`` (1.2.0) and mmseg's
``mmseg/models/backbones/beit.py`` + ``mae.py`` (1.2.2). ViTDet's backbone keeps timm's names, both mmdet's
(open-mmlab/mmdetection@f32af44 (3.x) ``projects/ViTDet/vitdet/vit.py:ViT``: ``patch_embed.proj``, ``pos_embed``
with the class row, ``blocks.i.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}``) and
:class:`mim_zoo.core.downstream.vitdet.ViTDetBackbone`.
"""

from __future__ import annotations

import re

from .keys import ConversionError, Converted, StateDict

__all__ = ["ConversionError", "Converted", "StateDict", "identity", "timm_vit_to_openmmlab", "timm_vit_to_vitdet"]

_TIMM_BLOCK = re.compile(r"blocks\.(\d+)\.(.+)")
_TIMM_IN_BLOCK_TO_OPENMMLAB = {
    "norm1.": "ln1.",
    "attn.qkv.": "attn.qkv.",
    "attn.proj.": "attn.proj.",
    "norm2.": "ln2.",
    "mlp.fc1.": "ffn.layers.0.0.",
    "mlp.fc2.": "ffn.layers.1.",
}


def _rename_block_key(rest: str, index: int) -> str:
    for old, new in _TIMM_IN_BLOCK_TO_OPENMMLAB.items():
        if rest.startswith(old):
            return f"layers.{index}.{new}{rest[len(old):]}"
    raise ConversionError(f"no OpenMMLab name for the timm block parameter 'blocks.{index}.{rest}' (layer scale, "
                          "qk-norm and other ViT variants are not supported by this converter)")


def timm_vit_to_openmmlab(state_dict: StateDict, final_norm: bool = True, depth: int | None = None) -> Converted:
    """timm ViT -> the ``layers.i.*`` layout shared by mmpretrain's ``VisionTransformer`` and mmseg's BEiT/MAE.

    Args:
        state_dict: a plain timm ``VisionTransformer`` state dict (``num_classes=0``).
        final_norm: keep timm's final ``norm`` as ``ln1`` (mmpretrain ``final_norm=True``), else drop it.
        depth: keep only the first ``depth`` blocks (BootMAE's linear probe truncates ViT-B to 10); ``None`` = all.
    """
    out: StateDict = {}
    dropped: dict[str, str] = {}
    for key, value in state_dict.items():
        block = _TIMM_BLOCK.fullmatch(key)
        if block:
            index = int(block.group(1))
            if depth is not None and index >= depth:
                dropped[key] = f"the downstream model keeps the first {depth} blocks"
                continue
            out[_rename_block_key(block.group(2), index)] = value
        elif key in ("cls_token", "pos_embed"):
            out[key] = value
        elif key.startswith("patch_embed.proj."):
            out["patch_embed.projection." + key[len("patch_embed.proj."):]] = value
        elif key.startswith("norm."):
            if final_norm:
                out["ln1." + key[len("norm."):]] = value
            else:
                dropped[key] = "the downstream recipe has no final norm on these features"
        else:
            raise ConversionError(f"unexpected timm ViT key {key!r}: no conversion rule matches it")
    return Converted(out, dropped)


def timm_vit_to_vitdet(state_dict: StateDict) -> Converted:
    """timm ViT -> :class:`mim_zoo.core.downstream.vitdet.ViTDetBackbone` (timm names, no class token, no final norm).

    ViTDet keeps the pretrained ``pos_embed`` *with* its class-token row and interpolates the grid part on every
    forward (mmdet ``projects/ViTDet/vitdet/vit.py:get_abs_pos``, ``pretrain_use_cls_token=True``), so the table is
    copied as it is; the class token itself and the final norm are not used by the detector.
    """
    out: StateDict = {}
    dropped: dict[str, str] = {}
    for key, value in state_dict.items():
        if key == "cls_token":
            dropped[key] = "ViTDet feeds patch tokens only"
        elif key.startswith("norm."):
            dropped[key] = "ViTDet has no final norm (the simple feature pyramid normalises)"
        elif key == "pos_embed" or key.startswith(("patch_embed.proj.", "blocks.")):
            if _TIMM_BLOCK.fullmatch(key) and not re.match(r"blocks\.\d+\.(norm1|attn\.qkv|attn\.proj|norm2|mlp\.fc1|"
                                                           r"mlp\.fc2)\.", key):
                raise ConversionError(f"unexpected timm block parameter {key!r} for the ViTDet backbone")
            out[key] = value
        else:
            raise ConversionError(f"unexpected timm ViT key {key!r}: no conversion rule matches it")
    return Converted(out, dropped)


def identity(state_dict: StateDict) -> Converted:
    """A canonical layout that the downstream model uses as is (mmpretrain ``MixMIMTransformer``)."""
    return Converted(dict(state_dict))
