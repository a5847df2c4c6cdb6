"""Official MAE pretraining checkpoints (facebookresearch/mae ``models_mae.py`` layout, e.g. the released
``mae_pretrain_vit_base_full.pth`` / ``mae_visualize_vit_base.pth`` with encoder *and* decoder) -> mim_zoo ``MAE``.

Official keys (``MaskedAutoencoderViT``): ``cls_token``, ``pos_embed``, ``patch_embed.*``, ``blocks.*``, ``norm.*``
(the encoder, timm names) and ``mask_token``, ``decoder_embed.*``, ``decoder_pos_embed``, ``decoder_blocks.*``,
``decoder_norm.*``, ``decoder_pred.*``. ``decoder_pos_embed`` is the fixed sin-cos table mim_zoo recomputes; the
converter checks it agrees instead of copying it.
"""

from __future__ import annotations

import torch

from ..tokens import sincos_pos_embed_2d
from .official import StateDict, register_converter, rename_prefixes

_MAPPING = [
    ("cls_token", "encoder.vit.cls_token"),
    ("pos_embed", "encoder.vit.pos_embed"),
    ("patch_embed.", "encoder.vit.patch_embed."),
    ("blocks.", "encoder.vit.blocks."),
    ("norm.", "encoder.vit.norm."),
    ("mask_token", "decoder.mask_token"),
    ("decoder_embed.", "decoder.embed."),
    ("decoder_blocks.", "decoder.blocks."),
    ("decoder_norm.", "decoder.norm."),
    ("decoder_pred.", "decoder.pred."),
]


@register_converter("mae")
def convert_mae(state_dict: StateDict) -> StateDict:
    """Official MAE ``model`` state dict -> mim_zoo ``MAE`` state dict."""
    dec_pos = state_dict.get("decoder_pos_embed")
    if dec_pos is not None:
        side = int(round((dec_pos.shape[1] - 1) ** 0.5))
        expected = sincos_pos_embed_2d(dec_pos.shape[2], (side, side))
        if not torch.allclose(dec_pos.float(), expected, atol=1e-5):
            raise ValueError("decoder_pos_embed of the checkpoint is not MAE's fixed sin-cos table; not an MAE file?")
    return rename_prefixes(state_dict, _MAPPING, drop=("decoder_pos_embed",))
