"""Measuring one training step: wall and CPU time per phase, FLOPs, peak memory, and the machine's matmul peak.

A *training step* is what the Runner does per iteration: forward to the loss (under autocast when asked),
backward, the optimizer step and the post-step hooks (EMA updates of momentum targets), then ``zero_grad``.

FLOPs come from ``torch.utils.flop_counter.FlopCounterMode`` over forward + backward, one multiply-add = 2 FLOPs.
It counts matmul-like ATen ops only: ``mm``/``addmm``/``bmm``/``baddbmm``, convolutions and the fused attention
kernels (the CPU flash-attention kernels are added here; torch 2.14 registers only the CUDA ones). It does NOT
count elementwise ops (GELU, residual adds, dropout), normalisation (LayerNorm), softmax outside fused attention,
reductions, gathers/indexing, the optimizer update (AdamW is ~15 FLOPs per parameter) or the EMA update. Those are
memory-bound and show up as time, not FLOPs, which is why utilisation = achieved / matmul peak stays below 1.
"""

from __future__ import annotations

import contextlib
import resource
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils import flop_counter

StepFn = Callable[[Tensor], Tensor]


@dataclass
class Subject:
    """One thing whose training step is timed: a mim_zoo algorithm (or a variant of its config) or a peer.

    Attributes:
        name: row label, e.g. ``"MAE"``, ``"MAE (mmpretrain)"``, ``"MRMAE [teacher_dtype=bfloat16]"``.
        model: the module (train mode), on the benchmark device.
        loss: ``images [B, 3, H, W] -> scalar`` total loss (the forward half of a step).
        optimizer: anything with ``step()`` and ``zero_grad()`` (an mmengine ``OptimWrapper`` or a torch optimizer).
        after_step: post-step hooks (e.g. EMA updates); a no-op by default.
        image_size: ``(H, W)`` of its input.
        group: subjects of one group are compared with each other (an algorithm and its peers).
        info: what was built and how (config, optimizer, notes), copied into the results.
        flops_of: the subject that computes the same maths, whose FLOPs this one reports (a ``torch.compile`` twin:
            FlopCounterMode does not see into compiled graphs).
    """

    name: str
    model: nn.Module
    loss: StepFn
    optimizer: Any
    image_size: tuple[int, int]
    after_step: Callable[[], None] = lambda: None
    group: str = ""
    info: dict[str, Any] = field(default_factory=dict)
    flops_of: str | None = None


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast(device: torch.device, dtype: str) -> contextlib.AbstractContextManager:
    """bf16 autocast for ``dtype == "bf16"``, a no-op context for ``"fp32"``."""
    if dtype == "fp32":
        return contextlib.nullcontext()
    if dtype != "bf16":
        raise ValueError(f"dtype must be 'fp32' or 'bf16', got {dtype!r}")
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def minor_faults() -> int:
    """Minor page faults of this process so far: first touches of freshly mapped memory, e.g. every page of a
    large tensor that the allocator got from the kernel (glibc maps allocations over its mmap threshold, at most
    32 MiB, afresh each time and returns them on free)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def timed_step(subject: Subject, images: Tensor, dtype: str) -> dict[str, float]:
    """One training step, timed per phase: ``{"forward", "backward", "optimizer", "wall", "cpu"}`` in seconds, and
    ``faults``, the minor page faults it took.

    ``cpu`` is the process CPU time of the whole step (all threads); on a quiet CPU it is ``threads * wall``.
    """
    device = images.device
    synchronize(device)
    faults0 = minor_faults()
    cpu0, t0 = time.process_time(), time.perf_counter()
    with autocast(device, dtype):
        loss = subject.loss(images)
    synchronize(device)
    t1 = time.perf_counter()
    loss.backward()
    synchronize(device)
    t2 = time.perf_counter()
    subject.optimizer.step()
    subject.optimizer.zero_grad()
    subject.after_step()
    synchronize(device)
    t3 = time.perf_counter()
    return {"forward": t1 - t0, "backward": t2 - t1, "optimizer": t3 - t2, "wall": t3 - t0,
            "cpu": time.process_time() - cpu0, "faults": minor_faults() - faults0}


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


def batch_flops(loss_fn: StepFn, images: Tensor, dtype: str = "fp32") -> int:
    """FLOPs of forward + backward of ``loss_fn`` on one batch (teachers and momentum encoders included: they run in
    forward). The gradients it leaves are the caller's to discard."""
    with flop_counter_mode() as counter:
        with autocast(images.device, dtype):
            loss = loss_fn(images)
        loss.backward()
    return int(counter.get_total_flops())


