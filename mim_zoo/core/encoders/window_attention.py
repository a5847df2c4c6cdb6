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
windows for the whole stage. Three kernels, chosen by :func:`biased_attention`:

* training on the CPU, :class:`BiasedAttention`: torch's CPU flash kernel gives no gradient for ``attn_mask`` (SDPA
  falls back to its unfused math path when the mask requires grad), but the relative-position table is trained. A
  fused forward and a hand-written backward (the FlashAttention backward, Dao et al. 2022, arXiv:2205.14135,
  Alg. 4, with a whole window as one block) over chunks of the batch whose buffers stay in cache and off fresh
  pages. Its forward is mmpretrain's op sequence, bit-identical to it (also under bf16 autocast); gradients agree
  within float rounding. It keeps the probabilities for the backward, as autograd keeps mmpretrain's: on the
  MixMIM-B stage shapes that was faster than the flash forward plus a recomputation in the backward;
* inference on the CPU: ``F.scaled_dot_product_attention`` with the bias as ``attn_mask`` (the flash kernel; about
  1.7x the chunked forward), equal to mmpretrain's within float rounding (another summation order);
* other devices: ``F.scaled_dot_product_attention`` with the bias as ``attn_mask`` (on CUDA the memory-efficient
  kernel, which returns the bias gradient).

Parameters and buffers stay mmpretrain's (``attn.qkv``, ``attn.proj``, ``attn.relative_position_bias_table``,
``attn.relative_position_index``), so state dicts, official checkpoints and exports are unchanged;
``tests/test_window_attention.py`` compares every path with mmpretrain's modules.

Written anew; no code is copied.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from mmpretrain.models.utils import WindowMSA
from torch import Tensor, nn


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


# Largest [chunk, G, N, N] buffer of the CPU kernel: the batch is processed in chunks below glibc's largest mmap
# threshold (32 MiB), so buffers come from the heap instead of freshly zeroed pages on every call (a 79 MB
# allocation costs about as much as one pass over it) and stay in cache between the ops of one chunk.
_CHUNK_BYTES = 16 * 2**20


@torch.autocast("cpu", enabled=False)
def _cpu_attention(q: Tensor, k: Tensor, v: Tensor, bias: Tensor, scale: float) -> Tensor:
    """SDPA's CPU flash kernel with the bias kept in float32 (under autocast SDPA would cast it to bf16; mmpretrain
    adds its float32 bias to the logits)."""
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias.unsqueeze(0), scale=scale)


