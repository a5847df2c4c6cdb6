"""mim_zoo.core.encoders.window_attention against mmpretrain's MixMIMWindowAttention / MixMIMBlock themselves.

Outputs and gradients (input, qkv/proj weights, the relative-position table), with and without the same-source
mask, float32 and bf16 autocast, several windows per image and one, odd sizes (3x3 windows, 3 heads, batch 3),
the chunked CPU kernel against a float64 reference (gradcheck) and over several chunks.
"""

from __future__ import annotations

import copy

import pytest
import torch
from mmpretrain.models.backbones.mixmim import MixMIMBlock

from mim_zoo.core.encoders import window_attention as wa
from mim_zoo.core.encoders.window_attention import (
    BiasedAttention,
    biased_attention,
    from_windows,
    mixmim_block,
    same_source_bias,
    to_windows,
    window_attention,
)

# (batch, grid, channels, heads, window): several windows (MixMIM-B stages 1-2), one window (stages 3-4), odd sizes
SHAPES = [(2, 8, 16, 2, 4), (3, 6, 24, 3, 3), (2, 7, 32, 4, 7), (1, 4, 8, 1, 2)]


def make_block(grid: int, channels: int, heads: int, window: int, seed: int = 0) -> MixMIMBlock:
    torch.manual_seed(seed)
    block = MixMIMBlock(channels, (grid, grid), heads, window_size=window)
    torch.nn.init.normal_(block.attn.relative_position_bias_table, std=0.5)  # a bias that matters
    return block


def labels_for(grid: int, seed: int = 1) -> torch.Tensor:
    """A 0/1 source label per token, ``[1, L, 1]`` float as MixMIMEncoder passes it; both labels present."""
    labels = torch.rand(grid * grid, generator=torch.Generator().manual_seed(seed)) > 0.5
    labels[:2] = torch.tensor([True, False])
    return labels.float().reshape(1, -1, 1)


def window_inputs(block: MixMIMBlock, x: torch.Tensor, labels: torch.Tensor | None):
    """mmpretrain's attention inputs ``[B * nW, N, C]`` and mask ``[B * nW, N, 1]``, and ours ``[B, nW, N, C]``
    with the stage's bias ``[nW, 1, N, N]``."""
    grid, window = tuple(block.input_resolution), block.window_size
    ours = to_windows(x, grid, window)
    theirs = ours.flatten(0, 1)
    if labels is None:
        return theirs, None, ours, None
    window_labels = to_windows(labels, grid, window)  # [1, nW, N, 1]
    mask = window_labels.expand(x.shape[0], -1, -1, -1).flatten(0, 1)  # [B * nW, N, 1]
    return theirs, mask, ours, same_source_bias(window_labels[0, ..., 0])


def grads(out: torch.Tensor, inputs: list[torch.Tensor], seed: int = 2) -> list[torch.Tensor]:
    cotangent = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed))
    return list(torch.autograd.grad(out.float(), inputs, cotangent))


