"""Measuring one training step: wall and CPU time per phase, FLOPs, peak memory, and the machine's matmul peak.

A *training step* is what the Runner does per iteration: forward to the loss (under autocast when asked),
backward, the optimizer step and the post-step hooks (EMA updates of momentum targets), then ``zero_grad``.

FLOPs and the matmul peak are the package's (:mod:`mim_zoo.engine.flops`: what the counter counts and what it
leaves out), so the throughput table, the compute-matched study and the run records of training count alike.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

# re-exported: the benchmarks' names for the package's counter (mim_zoo.engine.flops)
from mim_zoo.engine.flops import (  # noqa: F401  # noqa: F401
    autocast,
    batch_flops,
    bf16_supported,
    flop_counter_mode,
    flops_per_image,
    matmul_peak,
    synchronize,
)

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
def step_flops(subject: Subject, images: Tensor, dtype: str) -> int:
    """:func:`batch_flops` of a subject's loss; its gradients are discarded (the optimizer does not step: it adds no
    matmul FLOPs)."""
    flops = batch_flops(subject.loss, images, dtype)
    subject.optimizer.zero_grad()
    return flops


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
