"""MixMIM pretraining checkpoints -> mim_zoo ``MixMAE``, in two layouts.

``mixmim``: the official code (Sense-X/MixMIM@2b2f5a9 ``models_mixmim.py:MixMIM``, e.g. the released ``base_600ep`` /
``large_600ep`` files, whose ``model`` entry holds encoder *and* decoder). Official keys -> ours
(``encoder.mixmim.*`` are mmpretrain ``MixMIMTransformer`` names):

* ``patch_embed.proj.*`` -> ``patch_embed.projection.*``; ``patch_embed.norm.*``, ``absolute_pos_embed``, ``norm.*``
  and ``layers.{i}.blocks.{j}.attn.*`` (relative-position table and index, qkv, proj) keep their names;
* in blocks (timm ``Mlp``/``norm1``/``norm2`` -> mmcv ``FFN``/``ln1``/``ln2``): ``norm1`` -> ``ln1``, ``norm2`` ->
  ``ln2``, ``mlp.fc1`` -> ``ffn.layers.0.0``, ``mlp.fc2`` -> ``ffn.layers.1``;
* ``layers.{i}.downsample.{norm,reduction}``: timm's PatchMerging concatenates the 2x2 neighbours as
  ``[(0,0), (1,0), (0,1), (1,1)]`` (row, column offsets) blocks of ``C`` channels, mmcv's ``nn.Unfold`` as ``C``
  groups of ``(0,0), (0,1), (1,0), (1,1)``; the 4C axis is permuted accordingly (the same correction as
  open-mmlab/mmpretrain ``tools/model_converters/mixmim_to_mmpretrain.py``);
* ``mask_token``, ``decoder_embed.*``, ``decoder_blocks.*``, ``decoder_norm.*``, ``decoder_pred.*`` ->
  ``decoder.{mask_token, embed, blocks, norm, pred}.*``; ``decoder_pos_embed`` is the fixed sin-cos table mim_zoo
  recomputes: the converter checks it agrees instead of copying it.

``mixmim_mmpretrain``: mmpretrain 1.2.0's port (``models/selfsup/mixmim.py:MixMIM``, an mmengine checkpoint whose
``state_dict`` holds ``backbone.*``, a ``MixMIMPretrainTransformer``, and ``neck.*``, a ``MixMIMPretrainDecoder``
(``necks/mixmim_neck.py``)). The backbone already has ``MixMIMTransformer``'s names: ``backbone.`` ->
``encoder.mixmim.``. The neck's blocks are mmpretrain ``TransformerEncoderLayer`` s (``ln1``, ``attn.{qkv, proj}``,
``ln2``, ``ffn.layers.{0.0, 1}`` -> timm's ``norm1``, ``attn``, ``norm2``, ``mlp.{fc1, fc2}``), ``neck.ln1`` is the
decoder norm, ``neck.decoder_{embed, pred}`` and ``neck.mask_token`` map as above. Two differences from the official
decoder are kept by the config the converted file records (``cfg_options``): LayerNorm eps 1e-6 (``norm_cfg``) and
the MoCo-v3 order of its fixed sin-cos table (``build_2d_sincos_position_embedding``: row first), checked and then
recomputed as ``MixMAEDecoder(pos_layout="mocov3")``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..tokens import sincos_pos_embed_2d
from .keys import StateDict, rename_prefixes, state_dict_entry
from .sources import SourceLayout, mmengine_epoch, register_source

_PREFIXES = [
    ("patch_embed.proj.", "encoder.mixmim.patch_embed.projection."),
    ("patch_embed.norm.", "encoder.mixmim.patch_embed.norm."),
    ("absolute_pos_embed", "encoder.mixmim.absolute_pos_embed"),
    ("layers.", "encoder.mixmim.layers."),
    ("norm.", "encoder.mixmim.norm."),
    ("mask_token", "decoder.mask_token"),
    ("decoder_embed.", "decoder.embed."),
    ("decoder_blocks.", "decoder.blocks."),
    ("decoder_norm.", "decoder.norm."),
    ("decoder_pred.", "decoder.pred."),
]
_BLOCK_RENAMES = [(".norm1.", ".ln1."), (".norm2.", ".ln2."), (".mlp.fc1.", ".ffn.layers.0.0."),
                  (".mlp.fc2.", ".ffn.layers.1.")]


def merge_channels_timm_to_unfold(x: Tensor) -> Tensor:
    """Permute the ``4C`` axis (last) of a PatchMerging weight from timm's to mmcv's order.

    timm: index ``(2 * col + row) * C + c``; mmcv ``nn.Unfold``: ``c * 4 + 2 * row + col``.
    """
    channels = x.shape[-1] // 4
    x = x.reshape(*x.shape[:-1], 2, 2, channels)  # [..., col, row, C]
    return x.movedim(-1, -3).transpose(-1, -2).flatten(-3)  # [..., C, row, col] -> [..., 4C]


def swin_relative_position_index(window: int) -> Tensor:
    """Swin's relative-position index for a ``window x window`` window: ``[N, N]``, ``N = window ** 2``."""
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)  # [N, N, 2], >= 0
    return rel[..., 0] * (2 * window - 1) + rel[..., 1]


