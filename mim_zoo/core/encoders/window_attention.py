"""MixMIM's masked window attention on mmpretrain's own modules, with the two masks folded into one bias.

mmpretrain 1.2.0 ``MixMIMWindowAttention.forward`` (``mmpretrain/models/backbones/mixmim.py``) computes, per window
of ``N`` tokens and head,

    softmax(scale * q k^T + B_rel - 1e30 * [label_i != label_j]) v

with ``B_rel`` Swin's relative-position bias (``relative_position_bias_table[relative_position_index]``) and
``label`` the 0/1 source of each token (MixMAE's same-source mask, Sense-X/MixMIM@2b2f5a9
``models_mixmim.py:WindowAttention``), as a dozen separate ops on ``[B * windows, heads, N, N]`` tensors: the
pairwise mask rebuilt in every block for every image, the logits shifted by 1e30, the indexing of ``q, k, v``
zero-filling three full-size gradient buffers in backward. Here both terms are one additive bias,
``B_rel + (-inf where the sources differ)``; masked logits get exactly zero weight either way (``exp(-1e30 - max)``
underflows to 0 in float32, as ``exp(-inf)`` does). The same-source part is shared by the batch (MixMAE mixes every
image pair with one mask) and by the blocks of a stage (MixMIM never shifts windows): :func:`same_source_bias` builds
it once per stage, ``[windows, 1, N, N]``, and :func:`mixmim_block` runs a block on tokens that stay partitioned into
windows for the whole stage. Two paths, chosen by :func:`biased_attention`:

* training on the CPU, :class:`BiasedAttention`: ``F.scaled_dot_product_attention`` (the flash kernel) forward;
  its backward gives no gradient for ``attn_mask`` (SDPA falls back to its unfused math path when the mask requires
  grad), but the relative-position table is trained, so a hand-written backward recomputes the probabilities and
  returns the bias gradient with those of ``q, k, v`` (the FlashAttention backward, Dao et al. 2022,
  arXiv:2205.14135, Alg. 4, with a whole window as one block), over chunks of a few windows that stay in cache.
  Keeping mmpretrain's forward instead (bit-identical, probabilities saved for the backward) measured about 20%
  slower on the MixMIM-B stage shapes;
* inference on the CPU and other devices: ``F.scaled_dot_product_attention`` with the bias as ``attn_mask`` (on
  CUDA the memory-efficient kernel, which returns the bias gradient itself).

Outputs and gradients equal mmpretrain's within float rounding (the kernels sum in another order).
Parameters and buffers stay mmpretrain's (``attn.qkv``, ``attn.proj``, ``attn.relative_position_bias_table``,
``attn.relative_position_index``), so state dicts, official checkpoints and exports are unchanged;
``tests/test_window_attention.py`` compares every path with mmpretrain's modules.

Written anew; no code is copied.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

if TYPE_CHECKING:  # mmpretrain is imported when a MixMIM encoder is built, not when this module is
    from mmpretrain.models.utils import WindowMSA


def relative_position_bias(attn: WindowMSA) -> Tensor:
    """Swin's relative-position bias of one attention module: ``[heads, N, N]`` (``N`` tokens per window)."""
    table = attn.relative_position_bias_table  # [(2 * Wh - 1) * (2 * Ww - 1), heads]
    n = attn.window_size[0] * attn.window_size[1]
    return table[attn.relative_position_index.view(-1)].view(n, n, -1).permute(2, 0, 1)  # [heads, N, N]


def same_source_bias(labels: Tensor) -> Tensor:
    """Additive attention bias of MixMAE's same-source mask: ``[W, N]`` 0/1 labels -> ``[W, 1, N, N]`` float32.

    0 where the query and key tokens of a window have the same label, ``-inf`` where they differ (every query keeps
    at least itself, so no row is fully masked). Float32 whatever the compute dtype, as mmpretrain keeps its mask.
    """
    same = labels[:, :, None] == labels[:, None, :]  # [W, N, N]
    bias = torch.zeros(same.shape, dtype=torch.float32, device=labels.device)
    return bias.masked_fill_(~same, float("-inf")).unsqueeze(1)


# Size of the [n, N, N] float32 buffers of the CPU backward: chunks of n (image, group) matrices small enough that
# both buffers and their operands stay in a core's L2 cache (2 MiB on the machines measured) between the chunk's
# ops; eight 14x14-window matrices. Larger chunks (whole images, 16 MiB) measured about 20% slower.
_CHUNK_BYTES = 5 * 2**18


