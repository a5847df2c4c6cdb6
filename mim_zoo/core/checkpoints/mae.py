"""Official MAE pretraining checkpoints (facebookresearch/mae ``models_mae.py:MaskedAutoencoderViT``) -> ``MAE``.

Two layouts, as released (facebookresearch/mae#8, #3) or written by ``main_pretrain.py`` (``util/misc.py:save_model``:
``model``, ``optimizer``, ``epoch``, ``scaler``, ``args``):

* ``mae``: encoder *and* decoder (``mae_pretrain_vit_{base,large,huge}_full.pth``, norm-pix targets;
  ``checkpoint-N.pth``): continues training or evaluates.
* ``mae_visualize``: the same keys, from the demo's models "trained with pixels as targets for visualization"
  (``demo/mae_visualize.ipynb``; ``mae_visualize_vit_{base,large}.pth``): the recorded config predicts raw pixels
  (``model.target.norm="none"``).
* ``mae_encoder``: the encoder alone (``mae_pretrain_vit_{base,large,huge}.pth``, the files of the paper's
  fine-tuning): evaluates and exports; a run continued from it starts a fresh decoder.

Official keys: ``cls_token``, ``pos_embed``, ``patch_embed.*``, ``blocks.*``, ``norm.*`` (the encoder, timm names)
and ``mask_token``, ``decoder_embed.*``, ``decoder_pos_embed``, ``decoder_blocks.*``, ``decoder_norm.*``,
``decoder_pred.*``. ``decoder_pos_embed`` is the fixed sin-cos table mim_zoo recomputes; the converter checks it
agrees instead of copying it.
"""

from __future__ import annotations

from typing import Any

import torch

from ..tokens import sincos_pos_embed_2d
from .keys import ConversionError, StateDict, rename_prefixes, state_dict_entry
from .sources import SourceLayout, register_source

_ENCODER = [
    ("cls_token", "encoder.vit.cls_token"),
    ("pos_embed", "encoder.vit.pos_embed"),
    ("patch_embed.", "encoder.vit.patch_embed."),
    ("blocks.", "encoder.vit.blocks."),
    ("norm.", "encoder.vit.norm."),
]
_DECODER = [
    ("mask_token", "decoder.mask_token"),
    ("decoder_embed.", "decoder.embed."),
    ("decoder_blocks.", "decoder.blocks."),
    ("decoder_norm.", "decoder.norm."),
    ("decoder_pred.", "decoder.pred."),
]


def mae_to_mim_zoo(state_dict: StateDict) -> StateDict:
    """Official MAE ``model`` state dict (encoder and decoder) -> mim_zoo ``MAE`` state dict."""
    if "decoder_embed.weight" not in state_dict:
        raise ConversionError("no decoder (decoder_embed.*) in the file: an encoder-only release such as "
                              "mae_pretrain_vit_base.pth converts with --from mae_encoder")
    dec_pos = state_dict.get("decoder_pos_embed")
    if dec_pos is not None:
        side = int(round((dec_pos.shape[1] - 1) ** 0.5))
        expected = sincos_pos_embed_2d(dec_pos.shape[2], (side, side))
        if not torch.allclose(dec_pos.float(), expected, atol=1e-5):
            raise ValueError("decoder_pos_embed of the checkpoint is not MAE's fixed sin-cos table; not an MAE file?")
    return rename_prefixes(state_dict, _ENCODER + _DECODER, drop=("decoder_pos_embed",))


def mae_encoder_to_mim_zoo(state_dict: StateDict) -> StateDict:
    """Official MAE encoder-only state dict -> the ``encoder.*`` part of a mim_zoo ``MAE`` state dict."""
    decoder = sorted(k for k in state_dict if k.startswith(("decoder_", "mask_token")))
    if decoder:
        raise ConversionError(f"{decoder[:2]}: this file holds the decoder too; convert it with --from mae")
    return rename_prefixes(state_dict, _ENCODER)


def _convert_full(checkpoint: Any) -> StateDict:
    return mae_to_mim_zoo(state_dict_entry(checkpoint, ("model",)))


def _convert_encoder(checkpoint: Any) -> StateDict:
    return mae_encoder_to_mim_zoo(state_dict_entry(checkpoint, ("model",)))


register_source(SourceLayout(
    name="mae",
    summary="official MAE, encoder and decoder (continue training or evaluate)",
    files="mae_pretrain_vit_base_full.pth, mae_pretrain_vit_large_full.pth, main_pretrain.py's checkpoint-N.pth "
          "(facebookresearch/mae; state dict under 'model')",
    convert=_convert_full,
    algorithm="MAE",
))
register_source(SourceLayout(
    name="mae_visualize",
    summary="official MAE demo models, trained on raw pixels (the recorded config predicts raw pixels)",
    files="mae_visualize_vit_base.pth, mae_visualize_vit_large.pth (facebookresearch/mae demo/mae_visualize.ipynb)",
    convert=_convert_full,
    algorithm="MAE",
    cfg_options={"model.target.norm": "none"},
))
register_source(SourceLayout(
    name="mae_encoder",
    summary="official MAE, encoder only (evaluate, export; a continued run starts a fresh decoder)",
    files="mae_pretrain_vit_base.pth, mae_pretrain_vit_large.pth (facebookresearch/mae README; under 'model')",
    convert=_convert_encoder,
    algorithm="MAE",
    absent=("decoder.",),
))