# --- the attention module ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("masked", [True, False])
def test_attention_equals_mmpretrain_float32(shape, masked) -> None:
    batch, grid, channels, heads, window = shape
    block = make_block(grid, channels, heads, window)
    attn = block.attn
    x = torch.randn(batch, grid * grid, channels)
    theirs_x, mask, ours_x, bias = window_inputs(block, x, labels_for(grid) if masked else None)
    theirs_x, ours_x = theirs_x.detach().requires_grad_(), ours_x.detach().requires_grad_()
    theirs = attn(theirs_x, mask=mask)  # [B * nW, N, C]
    ours = window_attention(attn, ours_x, bias)  # [B, nW, N, C]
    # float32 rounding only: the flash kernel and the backward sum in another order (observed <= 2.4e-7 on outputs
    # of unit scale, <= 1.2e-6 * (1 + |g|) on gradients)
    torch.testing.assert_close(ours.flatten(0, 1), theirs, rtol=1e-5, atol=2e-6)
    params = [attn.qkv.weight, attn.qkv.bias, attn.proj.weight, attn.relative_position_bias_table]
    for mine, ref in zip(grads(ours.flatten(0, 1), [ours_x, *params]), grads(theirs, [theirs_x, *params]), strict=True):
        torch.testing.assert_close(mine.reshape(ref.shape), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("masked", [True, False])
def test_attention_under_bf16_autocast(masked) -> None:
    """Outputs and gradients are as close to float64 as mmpretrain's own (the kernels accumulate in float32 where
    mmpretrain rounds the logits to bf16)."""
    batch, grid, channels, heads, window = 2, 8, 32, 2, 4
    block = make_block(grid, channels, heads, window)
    attn = block.attn
    x = torch.randn(batch, grid * grid, channels)
    theirs_x, mask, ours_x, bias = window_inputs(block, x, labels_for(grid) if masked else None)
    theirs_x, ours_x = theirs_x.detach().requires_grad_(), ours_x.detach().requires_grad_()
    params = [attn.qkv.weight, attn.relative_position_bias_table]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        theirs, ours = attn(theirs_x, mask=mask), window_attention(attn, ours_x, bias)
    assert ours.dtype == theirs.dtype == torch.bfloat16
    mine, ref = grads(ours.flatten(0, 1), [ours_x, *params]), grads(theirs, [theirs_x, *params])
    attn64 = copy.deepcopy(attn).double()
    x64 = theirs_x.detach().double().requires_grad_()
    out64 = attn64(x64, mask=None if mask is None else mask.double())
    exact = grads(out64, [x64, attn64.qkv.weight, attn64.relative_position_bias_table])
    for m, r, e in zip([ours.flatten(0, 1), *mine], [theirs, *ref], [out64, *exact], strict=True):
        err_ours, err_ref = (m.reshape(e.shape).double() - e).abs().max(), (r.double() - e).abs().max()
        assert err_ours <= 1.5 * err_ref + 1e-3 * e.abs().max(), (err_ours, err_ref)


# --- the block and the windowed stage ----------------------------------------------------------------------------
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("masked", [True, False])
def test_block_equals_mixmim_block(shape, masked) -> None:
    """One block on windowed tokens == MixMIMBlock.forward on raster tokens (forward exact, gradients to rounding)."""
    batch, grid, channels, heads, window = shape
    block = make_block(grid, channels, heads, window)
    labels = labels_for(grid) if masked else None
    x = torch.randn(batch, grid * grid, channels, requires_grad=True)
    theirs = block(x, attn_mask=labels)
    _, _, ours_x, bias = window_inputs(block, x, labels)
    ours = from_windows(mixmim_block(block, ours_x, bias), (grid, grid), block.window_size)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=2e-6)  # float32 rounding of the attention kernel
    params = list(block.parameters())
    for mine, ref in zip(grads(ours, [x, *params]), grads(theirs, [x, *params]), strict=True):
        torch.testing.assert_close(mine, ref, rtol=1e-5, atol=1e-5)


def test_block_drop_path_draws_as_mmpretrain() -> None:
    """Drop path acts per image on windowed tokens too and consumes the same random numbers."""
    torch.manual_seed(0)
    block = MixMIMBlock(16, (8, 8), 2, window_size=4, drop_path_rate=0.5).train()
    x, labels = torch.randn(4, 64, 16), labels_for(8)
    torch.manual_seed(5)
    theirs = block(x, attn_mask=labels)
    _, _, ours_x, bias = window_inputs(block, x, labels)
    torch.manual_seed(5)
    ours = from_windows(mixmim_block(block, ours_x, bias), (8, 8), 4)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=2e-6)
    torch.manual_seed(6)
    assert not torch.allclose(from_windows(mixmim_block(block, ours_x, bias), (8, 8), 4), theirs, atol=1e-2)


