"""Absolute positional embeddings at another resolution.

A ViT pretrained at 224 px (14 x 14 tokens) is fine-tuned at 512 px for ADE20K (32 x 32) and 1024 px for COCO
(64 x 64). The standard recipe, used by MAE (facebookresearch/mae ``util/pos_embed.py:interpolate_pos_embed``),
BEiT/mmseg (``mmseg/models/backbones/mae.py:MAE.resize_abs_pos_embed``) and ViTDet (detectron2
``modeling/backbone/utils.py:get_abs_pos``), keeps the prefix (class token) rows and resizes the patch grid with
bicubic interpolation, ``align_corners=False``. At the same size the table is returned unchanged (bit-exact).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def resize_pos_embed(pos_embed: Tensor, src_grid: tuple[int, int], dst_grid: tuple[int, int],
                     num_prefix_tokens: int = 1, mode: str = "bicubic") -> Tensor:
    """Resize a positional-embedding table to another token grid.

    Args:
        pos_embed: ``[1, P + Hs * Ws, D]`` (prefix rows first, then the grid in raster order).
        src_grid: ``(Hs, Ws)`` of ``pos_embed``.
        dst_grid: ``(Hd, Wd)`` wanted.
        num_prefix_tokens: leading rows kept as they are (1 for a class token, 0 for none).
        mode: ``F.interpolate`` mode.

    Returns:
        ``[1, P + Hd * Wd, D]``; ``pos_embed`` itself (a clone) when the grids are equal.
    """
    src_grid, dst_grid = tuple(src_grid), tuple(dst_grid)
    expected = num_prefix_tokens + src_grid[0] * src_grid[1]
    if pos_embed.dim() != 3 or pos_embed.shape[1] != expected:
        raise ValueError(f"pos_embed of shape {tuple(pos_embed.shape)} is not [1, {num_prefix_tokens} + "
                         f"{src_grid[0]}*{src_grid[1]}, D]")
    if src_grid == dst_grid:
        return pos_embed.clone()
    prefix, grid = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
    dim = grid.shape[-1]
    grid = grid.reshape(1, *src_grid, dim).permute(0, 3, 1, 2)  # [1, D, Hs, Ws]
    grid = F.interpolate(grid.float(), size=dst_grid, mode=mode, align_corners=False).to(pos_embed.dtype)
    grid = grid.permute(0, 2, 3, 1).reshape(1, dst_grid[0] * dst_grid[1], dim)  # [1, Hd*Wd, D]
    return torch.cat([prefix, grid], dim=1)  # [1, P + Hd*Wd, D]


def square_grid(num_tokens: int) -> tuple[int, int]:
    """The ``(s, s)`` grid of ``num_tokens`` patch tokens; a non-square count is an error."""
    side = int(round(num_tokens ** 0.5))
    if side * side != num_tokens:
        raise ValueError(f"{num_tokens} positions do not form a square grid; pass the grid size explicitly")
    return side, side