@torch.autocast("cpu", enabled=False)
def _cpu_attention(q: Tensor, k: Tensor, v: Tensor, bias: Tensor, scale: float) -> Tensor:
    """SDPA's CPU flash kernel with the bias kept in float32 (under autocast SDPA would cast it to bf16; mmpretrain
    adds its float32 bias to the logits)."""
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias.unsqueeze(0), scale=scale)


def _chunk_size(groups: int, tokens: int) -> int:
    """Matrices per backward chunk: whole images when one image's ``G`` matrices fit ``_CHUNK_BYTES``, else the
    largest divisor of ``G`` that fits (a chunk never straddles two images, so it takes a contiguous bias slice)."""
    fits = max(1, _CHUNK_BYTES // (tokens * tokens * 4))
    if fits >= groups:
        return fits // groups * groups
    return max(n for n in range(1, fits + 1) if groups % n == 0)


class BiasedAttention(torch.autograd.Function):
    """``softmax(scale * q k^T + bias) v`` on the CPU with a trainable ``bias``: flash forward, chunked backward.

    ``q, k, v``: ``[B, G, N, d]`` (``G`` groups: heads, or windows x heads); ``bias``: ``[G, N, N]``, shared by the
    batch. Returns ``[B, G, N, d]`` in the dtype of ``q``. The backward recomputes, per chunk of a few ``N x N``
    matrices held in cache, ``P = softmax(scale * q k^T + bias)`` and ``dS = P * (dO v^T - rowsum(dO * O))``, then
    ``dq = scale * dS k``, ``dk = scale * dS^T q``, ``dv = P^T dO`` and ``dbias = sum_B dS``; in float32 for
    float16/bfloat16 inputs, as the flash kernel accumulates. Nothing of size ``N x N`` is kept between forward and
    backward (autograd through mmpretrain's ops keeps the probabilities of every block).
    """

    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, bias: Tensor, scale: float) -> Tensor:
        out = _cpu_attention(q, k, v, bias.detach(), scale)  # [B, G, N, d]; a bias requiring grad: no flash
        ctx.save_for_backward(q, k, v, bias, out)
        ctx.scale = scale
        return out

    @staticmethod
    @torch.autocast("cpu", enabled=False)
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        q, k, v, bias, out = ctx.saved_tensors
        batch, groups, tokens, dim = q.shape
        acc = torch.promote_types(q.dtype, torch.float32)  # float32, or float64 for float64 inputs

        def rows(t: Tensor) -> Tensor:  # [B, G, N, d] -> [B * G, N, d] in the accumulation dtype, contiguous
            return t.to(acc).reshape(batch * groups, tokens, dim).contiguous()

        q_scaled, k, v, grad_out = rows(q * ctx.scale), rows(k), rows(v), rows(grad_out)
        delta = (grad_out * rows(out)).sum(-1, keepdim=True)  # [B * G, N, 1] = rowsum(P * dP)
        bias_acc = bias.detach().to(acc)
        grad_q, grad_k, grad_v = torch.empty_like(q_scaled), torch.empty_like(k), torch.empty_like(v)
        grad_bias = torch.zeros_like(bias_acc) if ctx.needs_input_grad[3] else None
        size = _chunk_size(groups, tokens)
        logits, probs = q_scaled.new_empty(size, tokens, tokens), q_scaled.new_empty(size, tokens, tokens)
        for start in range(0, batch * groups, size):
            chunk = slice(start, min(start + size, batch * groups))
            n, first = chunk.stop - start, start % groups
            s, p = logits[:n], probs[:n]
            torch.bmm(q_scaled[chunk], k[chunk].transpose(1, 2), out=s)  # [n, N, N]
            if n >= groups:  # whole images
                s.view(-1, groups, tokens, tokens).add_(bias_acc)
            else:
                s.add_(bias_acc[first : first + n])
            torch.softmax(s, dim=-1, out=p)  # the forward's probabilities, recomputed
            ds = torch.bmm(grad_out[chunk], v[chunk].transpose(1, 2), out=s)  # dP
            ds.sub_(delta[chunk]).mul_(p)  # dS, the gradient of the logits
            torch.bmm(ds, k[chunk], out=grad_q[chunk])
            torch.bmm(ds.transpose(1, 2), q_scaled[chunk], out=grad_k[chunk])  # the scale is in q_scaled
            torch.bmm(p.transpose(1, 2), grad_out[chunk], out=grad_v[chunk])
            if grad_bias is None:
                continue
            if n >= groups:
                grad_bias.add_(ds.view(-1, groups, tokens, tokens).sum(0))
            else:
                grad_bias[first : first + n].add_(ds)
        shape = (batch, groups, tokens, dim)
        grad_q = grad_q.mul_(ctx.scale).view(shape).to(q.dtype)
        grad_k, grad_v = grad_k.view(shape).to(q.dtype), grad_v.view(shape).to(q.dtype)
        return grad_q, grad_k, grad_v, None if grad_bias is None else grad_bias.to(bias.dtype), None