def test_windows_round_trip_and_order() -> None:
    x = torch.arange(2 * 36 * 1.0).reshape(2, 36, 1)  # token ids on a 6x6 grid
    windows = to_windows(x, (6, 6), 3)  # [2, 4, 9, 1]
    assert windows.shape == (2, 4, 9, 1)
    assert windows[0, 1, :, 0].tolist() == [3, 4, 5, 9, 10, 11, 15, 16, 17]  # the top-right window, row-major
    assert torch.equal(from_windows(windows, (6, 6), 3), x)
    mm = MixMIMBlock.window_partition(x.view(2, 6, 6, 1), 3).view(2, 4, 9, 1)  # mmpretrain's partition
    assert torch.equal(windows, mm)


def test_same_source_bias_hand_computed() -> None:
    labels = torch.tensor([[0, 1, 1], [1, 1, 0]])
    bias = same_source_bias(labels)
    inf = float("-inf")
    assert bias.shape == (2, 1, 3, 3) and bias.dtype == torch.float32
    assert bias[0, 0].tolist() == [[0, inf, inf], [inf, 0, 0], [inf, 0, 0]]
    assert bias[1, 0].tolist() == [[0, 0, inf], [0, 0, inf], [inf, inf, 0]]


def test_other_source_keys_get_exactly_zero_weight() -> None:
    block = make_block(4, 8, 2, 4)
    labels = labels_for(4)
    x = torch.randn(2, 16, 8)
    _, _, windows, bias = window_inputs(block, x, labels)
    other = windows.clone()
    source = labels.flatten().bool()
    other[:, 0, source] = torch.randn_like(other[:, 0, source]) * 10  # change every token of label 1
    for grad in (False, True):  # the inference (flash) and the training kernel
        with torch.set_grad_enabled(grad):
            a, b = window_attention(block.attn, windows, bias), window_attention(block.attn, other, bias)
        assert torch.equal(a[:, 0, ~source], b[:, 0, ~source])


# --- the kernels ---------------------------------------------------------------------------------------------------
def test_inference_and_training_run_the_same_forward_kernel() -> None:
    """With or without grad the CPU forward is SDPA's flash kernel: identical outputs."""
    block = make_block(8, 16, 2, 4)
    _, _, windows, bias = window_inputs(block, torch.randn(2, 64, 16), labels_for(8))
    with torch.no_grad():
        inference = window_attention(block.attn, windows, bias)
    assert torch.equal(inference, window_attention(block.attn, windows, bias))


def test_biased_attention_gradcheck_float64() -> None:
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 5, 4, generator=gen, dtype=torch.float64, requires_grad=True) for _ in range(3))
    bias = torch.randn(3, 5, 5, generator=gen, dtype=torch.float64)
    bias[0, 1, 2] = bias[2, 4, 0] = float("-inf")  # masked pairs
    bias.requires_grad_()
    assert torch.autograd.gradcheck(lambda *t: BiasedAttention.apply(*t, 0.3), (q, k, v, bias))


def test_biased_attention_is_softmax_attention_over_several_chunks(monkeypatch) -> None:
    gen = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(5, 6, 7, 4, generator=gen, requires_grad=True) for _ in range(3))
    bias = torch.randn(6, 7, 7, generator=gen).requires_grad_()
    reference = torch.softmax(0.5 * q @ k.transpose(-2, -1) + bias, dim=-1) @ v
    expected = grads(reference, [q, k, v, bias])
    for budget, size in ((2 * 6 * 7 * 7 * 4, 12), (4 * 7 * 7 * 4, 3), (5 * 7 * 7 * 4, 3), (7 * 7 * 4, 1)):
        monkeypatch.setattr(wa, "_CHUNK_BYTES", budget)  # two images per chunk; half, a third, a sixth of one
        assert wa._chunk_size(6, 7) == size
        out = biased_attention(q, k, v, bias, 0.5)
        torch.testing.assert_close(out, reference)
        for mine, ref in zip(grads(out, [q, k, v, bias]), expected, strict=True):
            torch.testing.assert_close(mine, ref)


def test_attention_dropout_is_refused() -> None:
    block = MixMIMBlock(8, (4, 4), 2, window_size=4, attn_drop_rate=0.1).train()
    with pytest.raises(ValueError, match="attn_drop_rate=0"):
        window_attention(block.attn, torch.randn(1, 1, 16, 8))
