"""Official BootMAE pretraining checkpoints -> mim_zoo ``BootMAE`` (``configs/bootmae``).

Source layout: LightDXY/BootMAE@d604b18 ``models/modeling_pretrain_bootmae.py:VisionTransformerForMaskedImageModeling``
as saved by ``utils.py:save_model``: ``checkpoint["model"]`` holds the online encoder and both decoders (e.g. the
released ``BootMAE_Base_800_PT.pth``), ``checkpoint["model_ema"]`` (when saved) an EMA of that whole model.

* encoder: ``cls_token``, ``pos_embed`` (MoCo-v3 sin-cos, checked and kept), ``patch_embed.proj.*``,
  ``blocks.N.{norm1, attn.{q_bias, v_bias, qkv.weight, proj.*}, norm2, mlp.fc1, mlp.fc2}``, ``norm.*``;
* pixel decoder: ``down.*``, ``mask_token``, ``de_pos_embed`` (fixed sin-cos: checked, then dropped since mim_zoo
  recomputes it), ``decode_blocks.N.{norm1, attn.*, norm3, norm4, c_attn.{q_bias, v_bias, q.weight, kv.weight,
  proj.*}, norm2, mlp.*}``, ``decode_norm.*``, ``lm_head.proj.*`` (the ``ConvTranspose2d``: same tensor shapes in
  :class:`~mim_zoo.core.algorithms.bootmae.PatchDeEmbed`);
* feature decoder: ``down_1.*``, ``mask_token_1``, ``decode_blocks_1.N.*``, ``decode_norm_1.*``, ``lm_head_1.*``.

Attention biases: the official projections have a q bias and a v bias but no k bias (BEiT style); timm's fused qkv
and our decoders' projections have a full bias. A k bias adds ``q . b_k`` to every logit of a query and cancels in
the softmax, so the k part is filled with zeros and the converted model computes the same function.

Momentum target: mim_zoo averages the encoder alone (``feature_target.ema.*``). With ``checkpoint["model_ema"]``
its encoder part is restored (its unused decoder copies are dropped), so a continued run continues the official EMA;
without it the momentum encoder starts as a copy of the online encoder, as the official ``ModelEma(model)`` does at
the start of a run (``run_pretraining.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ..tokens import sincos_pos_embed_2d
from .keys import StateDict, rename_prefixes, state_dict_entry
from .sources import SourceLayout, register_source

_MAPPING = [  # first match wins: the "_1" (feature decoder) names before their prefixes
    ("decode_blocks_1.", "feature_decoder.blocks."),
    ("decode_blocks.", "pixel_decoder.blocks."),
    ("decode_norm_1.", "feature_decoder.norm."),
    ("decode_norm.", "pixel_decoder.norm."),
    ("down_1.", "feature_decoder.embed."),
    ("down.", "pixel_decoder.embed."),
    ("mask_token_1", "feature_decoder.mask_token"),
    ("mask_token", "pixel_decoder.mask_token"),
    ("lm_head_1.", "feature_decoder.head."),
    ("lm_head.", "pixel_decoder.head."),
    ("cls_token", "encoder.vit.cls_token"),
    ("pos_embed", "encoder.vit.pos_embed"),
    ("patch_embed.", "encoder.vit.patch_embed."),
    ("blocks.", "encoder.vit.blocks."),
    ("norm.", "encoder.vit.norm."),
]
_DECODER_BLOCK_RENAMES = {".norm3.": ".norm_cross.", ".norm4.": ".norm_context.", ".c_attn.": ".cross_attn."}


def _fuse_attention_biases(state_dict: StateDict) -> StateDict:
    """``attn.{q_bias, v_bias}`` -> ``attn.qkv.bias = [q, 0, v]``; ``c_attn.{q_bias, v_bias}`` -> ``c_attn.q.bias``
    and ``c_attn.kv.bias = [0, v]``."""
    out = dict(state_dict)
    for key in [k for k in state_dict if k.endswith(".q_bias")]:
        prefix = key[: -len("q_bias")]
        q_bias, v_bias = out.pop(prefix + "q_bias"), out.pop(prefix + "v_bias")
        zeros = torch.zeros_like(q_bias)  # the missing k bias
        if prefix.endswith(".c_attn."):
            out[prefix + "q.bias"] = q_bias
            out[prefix + "kv.bias"] = torch.cat([zeros, v_bias])
        else:
            out[prefix + "qkv.bias"] = torch.cat([q_bias, zeros, v_bias])
    return out


def _check_sincos(table: torch.Tensor, name: str) -> None:
    """``table [1, 1 + L, E]`` must be BootMAE's fixed MoCo-v3 sin-cos table with a zero class row."""
    side = int(round((table.shape[1] - 1) ** 0.5))
    expected = sincos_pos_embed_2d(table.shape[2], (side, side), layout="mocov3")
    if table.shape != expected.shape or not torch.allclose(table.float(), expected, atol=1e-5):
        raise ValueError(f"{name} of the checkpoint is not BootMAE's fixed sin-cos table; not a BootMAE file?")