def flops_per_image(loss_fn: StepFn, images: Tensor, dtype: str = "fp32") -> float:
    return batch_flops(loss_fn, images, dtype) / len(images)


def step_flops(subject: Subject, images: Tensor, dtype: str) -> int:
    """:func:`batch_flops` of a subject's loss; its gradients are discarded (the optimizer does not step: it adds no
    matmul FLOPs)."""
    flops = batch_flops(subject.loss, images, dtype)
    subject.optimizer.zero_grad()
    return flops


# --- the machine's matmul peak -------------------------------------------------------------------------------------
def matmul_peak(device: torch.device, dtype: str, sizes: tuple[int, ...] = (1024, 2048, 4096),
                reps: int = 3) -> dict[str, float]:
    """Best FLOP/s of square ``torch.mm`` over ``sizes`` (best of ``reps`` each), in the benchmark's dtype.

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


# --- peak memory ---------------------------------------------------------------------------------------------------
def _unique_bytes(tensors: Iterator[Tensor]) -> int:
    seen, total = set(), 0
    for t in tensors:
        storage = t.untyped_storage()
        if storage.data_ptr() not in seen:
            seen.add(storage.data_ptr())
            total += storage.nbytes()
    return total


def persistent_bytes(subject: Subject) -> int:
    """Parameters, buffers and optimizer state of a subject (what stays allocated between steps)."""
    optimizer = getattr(subject.optimizer, "optimizer", subject.optimizer)
    state = (v for s in optimizer.state.values() for v in s.values() if isinstance(v, Tensor))
    return _unique_bytes(iter([*subject.model.parameters(), *subject.model.buffers(), *state]))


def _cpu_step_peak(run: Callable[[], None]) -> int | None:
    """Peak of live CPU tensor bytes above the start, from the profiler's allocation events (private API)."""
    try:
        from torch._C._profiler import _EventType
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            run()
        events: list[tuple[int, int]] = []
        stack = list(prof.profiler.kineto_results.experimental_event_tree())
        while stack:
            node = stack.pop()
            if node.tag == _EventType.Allocation:
                events.append((node.start_time_ns, node.extra_fields.alloc_size))
            stack.extend(node.children)
    except (ImportError, AttributeError, RuntimeError):
        return None
    live = peak = 0
    for _, size in sorted(events):
        live += size
        peak = max(peak, live)
    return peak


def step_peak_memory(subject: Subject, images: Tensor, dtype: str) -> dict[str, int | None]:
    """Peak memory of one training step: ``persistent`` bytes (parameters, buffers, optimizer state) plus the
    step's own high-water mark above them (activations, gradients, temporaries); ``peak = persistent + step``.

    CUDA: ``max_memory_allocated`` around the step. CPU: the profiler's allocation events (``step`` is ``None``
    if this torch build does not expose them).
    """
    device = images.device

    def run() -> None:
        timed_step(subject, images, dtype)

    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        run()
        step = torch.cuda.max_memory_allocated(device) - base
    else:
        step = _cpu_step_peak(run)
    persistent = persistent_bytes(subject)
    return {"persistent": persistent, "step": step, "peak": None if step is None else persistent + step}
