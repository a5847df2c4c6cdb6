"""Token utilities every algorithm shares: patches <-> images, gathers by index, masks -> indices, sin-cos tables.

Pure functions of tensors (no parameters, no registry). Shapes: ``B`` batch, ``L`` tokens, ``K`` kept tokens, ``D``
channels, ``p`` patch size.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor

SINCOS_LAYOUTS = ("mae", "mocov3")


def sincos_pos_embed_2d(embed_dim: int, grid_size: tuple[int, int], num_prefix_tokens: int = 1,
                        layout: str = "mae") -> Tensor:
    """Fixed 2-D sine-cosine positional embedding.

    Each coordinate is encoded as ``[sin(p * w_k), cos(p * w_k)]`` with ``w_k = 10000^(-k / (D/4))``, ``k < D/4``;
    prefix tokens get zeros. ``layout`` orders the two halves:

    * ``"mae"`` (facebookresearch/mae ``util/pos_embed.py``): column (x) first, then row (y);
    * ``"mocov3"`` (facebookresearch/moco-v3 ``vits.py``, copied by LightDXY/BootMAE@d604b18
      ``models/modeling_pretrain_bootmae.py:build_2d_sincos_position_embedding``): row first, then column. Its
      ``torch.meshgrid(grid_w, grid_h)`` uses "ij" indexing, so the half named ``w`` holds the row index. On a
      square grid this is the MAE table with the grid transposed; loading BootMAE weights needs it.

    Returns:
        ``[1, num_prefix_tokens + H * W, embed_dim]`` in raster order.
    """
    if embed_dim % 4:
        raise ValueError(f"sin-cos positional embedding needs embed_dim divisible by 4, got {embed_dim}")
    if layout not in SINCOS_LAYOUTS:
        raise ValueError(f"sin-cos layout must be one of {SINCOS_LAYOUTS}, got {layout!r}")
    h, w = grid_size
    omega = 1.0 / 10000 ** (torch.arange(embed_dim // 4, dtype=torch.float64) / (embed_dim / 4))  # [D/4]
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")

    def encode(pos: Tensor) -> Tensor:  # [H*W] -> [H*W, D/2]
        angles = pos.flatten()[:, None] * omega[None, :]
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    halves = (xs, ys) if layout == "mae" else (ys, xs)
    emb = torch.cat([encode(h) for h in halves], dim=1)  # [H*W, D]
    emb = torch.cat([torch.zeros(num_prefix_tokens, embed_dim, dtype=torch.float64), emb], dim=0)
    return emb.float().unsqueeze(0)


def patchify(imgs: Tensor, patch_size: int) -> Tensor:
    """``[B, C, H, W] -> [B, L, p*p*C]``, MAE's order (row-major patches; within a patch ``(p, q, c)``)."""
    if imgs.shape[-1] % patch_size or imgs.shape[-2] % patch_size:
        raise ValueError(f"image size {tuple(imgs.shape[-2:])} is not divisible by the patch size {patch_size}")
    return rearrange(imgs, "b c (h p) (w q) -> b (h w) (p q c)", p=patch_size, q=patch_size)


def unpatchify(x: Tensor, patch_size: int, grid_size: tuple[int, int], channels: int = 3) -> Tensor:
    """Inverse of :func:`patchify`: ``[B, L, p*p*C] -> [B, C, H, W]``."""
    return rearrange(x, "b (h w) (p q c) -> b c (h p) (w q)", h=grid_size[0], w=grid_size[1], p=patch_size,
                     q=patch_size, c=channels)


def mask_to_indices(mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Gather indices for a mask with the same number of masked tokens in every row.

    Args:
        mask: ``[B, L]`` bool, True = masked.

    Returns:
        ``keep_idx [B, K]`` (visible positions, ascending), ``mask_idx [B, L - K]`` (masked positions, ascending)
        and ``restore_idx [B, L]`` such that ``cat([keep, masked], 1).gather(1, restore_idx)`` is raster order.
    """
    if mask.dtype != torch.bool or mask.dim() != 2:
        raise ValueError(f"a mask must be a bool tensor [B, L] (True = masked), got {mask.dtype} {tuple(mask.shape)}")
    counts = mask.sum(dim=1)
    if not bool((counts == counts[0]).all()):
        raise ValueError(
            f"every sample must mask the same number of tokens to be batched, got counts {counts.tolist()}; "
            "use a mask generator with an exact count (e.g. BlockMasking(total_masked=...))"
        )
    num_keep = mask.shape[1] - int(counts[0])
    order = mask.to(torch.uint8).argsort(dim=1, stable=True)  # [B, L] visible first, both groups ascending
    restore_idx = order.argsort(dim=1)
    return order[:, :num_keep], order[:, num_keep:], restore_idx


def gather_tokens(x: Tensor, idx: Tensor) -> Tensor:
    """``x [B, L, D]``, ``idx [B, K]`` -> ``[B, K, D]``."""
    return x.gather(1, idx.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