def _chunks(batch: int, groups: int, tokens: int) -> list[slice]:
    """Row ranges of ``[B * G, ...]`` tensors, whole images per chunk, each chunk's ``[n, N, N]`` float32 buffer at
    most ``_CHUNK_BYTES`` (or one image)."""
    per_image = groups * tokens * tokens * 4
    step = max(1, min(batch, _CHUNK_BYTES // per_image))
    return [slice(start * groups, min(batch, start + step) * groups) for start in range(0, batch, step)]


def _accumulate_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for float16/bfloat16/float32 (mmpretrain's softmax dtype under autocast), float64 for float64."""
    return torch.promote_types(dtype, torch.float32)


def _bmm_into(a: Tensor, b: Tensor, out: Tensor) -> Tensor:
    """``a @ b`` (batched, in the dtype of ``a``) written into the buffer ``out`` (the accumulation dtype)."""
    if a.dtype == out.dtype:
        return torch.bmm(a, b, out=out)
    return out.copy_(torch.bmm(a, b))


class BiasedAttention(torch.autograd.Function):
    """``softmax(scale * q k^T + bias) v`` on the CPU with a trainable ``bias``, in fused chunks.

    ``q, k, v``: ``[B, G, N, d]`` (``G`` groups: heads, or windows x heads); ``bias``: ``[G, N, N]``, shared by the
    batch. Returns ``[B, G, N, d]`` in the dtype of ``q``. The precision policy is mmpretrain's under autocast:
    matmuls in the dtype of ``q``, logits + bias, softmax and its gradient in float32. Forward, per chunk of the
    batch: ``P = softmax(scale * q k^T + bias)`` (kept for backward, as autograd keeps mmpretrain's), ``O = P v``.
    Backward: ``dS = P * (dO v^T - rowsum(dO * O))``, ``dq = scale * dS k``, ``dk = scale * dS^T q``,
    ``dv = P^T dO``, ``dbias = sum_B dS``: five matmuls and two elementwise passes over ``N x N``, where autograd
    through mmpretrain's ops takes four matmuls and about seven passes, several of them into fresh allocations.
    """

    @staticmethod
    @torch.autocast("cpu", enabled=False)
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, bias: Tensor, scale: float) -> Tensor:
        batch, groups, tokens, dim = q.shape
        q_scaled = (q * scale).reshape(batch * groups, tokens, dim)  # mmpretrain scales q before the matmul
        k, v = k.reshape(batch * groups, tokens, dim), v.reshape(batch * groups, tokens, dim)
        bias_acc = bias.detach().to(_accumulate_dtype(q.dtype))
        out = torch.empty_like(q_scaled)
        chunks = _chunks(batch, groups, tokens)
        buffer = q_scaled.new_empty((chunks[0].stop, tokens, tokens), dtype=_accumulate_dtype(q.dtype))
        probs = []
        for rows in chunks:
            logits = _bmm_into(q_scaled[rows], k[rows].transpose(1, 2), buffer[: rows.stop - rows.start])  # [n, N, N]
            logits.view(-1, groups, tokens, tokens).add_(bias_acc)
            p = torch.softmax(logits, dim=-1)
            torch.bmm(p.to(q.dtype), v[rows], out=out[rows])
            probs.append(p)
        ctx.save_for_backward(q_scaled, k, v, out, *probs)
        ctx.scale, ctx.shape, ctx.bias_dtype = scale, q.shape, bias.dtype
        return out.view(q.shape)

    @staticmethod
    @torch.autocast("cpu", enabled=False)
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        q_scaled, k, v, out, *probs = ctx.saved_tensors
        batch, groups, tokens, dim = ctx.shape
        dtype = q_scaled.dtype
        grad_out = grad_out.to(dtype).reshape(batch * groups, tokens, dim)
        acc = probs[0].dtype
        delta = (grad_out.to(acc) * out.to(acc)).sum(-1, keepdim=True)  # [B * G, N, 1] = rowsum(P * dP)
        grad_q, grad_k, grad_v = (torch.empty_like(t) for t in (q_scaled, k, v))
        grad_bias = probs[0].new_zeros((groups, tokens, tokens)) if ctx.needs_input_grad[3] else None
        buffer = torch.empty_like(probs[0])
        for rows, p in zip(_chunks(batch, groups, tokens), probs, strict=True):
            ds = _bmm_into(grad_out[rows], v[rows].transpose(1, 2), buffer[: rows.stop - rows.start])  # dP [n, N, N]
            ds.sub_(delta[rows]).mul_(p)  # dS, the gradient of the logits
            if grad_bias is not None:
                grad_bias.add_(ds.view(-1, groups, tokens, tokens).sum(0))
            ds, p = ds.to(dtype), p.to(dtype)
            torch.bmm(ds, k[rows], out=grad_q[rows])
            torch.bmm(ds.transpose(1, 2), q_scaled[rows], out=grad_k[rows])  # the scale is in q_scaled
            torch.bmm(p.transpose(1, 2), grad_out[rows], out=grad_v[rows])
        grad_q.mul_(ctx.scale)
        grad_bias = None if grad_bias is None else grad_bias.to(ctx.bias_dtype)
        return grad_q.view(ctx.shape), grad_k.view(ctx.shape), grad_v.view(ctx.shape), grad_bias, None


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
