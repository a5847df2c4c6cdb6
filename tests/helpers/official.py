"""State dicts in the key layouts and shapes of the official pretraining code, at any size, with random weights.

The official code is not installed; these builders write its parameter names and shapes as read in each source
(cited per function), so converter and round-trip tests start from files shaped like the released ones. Fixed
sin-cos tables are written as the official code computes them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from mim_zoo.core.checkpoints.mixmim import swin_relative_position_index
from mim_zoo.core.tokens import sincos_pos_embed_2d


def _random(shapes: dict[str, tuple[int, ...]], seed: int, scale: float = 0.2) -> dict[str, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {key: scale * torch.randn(shape, generator=gen) for key, shape in shapes.items()}


def _vit_block(shapes: dict, prefix: str, dim: int, mlp_ratio: int = 4) -> None:
    """timm 0.3 ``Block`` (qkv bias): ``norm1``, ``attn.{qkv, proj}``, ``norm2``, ``mlp.{fc1, fc2}``."""
    hidden = mlp_ratio * dim
    shapes.update({f"{prefix}norm1.weight": (dim,), f"{prefix}norm1.bias": (dim,),
                   f"{prefix}attn.qkv.weight": (3 * dim, dim), f"{prefix}attn.qkv.bias": (3 * dim,),
                   f"{prefix}attn.proj.weight": (dim, dim), f"{prefix}attn.proj.bias": (dim,),
                   f"{prefix}norm2.weight": (dim,), f"{prefix}norm2.bias": (dim,),
                   f"{prefix}mlp.fc1.weight": (hidden, dim), f"{prefix}mlp.fc1.bias": (hidden,),
                   f"{prefix}mlp.fc2.weight": (dim, hidden), f"{prefix}mlp.fc2.bias": (dim,)})


def mae_state_dict(embed: int, depth: int, dec_embed: int, dec_depth: int, patch: int, grid: int, seed: int = 0,
                   decoder: bool = True) -> dict[str, Tensor]:
    """facebookresearch/mae ``models_mae.py:MaskedAutoencoderViT`` (``decoder=False``: the encoder-only release).

    Fixed tables: ``pos_embed`` / ``decoder_pos_embed`` from ``util/pos_embed.py:get_2d_sincos_pos_embed`` with a
    zero class row (mim_zoo's ``layout="mae"`` table, checked against that function in ``tests/test_encoders.py``).
    """
    shapes = {"cls_token": (1, 1, embed), "patch_embed.proj.weight": (embed, 3, patch, patch),
              "patch_embed.proj.bias": (embed,), "norm.weight": (embed,), "norm.bias": (embed,)}
    for i in range(depth):
        _vit_block(shapes, f"blocks.{i}.", embed)
    if decoder:
        shapes.update({"mask_token": (1, 1, dec_embed), "decoder_embed.weight": (dec_embed, embed),
                       "decoder_embed.bias": (dec_embed,), "decoder_norm.weight": (dec_embed,),
                       "decoder_norm.bias": (dec_embed,), "decoder_pred.weight": (patch * patch * 3, dec_embed),
                       "decoder_pred.bias": (patch * patch * 3,)})
        for i in range(dec_depth):
            _vit_block(shapes, f"decoder_blocks.{i}.", dec_embed)
    state = _random(shapes, seed)
    state["pos_embed"] = sincos_pos_embed_2d(embed, (grid, grid))
    if decoder:
        state["decoder_pos_embed"] = sincos_pos_embed_2d(dec_embed, (grid, grid))
    return state


def bootmae_sincos(dim: int, grid: int) -> Tensor:
    """LightDXY/BootMAE@d604b18 ``models/modeling_pretrain_bootmae.py:build_2d_sincos_position_embedding`` (MoCo
    v3): ``torch.meshgrid(grid_w, grid_h)`` with 'ij' indexing, a zero class row: ``[1, 1 + grid ** 2, dim]``."""
    grid_w, grid_h = torch.meshgrid(torch.arange(grid, dtype=torch.float32), torch.arange(grid, dtype=torch.float32),
                                    indexing="ij")
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float32) / (dim // 4))
    out_w, out_h = grid_w.flatten()[:, None] * omega, grid_h.flatten()[:, None] * omega
    table = torch.cat([out_w.sin(), out_w.cos(), out_h.sin(), out_h.cos()], dim=1)
    return torch.cat([torch.zeros(1, dim), table])[None]


def bootmae_state_dict(embed: int, depth: int, heads: int, pix_dim: int, pix_depth: int, pix_heads: int,
                       feat_depth: int, feat_heads: int, patch: int, grid: int, seed: int = 0) -> dict[str, Tensor]:
    """LightDXY/BootMAE@d604b18 ``VisionTransformerForMaskedImageModeling(qkv_bias=True, init_values=None)``: the
    encoder (BEiT attention: ``q_bias``/``v_bias``), the pixel decoder (``down``, ``decode_blocks``,
    ``decode_norm``, the ``ConvTranspose2d`` ``lm_head.proj``) and the feature decoder (``*_1``), whose blocks add
    cross-attention (``norm3``, ``norm4``, ``c_attn``). An attention of ``h`` heads on ``dim`` has ``(dim // h) * h``
    inner channels (the official floor division)."""
    shapes: dict[str, tuple[int, ...]] = {
        "cls_token": (1, 1, embed), "patch_embed.proj.weight": (embed, 3, patch, patch),
        "patch_embed.proj.bias": (embed,), "norm.weight": (embed,), "norm.bias": (embed,)}

    def block(prefix: str, dim: int, num_heads: int, context: int | None) -> None:
        inner = (dim // num_heads) * num_heads
        for norm in ("norm1", "norm2") + (("norm3",) if context else ()):
            shapes[f"{prefix}{norm}.weight"] = shapes[f"{prefix}{norm}.bias"] = (dim,)
        shapes.update({f"{prefix}attn.q_bias": (inner,), f"{prefix}attn.v_bias": (inner,),
                       f"{prefix}attn.qkv.weight": (3 * inner, dim), f"{prefix}attn.proj.weight": (dim, inner),
                       f"{prefix}attn.proj.bias": (dim,), f"{prefix}mlp.fc1.weight": (4 * dim, dim),
                       f"{prefix}mlp.fc1.bias": (4 * dim,), f"{prefix}mlp.fc2.weight": (dim, 4 * dim),
                       f"{prefix}mlp.fc2.bias": (dim,)})
        if context:
            shapes.update({f"{prefix}norm4.weight": (context,), f"{prefix}norm4.bias": (context,),
                           f"{prefix}c_attn.q_bias": (inner,), f"{prefix}c_attn.v_bias": (inner,),
                           f"{prefix}c_attn.q.weight": (inner, dim), f"{prefix}c_attn.kv.weight": (2 * inner, context),
                           f"{prefix}c_attn.proj.weight": (dim, inner), f"{prefix}c_attn.proj.bias": (dim,)})

    for i in range(depth):
        block(f"blocks.{i}.", embed, heads, None)
    for i in range(max(pix_depth, feat_depth)):
        if i < pix_depth:
            block(f"decode_blocks.{i}.", pix_dim, pix_heads, embed)
        if i < feat_depth:
            block(f"decode_blocks_1.{i}.", embed, feat_heads, embed)
    shapes.update({"decode_norm.weight": (pix_dim,), "decode_norm.bias": (pix_dim,), "down.weight": (pix_dim, embed),
                   "down.bias": (pix_dim,), "mask_token": (1, 1, pix_dim),
                   "lm_head.proj.weight": (pix_dim, 3, patch, patch), "lm_head.proj.bias": (3,),
                   "down_1.weight": (embed, embed), "down_1.bias": (embed,),
                   "mask_token_1": (1, 1, embed), "decode_norm_1.weight": (embed,), "decode_norm_1.bias": (embed,),
                   "lm_head_1.weight": (embed, embed), "lm_head_1.bias": (embed,)})
    state = _random(shapes, seed)
    state["pos_embed"] = bootmae_sincos(embed, grid)
    state["de_pos_embed"] = bootmae_sincos(pix_dim, grid)
    return state


def mixmim_state_dict(embed: int, depths: Sequence[int], heads: Sequence[int], windows: Sequence[int], grid: int,
                      patch: int, dec_dim: int, dec_depth: int, out_dim: int, seed: int = 0) -> dict[str, Tensor]:
    """Sense-X/MixMIM@2b2f5a9 ``models_mixmim.py:MixMIM``: timm<=0.6 Swin names (``norm1``, ``mlp.fc1``, the
    PatchMerging ``downsample.{norm, reduction}`` of 4C channels), Swin's relative-position index, sin-cos
    ``absolute_pos_embed`` and ``decoder_pos_embed`` without a class row, and an MAE-style decoder."""
    shapes: dict[str, tuple[int, ...]] = {
        "mask_token": (1, 1, dec_dim), "patch_embed.proj.weight": (embed, 3, patch, patch),
        "patch_embed.proj.bias": (embed,), "patch_embed.norm.weight": (embed,), "patch_embed.norm.bias": (embed,)}
    for i, depth in enumerate(depths):
        dim, win = embed * 2**i, min(windows[i], grid // 2**i)
        for j in range(depth):
            _vit_block(shapes, f"layers.{i}.blocks.{j}.", dim)
            shapes[f"layers.{i}.blocks.{j}.attn.relative_position_bias_table"] = ((2 * win - 1) ** 2, heads[i])
        if i < len(depths) - 1:  # timm PatchMerging: norm(4C) then reduction 4C -> 2C without bias
            shapes.update({f"layers.{i}.downsample.reduction.weight": (2 * dim, 4 * dim),
                           f"layers.{i}.downsample.norm.weight": (4 * dim,),
                           f"layers.{i}.downsample.norm.bias": (4 * dim,)})
    features = embed * 2 ** (len(depths) - 1)
    shapes.update({"norm.weight": (features,), "norm.bias": (features,), "decoder_embed.weight": (dec_dim, features),
                   "decoder_embed.bias": (dec_dim,), "decoder_norm.weight": (dec_dim,), "decoder_norm.bias": (dec_dim,),
                   "decoder_pred.weight": (out_dim, dec_dim), "decoder_pred.bias": (out_dim,)})
    for k in range(dec_depth):
        _vit_block(shapes, f"decoder_blocks.{k}.", dec_dim)
    state = _random(shapes, seed, scale=1.0)
    for i, depth in enumerate(depths):  # the fixed tables (buffers / frozen parameters)
        win = min(windows[i], grid // 2**i)
        for j in range(depth):
            state[f"layers.{i}.blocks.{j}.attn.relative_position_index"] = swin_relative_position_index(win)
    out_grid = grid // 2 ** (len(depths) - 1)
    state["absolute_pos_embed"] = sincos_pos_embed_2d(embed, (grid, grid), 0)
    state["decoder_pos_embed"] = sincos_pos_embed_2d(dec_dim, (out_grid, out_grid), 0)
    return state