def biased_attention(q: Tensor, k: Tensor, v: Tensor, bias: Tensor, scale: float) -> Tensor:
    """``softmax(scale * q k^T + bias) v`` through a fused kernel; gradients reach ``bias`` too.

    Args:
        q, k, v: ``[B, G, N, d]``.
        bias: ``[G, N, N]`` additive logits bias, shared by the batch (may hold ``-inf``; no row fully ``-inf``).
        scale: logit scale (``head_dim ** -0.5``).

    Returns:
        ``[B, G, N, d]``.
    """
    if q.device.type == "cpu":
        if torch.is_grad_enabled() and bias.requires_grad:
            return BiasedAttention.apply(q, k, v, bias, scale)
        return _cpu_attention(q, k, v, bias, scale)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias.unsqueeze(0).to(q.dtype), scale=scale)


def window_attention(attn: WindowMSA, x: Tensor, source_bias: Tensor | None = None) -> Tensor:
    """mmpretrain's (MixMIM) window attention ``attn`` on windowed tokens, through :func:`biased_attention`.

    Args:
        attn: a ``WindowMSA`` / ``MixMIMWindowAttention`` (its ``qkv``, ``proj``, relative-position table, scale).
        x: ``[B, W, N, C]``, the ``N`` tokens of each of ``W`` windows per image, in mmpretrain's window order.
        source_bias: ``[W, 1, N, N]`` from :func:`same_source_bias` (shared by the batch), or ``None``: plain
            window attention.

    Returns:
        ``[B, W, N, C]``, equal to ``attn(x.flatten(0, 1), mask)`` with the mask of the same labels.
    """
    if attn.training and attn.attn_drop.p > 0:
        raise ValueError("the fused MixMIM window attention has no attention dropout; build the encoder with "
                         "attn_drop_rate=0 (MixMIM pretrains without it)")
    batch, windows, tokens, channels = x.shape
    heads = attn.num_heads
    bias = relative_position_bias(attn)  # [heads, N, N]
    # one (B * W, heads) batch when the bias is shared by the windows; else (B, W * heads), bias per window and head
    groups = 1 if source_bias is None else windows
    if source_bias is not None:
        bias = (bias + source_bias).reshape(windows * heads, tokens, tokens)  # [W * heads, N, N]
    qkv = attn.qkv(x).view(batch, windows, tokens, 3, heads, channels // heads)
    qkv = qkv.permute(3, 0, 1, 4, 2, 5).reshape(3, batch * windows // groups, groups * heads, tokens, -1)
    q, k, v = qkv.unbind(0)  # one gradient buffer in backward, not three zero-filled ones (indexing)
    out = biased_attention(q, k, v, bias, attn.scale)  # [B * W / groups, groups * heads, N, d]
    out = out.view(batch, windows, heads, tokens, -1).transpose(2, 3).reshape(batch, windows, tokens, channels)
    return attn.proj_drop(attn.proj(out))


# --- MixMIM blocks on windowed tokens ----------------------------------------------------------------------------
def to_windows(x: Tensor, grid: tuple[int, int], window: int) -> Tensor:
    """``[B, H * W, C]`` raster tokens -> ``[B, nW, window**2, C]``, windows in mmpretrain's order (row-major)."""
    batch, _, channels = x.shape
    height, width = grid
    x = x.view(batch, height // window, window, width // window, window, channels)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(batch, -1, window * window, channels)


def from_windows(x: Tensor, grid: tuple[int, int], window: int) -> Tensor:
    """Inverse of :func:`to_windows`: ``[B, nW, window**2, C]`` -> ``[B, H * W, C]``."""
    batch, _, _, channels = x.shape
    height, width = grid
    x = x.view(batch, height // window, width // window, window, window, channels)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(batch, height * width, channels)


def mixmim_block(block: nn.Module, x: Tensor, source_bias: Tensor | None = None) -> Tensor:
    """mmpretrain's ``MixMIMBlock.forward`` on tokens already in windows: ``[B, nW, N, C] -> [B, nW, N, C]``.

    LayerNorms, the FFN and drop path act per token (drop path per image, drawn as mmpretrain draws it), so they
    commute with the window partition, which MixMIM never shifts: a stage partitions once, not once per block.
    ``source_bias``: ``[nW, 1, N, N]`` (:func:`same_source_bias`) or ``None``.
    """
    x = x + block.drop_path(window_attention(block.attn, block.ln1(x), source_bias))
    return block.ffn(block.norm2(x), identity=x)  # mmcv's FFN adds the residual (and its drop path)
