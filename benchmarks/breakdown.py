"""Where a training step's time goes: torch.profiler over one step, every op's self time put in one category.

Categories (first rule that applies):

* ``optimizer``: everything inside the optimizer's ``step`` and ``zero_grad``; ``EMA update``: the post-step hooks
  (momentum-encoder updates);
* ``attention``: everything inside a fused attention kernel or an op or autograd node whose name says attention or
  softmax (``aten::scaled_dot_product_attention`` and its backward, mim_zoo's ``BiasedAttention``, softmax), the
  matmuls of unfused attention included;
* by the op's own name: ``matmul`` (mm/addmm/bmm/baddbmm, convolutions), ``norms`` (layer/batch/group/RMS norm and
  their backward), ``gathers/indexing`` (index, index_put, gather, scatter, index_select, sorts and random
  permutations of masking), ``copies/layout`` (copy_, clone, cat, stack, flip, im2col/col2im, dtype conversions),
  ``elementwise`` (pointwise ops and reductions: residual adds, GELU, scaling, sums of bias gradients, fills);
* ``fused (compiled)``: the kernels ``torch.compile`` generates (``cpp_fused_*`` on CPU, named when
  ``torch._inductor.config.cpp.enable_kernel_profile`` is on, as ``throughput.py --compile`` sets it; its oneDNN
  GEMMs count as ``matmul``);
* ``other ops``: any other ATen op (listed by name in the JSON); ``framework``: autograd-engine nodes, the Python
  between ops and everything the profiler does not see (the step's wall time minus the ops' self time).

Self time is wall time on the calling thread (CPU) or the op's kernels' device time (CUDA), so on a busy CPU every
category is inflated alike and the shares stay comparable; the profiler's own overhead lands in ``framework``.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile, record_function

from .measure import Subject, autocast, synchronize

CATEGORIES = ("matmul", "attention", "norms", "elementwise", "gathers/indexing", "copies/layout", "fused (compiled)",
              "optimizer", "EMA update", "other ops", "framework")
PHASES = {"forward": "mim_zoo::forward", "backward": "mim_zoo::backward", "optimizer": "mim_zoo::optimizer",
          "post_step": "mim_zoo::post_step"}
_ATTENTION = re.compile(r"(?i)attention|softmax")
_BY_NAME = {
    "matmul": r"mm|addmm|bmm|baddbmm|addbmm|addmv|mv|dot|matmul|linear|_addmm_activation|einsum"
              r"|.*convolution.*|conv\dd|conv_.*|cudnn_.*",
    "norms": r".*(layer|batch|group|rms)_norm.*",
    "gathers/indexing": r"index|index_put_?|_index_put_impl_|_unsafe_index(_put)?|gather|scatter_?|scatter_add_?"
                        r"|index_select|index_add_?|index_fill_?|take_along_dim|masked_select|masked_scatter_?"
                        r"|embedding.*|nonzero|sort|argsort|topk|randperm|.*_backward_index.*",
    "copies/layout": r"copy_|clone|contiguous|cat|stack|flip|roll|_to_copy|to|repeat|repeat_interleave|im2col"
                     r"|col2im|constant_pad_nd|_reshape_copy|select_backward|slice_backward|unbind_backward",
    "elementwise": r"add_?|sub_?|rsub|mul_?|div_?|neg_?|pow_?|sqrt_?|rsqrt_?|exp_?|log_?|abs_?|clamp_?|where"
                   r"|fill_|zero_|zeros|zeros_like|ones|ones_like|full|full_like|.*gelu.*|silu.*|relu.*"
                   r"|threshold_backward|sigmoid.*|tanh.*|erf.*|addcmul_?|addcdiv_?|lerp_?|masked_fill_?"
                   r"|native_dropout.*|dropout|bernoulli_?|floor_?|ceil_?|round_?|sum|mean|var|std|var_mean"
                   r"|amax|amin|max|min|norm|linalg_vector_norm|mse_loss.*|l1_loss.*|smooth_l1_loss.*"
                   r"|rand|rand_like|randn|randn_like|uniform_|normal_|sign|reciprocal_?|square|maximum|minimum"
                   r"|eq|ne|lt|le|gt|ge|logical_.*|bitwise_.*|isnan|isinf|isneginf|isfinite|any|all|cumsum",
}
_FUSED = re.compile(r"cpp_fused_|triton_|kernel_cpp_")  # inductor's generated kernels (named with kernel profiling)
_MKLDNN_MATMUL = re.compile(r"(mkldnn|onednn|mkl)::.*(linear|conv|mm|matmul)")  # inductor's extern GEMMs on CPU
_NAME_RULES = [(category, re.compile(rf"aten::({pattern})")) for category, pattern in _BY_NAME.items()]


def categorise(name: str, ancestors: list[str]) -> str:
    """The category of an event called ``name`` whose enclosing events are ``ancestors`` (innermost first)."""
    scopes = [name, *ancestors]
    if any(s == PHASES["optimizer"] or s.startswith("Optimizer.") for s in scopes):
        return "optimizer"
    if PHASES["post_step"] in scopes:
        return "EMA update"
    if any(_ATTENTION.search(s) for s in scopes):
        return "attention"
    if _FUSED.match(name):
        return "fused (compiled)"
    if _MKLDNN_MATMUL.match(name):
        return "matmul"
    if not name.startswith("aten::"):
        return "framework"  # autograd nodes, record_function scopes, Python-level ranges
    for category, rule in _NAME_RULES:
        if rule.fullmatch(name):
            return category
    return "other ops"


def _ancestors(event: Any) -> list[str]:
    names, parent = [], event.cpu_parent
    while parent is not None:
        names.append(parent.name)
        parent = parent.cpu_parent
    return names


def profiled_step(subject: Subject, images: torch.Tensor, dtype: str) -> tuple[Any, float]:
    """One training step under torch.profiler, each phase in a ``mim_zoo::<phase>`` range: (events, wall s)."""
    device = images.device
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    synchronize(device)
    with profile(activities=activities) as prof:
        start = time.perf_counter()
        with record_function(PHASES["forward"]), autocast(device, dtype):
            loss = subject.loss(images)
        with record_function(PHASES["backward"]):
            loss.backward()
        with record_function(PHASES["optimizer"]):
            subject.optimizer.step()
            subject.optimizer.zero_grad()
        with record_function(PHASES["post_step"]):
            subject.after_step()
        synchronize(device)
        wall = time.perf_counter() - start
    return prof.events(), wall


def step_breakdown(subject: Subject, images: torch.Tensor, dtype: str, top: int = 5) -> dict[str, Any]:
    """Seconds per category of one profiled training step, their shares of its wall time and the top ops of each.

    Returns ``{"wall_s", "seconds": {category: s}, "share": {category: fraction of wall}, "top_ops": {category:
    [[op, s], ...]}, "device_time": bool}``; ``framework`` takes the wall time no op accounts for (CPU). On CUDA the
    categories hold the ops' device time and ``framework`` is not computed (host and device overlap).
    """
    events, wall = profiled_step(subject, images, dtype)
    on_device = images.device.type == "cuda"
    seconds: Counter = Counter({c: 0.0 for c in CATEGORIES})
    by_op: dict[str, Counter] = {c: Counter() for c in CATEGORIES}
    for event in events:
        if event.device_type != torch.autograd.DeviceType.CPU:
            continue  # kernels are counted through the op that launched them
        self_us = event.self_device_time_total if on_device else event.self_cpu_time_total
        if self_us <= 0 or event.name in PHASES.values():
            continue
        category = categorise(event.name, _ancestors(event))
        seconds[category] += self_us / 1e6
        by_op[category][event.name] += self_us / 1e6
    if not on_device:
        seconds["framework"] += max(0.0, wall - sum(seconds.values()))
    return {"wall_s": wall, "seconds": dict(seconds), "share": {c: s / wall for c, s in seconds.items()},
            "top_ops": {c: [[n, s] for n, s in ops.most_common(top)] for c, ops in by_op.items() if ops},
            "device_time": on_device}
