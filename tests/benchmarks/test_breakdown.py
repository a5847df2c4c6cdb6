"""benchmarks/breakdown.py: every op lands in the category its name or its enclosing scope says (never timings)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.breakdown import CATEGORIES, categorise, step_breakdown
from benchmarks.measure import Subject


@pytest.mark.parametrize(("name", "ancestors", "category"), [
    ("aten::mm", ["AddmmBackward0", "mim_zoo::backward"], "matmul"),
    ("aten::addmm", ["aten::linear", "mim_zoo::forward"], "matmul"),
    ("aten::mkldnn_convolution", ["aten::conv2d"], "matmul"),
    ("aten::bmm", ["BiasedAttention", "mim_zoo::forward"], "attention"),  # unfused attention's matmuls
    ("aten::_scaled_dot_product_flash_attention_for_cpu", ["aten::scaled_dot_product_attention"], "attention"),
    ("aten::mul_", ["autograd::engine::evaluate_function: SoftmaxBackward0"], "attention"),
    ("aten::native_layer_norm_backward", ["NativeLayerNormBackward0"], "norms"),
    ("aten::gelu_backward", ["GeluBackward0"], "elementwise"),
    ("aten::sum", ["autograd::engine::evaluate_function: AddmmBackward0"], "elementwise"),  # bias gradients
    ("aten::_index_put_impl_", ["aten::index_put_", "IndexBackward0"], "gathers/indexing"),
    ("aten::gather", ["mim_zoo::forward"], "gathers/indexing"),
    ("aten::argsort", ["mim_zoo::forward"], "gathers/indexing"),
    ("aten::copy_", ["aten::clone"], "copies/layout"),
    ("aten::cat", ["mim_zoo::forward"], "copies/layout"),
    ("aten::_fused_adamw_", ["Optimizer.step#AdamW.step", "mim_zoo::optimizer"], "optimizer"),
    ("aten::mul_", ["mim_zoo::optimizer"], "optimizer"),  # a per-tensor (non-fused) AdamW
    ("aten::lerp_", ["mim_zoo::post_step"], "EMA update"),
    ("cpp_fused_add_gelu_0", ["CompiledFunction"], "fused (compiled)"),
    ("mkldnn::_linear_pointwise", ["CompiledFunction"], "matmul"),
    ("AddmmBackward0", ["mim_zoo::backward"], "framework"),
    ("aten::some_new_op", ["mim_zoo::forward"], "other ops"),
])
def test_categorise(name, ancestors, category):
    assert categorise(name, ancestors) == category


def test_step_breakdown_of_a_tiny_model_accounts_for_the_whole_step():
    model = nn.Sequential(nn.Linear(16, 32), nn.LayerNorm(32), nn.GELU(), nn.Linear(32, 16))
    optimizer = torch.optim.AdamW(model.parameters())

    def loss(x: torch.Tensor) -> torch.Tensor:
        h = model(x)[:, None, None]  # [B, 1, 1, 16]
        return F.scaled_dot_product_attention(h, h, h).square().mean()

    subject = Subject("tiny", model, loss, optimizer, image_size=(1, 1))
    out = step_breakdown(subject, torch.randn(8, 16), "fp32")
    assert set(out["seconds"]) == set(CATEGORIES)
    for category in ("matmul", "attention", "norms", "elementwise", "optimizer"):
        assert out["seconds"][category] > 0, category
    assert sum(out["seconds"].values()) == pytest.approx(out["wall_s"])
    assert sum(out["share"].values()) == pytest.approx(1.0)
    assert any(op == "aten::native_layer_norm" for op, _ in out["top_ops"]["norms"])
