"""Counting what a training step costs: matmul FLOPs, the device's matmul peak, and the dtype it can run in.

One implementation for the throughput benchmark (``benchmarks/measure.py``), the compute-matched comparison study
(``benchmarks/compare.py --budget``) and the run records of training itself (:mod:`mim_zoo.engine.hooks.evidence`),
so "FLOPs" means the same thing wherever a number is printed.

FLOPs come from ``torch.utils.flop_counter.FlopCounterMode`` over forward + backward, one multiply-add = 2 FLOPs.
It counts matmul-like ATen ops only: ``mm``/``addmm``/``bmm``/``baddbmm``, convolutions and the fused attention
kernels (the CPU flash-attention kernels are added here; torch 2.14 registers only the CUDA ones). Teachers and
momentum encoders are counted wherever they run in the forward pass. It does NOT count elementwise ops (GELU,
residual adds, dropout), normalisation (LayerNorm), softmax outside fused attention, reductions, gathers/indexing,
the optimizer update (AdamW is ~15 FLOPs per parameter) or the EMA update: those are memory-bound and show up as
time, not FLOPs, which is why utilisation = achieved / matmul peak stays below 1.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.utils import flop_counter

LossFn = Callable[[Tensor], Tensor]


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on CPU)."""
    if device.type != "cpu":
        torch.accelerator.synchronize(device)


def bf16_supported(device: torch.device) -> bool:
    """Whether bf16 autocast runs natively: CUDA of compute capability >= 8.0, or a CPU with AVX512-BF16 or AMX-BF16
    (:func:`mim_zoo.engine.env.device_support`, which ``prepare_config`` checks runs against)."""
    from .env import device_support

    return device.type in ("cuda", "cpu") and bool(device_support(device.type).native_bf16)


def autocast(device: torch.device, dtype: str) -> contextlib.AbstractContextManager:
    """bf16 autocast for ``dtype == "bf16"``, a no-op context for ``"fp32"``."""
    if dtype == "fp32":
        return contextlib.nullcontext()
    if dtype != "bf16":
        raise ValueError(f"dtype must be 'fp32' or 'bf16', got {dtype!r}")
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


# --- FLOPs ---------------------------------------------------------------------------------------------------------
def _cpu_flash_forward(query: Any, key: Any, value: Any, *args: Any, **kwargs: Any) -> int:
    return flop_counter.sdpa_flop_count(query, key, value)


def _cpu_flash_backward(grad_out: Any, query: Any, key: Any, value: Any, *args: Any, **kwargs: Any) -> int:
    return flop_counter.sdpa_backward_flop_count(grad_out, query, key, value)


def _cpu_attention_formulas() -> dict:
    """The CPU fused-attention kernels FlopCounterMode misses in torch 2.14 (same formulas as the CUDA ones)."""
    aten = torch.ops.aten
    formulas = {}
    for name, fn in (("_scaled_dot_product_flash_attention_for_cpu", _cpu_flash_forward),
                     ("_scaled_dot_product_flash_attention_for_cpu_backward", _cpu_flash_backward)):
        op = getattr(aten, name, None)
        if op is not None and op not in flop_counter.flop_registry:
            formulas[op] = fn
    return formulas


def flop_counter_mode() -> flop_counter.FlopCounterMode:
    return flop_counter.FlopCounterMode(display=False, custom_mapping=_cpu_attention_formulas())


def batch_flops(loss_fn: LossFn, images: Tensor, dtype: str = "fp32") -> int:
    """FLOPs of forward + backward of ``loss_fn`` on one batch (teachers and momentum encoders included: they run in
    forward). The gradients it leaves are the caller's to discard."""
    with flop_counter_mode() as counter:
        with autocast(images.device, dtype):
            loss = loss_fn(images)
        loss.backward()
    return int(counter.get_total_flops())


def flops_per_image(loss_fn: LossFn, images: Tensor, dtype: str = "fp32") -> float:
    """:func:`batch_flops` divided by the batch size."""
    return batch_flops(loss_fn, images, dtype) / len(images)


# --- the machine's matmul peak -------------------------------------------------------------------------------------
def matmul_peak(device: torch.device, dtype: str, sizes: tuple[int, ...] = (1024, 2048, 4096),
                reps: int = 3) -> dict[str, float]:
    """Best FLOP/s of square ``torch.mm`` over ``sizes`` (best of ``reps`` each), in ``dtype`` (``"fp32"``,
    ``"bf16"``).

    Returns ``{"flops_per_s", "size", "cpu_flops_per_s"}``; the last divides by CPU time / threads instead of wall
    time (CPU only), which a busy machine inflates less.
    """
    torch_dtype = torch.bfloat16 if dtype == "bf16" else torch.float32
    best = {"flops_per_s": 0.0, "size": 0, "cpu_flops_per_s": 0.0}
    for n in sizes:
        a = torch.randn(n, n, device=device, dtype=torch_dtype)
        b = torch.randn(n, n, device=device, dtype=torch_dtype)
        torch.mm(a, b)  # warm up (library dispatch, caches)
        for _ in range(reps):
            synchronize(device)
            cpu0, t0 = time.process_time(), time.perf_counter()
            torch.mm(a, b)
            synchronize(device)
            wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
            flops = 2.0 * n**3
            if flops / wall > best["flops_per_s"]:
                best.update(flops_per_s=flops / wall, size=n)
            if device.type == "cpu" and cpu > 0:
                best["cpu_flops_per_s"] = max(best["cpu_flops_per_s"], flops / (cpu / torch.get_num_threads()))
    return best