def _convert_model(state_dict: StateDict) -> StateDict:
    foreign = sorted(k for k in state_dict if ".gamma_" in k or "relative_position" in k or k.startswith("head."))
    if foreign:
        raise ValueError(
            f"{foreign[:3]}: layer-scale, relative-position or classifier weights do not exist in a BootMAE "
            "pretraining model; pass the pretraining checkpoint (BootMAE_*_PT.pth, key 'model'), not a fine-tuned one"
        )
    for name in ("pos_embed", "de_pos_embed"):
        if name in state_dict:
            _check_sincos(state_dict[name], name)
    out = rename_prefixes(_fuse_attention_biases(state_dict), _MAPPING, drop=("de_pos_embed",))
    renamed = {}
    for key, value in out.items():
        if "_decoder.blocks." in key:
            for old, new in _DECODER_BLOCK_RENAMES.items():
                key = key.replace(old, new)
        renamed[key] = value
    return renamed


def bootmae_to_mim_zoo(state_dict: StateDict, ema_state_dict: StateDict | None = None) -> StateDict:
    """Official BootMAE ``model`` state dict (and optionally ``model_ema``) -> mim_zoo ``BootMAE`` state dict.

    Args:
        state_dict: ``checkpoint["model"]``: online encoder and both decoders.
        ema_state_dict: ``checkpoint["model_ema"]``; ``None`` starts the momentum encoder from the online one.

    Returns:
        Keys of ``BootMAE`` (encoder, both decoders, ``feature_target.ema``), loadable with ``strict=True``.
    """
    out = _convert_model(state_dict)
    ema = out if ema_state_dict is None else _convert_model(ema_state_dict)
    momentum = {"feature_target.ema." + k.removeprefix("encoder."): v.clone()
                for k, v in ema.items() if k.startswith("encoder.")}
    return out | momentum


def _convert_file(checkpoint: Any) -> StateDict:
    """``model`` and, when the run kept one, ``model_ema`` (``utils.py:save_model`` saves it beside the model)."""
    ema = checkpoint.get("model_ema") if isinstance(checkpoint, Mapping) else None
    return bootmae_to_mim_zoo(state_dict_entry(checkpoint, ("model",)),
                              None if ema is None else state_dict_entry(ema))


register_source(SourceLayout(
    name="bootmae",
    summary="official BootMAE, encoder, both decoders and the EMA encoder when saved (continue or evaluate)",
    files="BootMAE_Base_800_PT.pth, BootMAE_Large_800_PT.pth, run_pretraining.py's checkpoint-N.pth "
          "(LightDXY/BootMAE; 'model' and, with --model_ema, 'model_ema')",
    convert=_convert_file,
    algorithm="BootMAE",
))
