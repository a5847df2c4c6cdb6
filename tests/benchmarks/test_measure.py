"""FLOPs, memory and peak helpers of the benchmarks, checked against hand-computed values (never timings)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils import flop_counter

from benchmarks.measure import (
    Subject,
    batch_flops,
    flop_counter_mode,
    matmul_peak,
    persistent_bytes,
    step_flops,
    step_peak_memory,
    timed_step,
)


def linear_subject(batch: int = 4, fin: int = 8, fout: int = 16) -> tuple[Subject, torch.Tensor]:
    model = nn.Linear(fin, fout)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    subject = Subject("linear", model, lambda x: model(x).square().mean(), optimizer, image_size=(1, 1))
    return subject, torch.randn(batch, fin)


def test_linear_layer_flops_are_two_per_multiply_add_forward_and_backward():
    subject, x = linear_subject(batch=4, fin=8, fout=16)
    # forward addmm 2*B*I*O; backward grad-weight 2*O*B*I (the input needs no gradient)
    assert step_flops(subject, x, "fp32") == 4 * 4 * 8 * 16
    assert all(p.grad is None for p in subject.model.parameters())  # step_flops discards its gradients
    # with a gradient for the input too, backward also pays grad-input 2*B*O*I
    assert step_flops(subject, x.requires_grad_(), "fp32") == 6 * 4 * 8 * 16


def test_cpu_fused_attention_is_counted_with_the_cuda_formula():
    q, k, v = (torch.randn(2, 3, 10, 8, requires_grad=True) for _ in range(3))

    def attention(x: torch.Tensor) -> torch.Tensor:
        return F.scaled_dot_product_attention(q, k, v).sum() + 0 * x.sum()

    fwd = 2 * (2 * 2 * 3 * 10 * 10 * 8)  # QK^T and AV, 2 FLOPs per multiply-add
    bwd = flop_counter.sdpa_backward_flop_count((2, 3, 10, 8), (2, 3, 10, 8), (2, 3, 10, 8), (2, 3, 10, 8))
    assert batch_flops(attention, torch.zeros(1)) == fwd + bwd
    with flop_counter.FlopCounterMode(display=False) as plain:  # what torch 2.14 counts without the fix
        attention(torch.zeros(1)).backward()
    assert plain.get_total_flops() < fwd + bwd
    with flop_counter_mode() as ours:
        attention(torch.zeros(1)).backward()
    assert ours.get_total_flops() == fwd + bwd


def test_persistent_bytes_are_parameters_plus_two_adam_moments():
    subject, x = linear_subject()
    param_bytes = sum(p.numel() * 4 for p in subject.model.parameters())
    assert persistent_bytes(subject) == param_bytes  # no optimizer state before the first step
    timed_step(subject, x, "fp32")
    state = persistent_bytes(subject) - param_bytes
    assert 2 * param_bytes <= state <= 2 * param_bytes + 64  # exp_avg, exp_avg_sq (+ step counters)


def test_step_peak_memory_sees_the_activations():
    big = 256 * 1024  # floats: a 1 MiB activation kept for backward

    class Wide(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.ones(1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return (x.expand(big).clone() * self.w).exp().sum()

    model = Wide()
    subject = Subject("wide", model, model, torch.optim.SGD(model.parameters(), lr=0.1), image_size=(1, 1))
    memory = step_peak_memory(subject, torch.ones(1), "fp32")
    if memory["step"] is None:
        pytest.skip("this torch build does not expose the profiler's allocation events")
    assert memory["step"] >= 2 * big * 4  # the clone and exp's saved output live at once
    assert memory["peak"] == memory["persistent"] + memory["step"]


def test_timed_step_reports_every_phase_and_updates_the_model():
    subject, x = linear_subject()
    before = subject.model.weight.detach().clone()
    times = timed_step(subject, x, "fp32")
    assert set(times) == {"forward", "backward", "optimizer", "wall", "cpu", "faults"}
    assert all(v >= 0 for v in times.values())
    assert not torch.equal(before, subject.model.weight)


def test_timed_step_counts_the_page_faults_of_fresh_memory():
    """A step that writes a 64 MiB activation (above glibc's largest mmap threshold) touches >= 16k new pages."""
    model = nn.Linear(1024, 1024)

    def loss(x: torch.Tensor) -> torch.Tensor:
        return model(x).expand(16, -1, -1).contiguous().square().mean()  # [16, 1024, 1024] float32, 64 MiB

    subject = Subject("big", model, loss, torch.optim.SGD(model.parameters(), lr=0.1), image_size=(1, 1))
    assert timed_step(subject, torch.randn(1024, 1024), "fp32")["faults"] >= 64 * 2**20 // 4096


def test_matmul_peak_reports_a_measured_size():
    peak = matmul_peak(torch.device("cpu"), "fp32", sizes=(64, 128), reps=1)
    assert peak["size"] in (64, 128) and peak["flops_per_s"] > 0