def _check_fixed_tables(state_dict: StateDict) -> None:
    for key, value in state_dict.items():
        if key.endswith("relative_position_index"):
            window = int(round(value.shape[0] ** 0.5))
            if not torch.equal(value.long(), swin_relative_position_index(window)):
                raise ValueError(f"{key} is not Swin's relative-position index for a {window}x{window} window")
    dec_pos = state_dict.get("decoder_pos_embed")
    if dec_pos is not None:
        side = int(round(dec_pos.shape[1] ** 0.5))
        expected = sincos_pos_embed_2d(dec_pos.shape[2], (side, side), num_prefix_tokens=0)
        if not torch.allclose(dec_pos.float(), expected, atol=1e-5):
            raise ValueError("decoder_pos_embed of the checkpoint is not MixMIM's fixed sin-cos table; not a MixMIM "
                             "pretraining file?")


def mixmim_to_mim_zoo(state_dict: StateDict) -> StateDict:
    """Official MixMIM pretraining ``model`` state dict -> mim_zoo ``MixMAE`` state dict."""
    _check_fixed_tables(state_dict)
    renamed: StateDict = {}
    for key, value in state_dict.items():
        if key.startswith("layers.") and ".blocks." in key:
            for old, new in _BLOCK_RENAMES:
                key = key.replace(old, new)
        elif key.startswith("layers.") and ".downsample." in key:
            value = merge_channels_timm_to_unfold(value)
        renamed[key] = value
    return rename_prefixes(renamed, _PREFIXES, drop=("decoder_pos_embed",))


_MMPRETRAIN_NECK = [
    ("neck.mask_token", "decoder.mask_token"),
    ("neck.decoder_embed.", "decoder.embed."),
    ("neck.decoder_blocks.", "decoder.blocks."),
    ("neck.ln1.", "decoder.norm."),
    ("neck.decoder_pred.", "decoder.pred."),
    ("backbone.", "encoder.mixmim."),
]
_MMPRETRAIN_BLOCK_RENAMES = [(".ln1.", ".norm1."), (".ln2.", ".norm2."), (".ffn.layers.0.0.", ".mlp.fc1."),
                             (".ffn.layers.1.", ".mlp.fc2.")]


def mmpretrain_mixmim_to_mim_zoo(state_dict: StateDict) -> StateDict:
    """mmpretrain ``MixMIM`` (selfsup) state dict -> mim_zoo ``MixMAE`` state dict (module docstring)."""
    _check_fixed_tables({k.removeprefix("backbone."): v for k, v in state_dict.items() if k.startswith("backbone.")})
    table = state_dict.get("neck.decoder_pos_embed")
    if table is not None:
        side = int(round(table.shape[1] ** 0.5))
        expected = sincos_pos_embed_2d(table.shape[2], (side, side), num_prefix_tokens=0, layout="mocov3")
        if not torch.allclose(table.float(), expected, atol=1e-5):
            raise ValueError("neck.decoder_pos_embed is not mmpretrain's fixed sin-cos table; not a MixMIM file?")
    renamed: StateDict = {}
    for key, value in state_dict.items():
        if key.startswith("neck.decoder_blocks."):
            for old, new in _MMPRETRAIN_BLOCK_RENAMES:
                key = key.replace(old, new)
        renamed[key] = value
    return rename_prefixes(renamed, _MMPRETRAIN_NECK, drop=("neck.decoder_pos_embed", "data_preprocessor."))


def _convert_official(checkpoint: Any) -> StateDict:
    return mixmim_to_mim_zoo(state_dict_entry(checkpoint, ("model",)))


def _convert_mmpretrain(checkpoint: Any) -> StateDict:
    return mmpretrain_mixmim_to_mim_zoo(state_dict_entry(checkpoint, ("state_dict",)))


register_source(SourceLayout(
    name="mixmim",
    summary="official MixMIM, encoder and decoder (continue training or evaluate)",
    files="the released base_600ep / large_600ep pretraining files, main_pretrain.py's checkpoint-N.pth "
          "(Sense-X/MixMIM; state dict under 'model')",
    convert=_convert_official,
    algorithm="MixMAE",
))
register_source(SourceLayout(
    name="mixmim_mmpretrain",
    summary="mmpretrain's MixMIM pretraining model (backbone + neck), e.g. its own pretraining runs",
    files="mixmim-base-p16_16xb128-coslr-300e_in1k_20221208-44fe8d2c.pth (mmpretrain's model zoo) or any run of "
          "mmpretrain's mixmim pretraining config (mmengine 'state_dict' with backbone.* and neck.*)",
    convert=_convert_mmpretrain,
    algorithm="MixMAE",
    cfg_options={"model.decoder.norm_eps": 1e-6, "model.decoder.pos_layout": "mocov3"},
    epoch=mmengine_epoch,
))
