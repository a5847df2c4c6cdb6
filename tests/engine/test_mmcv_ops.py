"""mim_zoo.engine.mmcv_ops, the compiler-free ``mmcv._ext``, against compiled mmcv 2.1.0 on CPU.

The reference is compiled mmcv's ``_ext`` (the installed one when mmcv is compiled, else the wheel in
``MIM_ZOO_WHEEL_DIR``, as CI passes it), called with the same arguments: outputs and gradients must be equal on
random and edge-case inputs. Where mmcv's CPU kernels refuse an input (fp16/bf16 boxes, bf16 features) or compute it
in half precision, the provided op must equal compiled mmcv on the float32 values. The import seam itself
(``mmcv/_ext.py`` whatever imports first) is covered in ``tests/engine/test_mmcv_ext_imports.py``.
"""

from __future__ import annotations

import ast
from pathlib import Path
from types import ModuleType

import mmcv
import pytest
import torch
import torchvision

from mim_zoo.engine import mmcv_ops as ops
from mim_zoo.engine.mmcv_ops import MissingMMCVOpError
from tests.helpers.mmcv_backend import load_compiled_reference

LOW_PRECISION = (torch.float16, torch.bfloat16)


@pytest.fixture(scope="module")
def ref() -> ModuleType:
    module = load_compiled_reference()
    if module is None:
        pytest.skip("no compiled mmcv 2.1.0 extension to compare with: point MIM_ZOO_WHEEL_DIR at its wheel (CI does)")
    return module


def asserted_names() -> set[str]:
    """Every name that an ``ext_loader.load_ext('_ext', [...])`` in the installed mmcv asserts."""
    names: set[str] = set()
    for path in Path(mmcv.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "load_ext"
                    and isinstance(node.args[0], ast.Constant) and node.args[0].value == "_ext"):
                names |= {element.value for element in node.args[1].elts}
    return names


def test_every_name_mmcv_asserts_exists_and_nothing_else():
    names = asserted_names()
    assert len(names) > 100  # the scan found mmcv 2.1.0's ops
    assert set(ops.PROVIDED) | set(ops.WITHOUT_KERNEL) == names
    assert all(callable(getattr(ops, name)) for name in names) and set(ops.__all__) >= names


@pytest.mark.parametrize("name", ops.WITHOUT_KERNEL)
def test_ops_without_a_kernel_name_the_op_and_the_way_to_compiled_ops(name):
    with pytest.raises(MissingMMCVOpError, match=rf"'{name}'.*MIM_ZOO_MMCV_OPS=compiled bash tools/install.sh"):
        getattr(ops, name)(torch.zeros(1), iou_threshold=0.5)


def test_version_reports_say_where_the_kernels_come_from():
    assert ops.get_compiler_version().startswith("none (mim_zoo.engine.mmcv_ops: torchvision")
    cuda = int(torch.ops.torchvision._cuda_version())
    assert ops.get_compiling_cuda_version() == (f"{cuda // 1000}.{cuda % 1000 // 10}" if cuda > 0 else "not available")


# --- nms ------------------------------------------------------------------------------------------------------------
def random_boxes(n: int, seed: int, size: float = 100.0) -> tuple[torch.Tensor, torch.Tensor]:
    """[n, 4] boxes clustered so that many overlap (and a few degenerate ones), [n] scores."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(max(n // 8, 1), 2, generator=g) * size
    xy = centres[torch.randint(len(centres), (n,), generator=g)] + torch.randn(n, 2, generator=g) * 4
    wh = torch.rand(n, 2, generator=g) * 30
    wh[: n // 20] = 0  # zero-area boxes
    return torch.cat([xy - wh / 2, xy + wh / 2], 1), torch.rand(n, generator=g)


@pytest.mark.parametrize("iou_threshold", [0.3, 0.5, 0.7])
@pytest.mark.parametrize("seed", [0, 1])
def test_nms_equals_compiled_mmcv(ref, iou_threshold, seed):
    boxes, scores = random_boxes(300, seed)
    for s in (scores, (scores * 10).round() / 10):  # distinct scores, then many ties
        kept = ops.nms(boxes, s, iou_threshold=iou_threshold, offset=0)
        assert kept.dtype == torch.int64 and 0 < len(kept) < len(boxes)
        assert torch.equal(kept, ref.nms(boxes, s, iou_threshold=iou_threshold, offset=0))


def test_nms_rounds_the_threshold_to_float32_as_mmcv_does(ref):
    # IoU([0,0,10,10], [0,0,10,3]) evaluates to float32(0.3) exactly: mmcv compares it with float32(0.3) and keeps
    # both boxes; torchvision with the double 0.3 would suppress the second
    boxes, scores = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 3.0]]), torch.tensor([0.9, 0.8])
    expected = ref.nms(boxes, scores, iou_threshold=0.3, offset=0)
    assert expected.tolist() == [0, 1] and torchvision.ops.nms(boxes, scores, 0.3).tolist() == [0]
    assert torch.equal(ops.nms(boxes, scores, iou_threshold=0.3, offset=0), expected)


def test_nms_of_no_boxes(ref):
    kept = ops.nms(torch.zeros(0, 4), torch.zeros(0), iou_threshold=0.5, offset=0)
    assert kept.shape == (0,) and kept.dtype == torch.int64
    assert torch.equal(kept, ref.nms(torch.zeros(0, 4), torch.zeros(0), iou_threshold=0.5, offset=0))


@pytest.mark.parametrize("dtype", LOW_PRECISION)
def test_nms_of_low_precision_boxes_is_mmcvs_on_their_float32_values(ref, dtype):
    boxes, scores = random_boxes(200, 2)
    boxes, scores = boxes.to(dtype), scores.to(dtype)  # mmcv's CPU kernel takes float32 boxes only
    expected = ref.nms(boxes.float(), scores.float(), iou_threshold=0.5, offset=0)
    assert torch.equal(ops.nms(boxes, scores, iou_threshold=0.5, offset=0), expected)


def test_nms_keeps_the_order_of_wider_scores(ref):
    # float64 scores that float32 cannot tell apart: mmcv sorts them as given; a float32 cast would tie them
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 9.0], [1.0, 1.0, 10.0, 10.0]])
    scores = torch.tensor([0.5, 0.5 + 1e-12, 0.5 + 2e-12], dtype=torch.float64)
    assert len(set(scores.float().tolist())) == 1
    expected = ref.nms(boxes, scores, iou_threshold=0.5, offset=0)
    assert expected.tolist() == [2] and torch.equal(ops.nms(boxes, scores, iou_threshold=0.5, offset=0), expected)


def test_nms_refuses_offset_1_rather_than_approximating_it():
    boxes, scores = random_boxes(20, 3)
    with pytest.raises(MissingMMCVOpError, match="offset=1 .*MIM_ZOO_MMCV_OPS=compiled"):
        ops.nms(boxes, scores, iou_threshold=0.5, offset=1)


# --- roi_align ------------------------------------------------------------------------------------------------------
def random_rois(k: int, batch: int, height: int, width: int, scale: float, seed: int) -> torch.Tensor:
    """[k, 5] RoIs in input pixels: inside the image, partly or wholly outside it, and of zero width or height."""
    g = torch.Generator().manual_seed(seed)
    size = torch.tensor([width, height]) / scale
    start = (torch.rand(k, 2, generator=g) * 1.6 - 0.3) * size  # from 30% before to 30% beyond the image
    extent = torch.rand(k, 2, generator=g) * size * 0.7
    extent[: k // 10, 0] = 0  # zero width
    extent[k // 10: k // 5, 1] = 0  # zero height
    index = torch.randint(batch, (k, 1), generator=g).float()
    return torch.cat([index, start, start + extent], 1)


def roi_align_with(ext: ModuleType, features: torch.Tensor, rois: torch.Tensor, grad: torch.Tensor, out_hw: tuple,
                   scale: float, sampling: int, aligned: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``(output, grad_input)`` of ``ext``'s kernels, called as mmcv's RoIAlignFunction calls them."""
    output, empty = features.new_zeros(len(rois), features.shape[1], *out_hw), features.new_zeros(0)
    ext.roi_align_forward(features, rois, output, empty, empty, aligned_height=out_hw[0], aligned_width=out_hw[1],
                          spatial_scale=scale, sampling_ratio=sampling, pool_mode=1, aligned=aligned)
    grad_input = features.new_zeros(features.shape)
    ext.roi_align_backward(grad, rois, empty, empty, grad_input, aligned_height=out_hw[0], aligned_width=out_hw[1],
                           spatial_scale=scale, sampling_ratio=sampling, pool_mode=1, aligned=aligned)
    return output, grad_input


def roi_align_both(ref: ModuleType, features: torch.Tensor, rois: torch.Tensor, grad: torch.Tensor, out_hw: tuple,
                   scale: float, sampling: int, aligned: bool, ref_dtype: torch.dtype | None = None):
    """(ours, compiled mmcv's) ``(output, grad_input)``; the reference on ``ref_dtype`` copies when given (rois in
    the features' dtype, as mmdet's RoI extractors pass them)."""
    rois = rois.to(features.dtype)
    ours = roi_align_with(ops, features, rois, grad, out_hw, scale, sampling, aligned)
    dtype = ref_dtype or features.dtype
    theirs = roi_align_with(ref, features.to(dtype), rois.to(dtype), grad.to(dtype), out_hw, scale, sampling, aligned)
    return ours, theirs


def inputs(k: int = 64, batch: int = 2, channels: int = 3, height: int = 13, width: int = 17, scale: float = 0.25,
           out_hw: tuple = (7, 7), seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(batch, channels, height, width, generator=g)
    grad = torch.randn(k, channels, *out_hw, generator=g)
    return features, random_rois(k, batch, height, width, scale, seed), grad


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("sampling", [0, 2])
@pytest.mark.parametrize("scale,out_hw", [(0.25, (7, 7)), (1.0, (3, 5)), (0.3, (14, 14))])
def test_roi_align_output_and_gradient_equal_compiled_mmcv(ref, aligned, sampling, scale, out_hw):
    features, rois, grad = inputs(scale=scale, out_hw=out_hw)
    (out, grad_in), (ref_out, ref_grad_in) = roi_align_both(ref, features, rois, grad, out_hw, scale, sampling,
                                                            aligned)
    assert out.abs().sum() > 0 and grad_in.abs().sum() > 0
    assert torch.equal(out, ref_out) and torch.equal(grad_in, ref_grad_in)


def test_roi_align_of_a_channels_last_view_is_that_of_its_values(ref):
    features, rois, grad = inputs()
    view = features.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)  # the same values, channels-last strides
    assert not view.is_contiguous() and torch.equal(view, features)
    (out, grad_in), (ref_out, ref_grad_in) = roi_align_both(ref, view, rois, grad, (7, 7), 0.25, 0, True)
    (contiguous_out, _), _ = roi_align_both(ref, features, rois, grad, (7, 7), 0.25, 0, True)
    assert torch.equal(out, contiguous_out)
    assert not torch.equal(ref_out, contiguous_out)  # compiled mmcv reads the strided memory as [B, C, H, W]


def test_roi_align_of_no_rois(ref):
    features, rois, grad = inputs(k=0)
    (out, grad_in), (ref_out, ref_grad_in) = roi_align_both(ref, features, rois, grad, (7, 7), 0.25, 0, True)
    assert out.shape == (0, 3, 7, 7) and torch.equal(out, ref_out)
    assert torch.equal(grad_in, torch.zeros_like(features)) and torch.equal(grad_in, ref_grad_in)


def test_roi_align_of_rois_wholly_outside_the_image_is_zero(ref):
    features, _, grad = inputs(k=2)
    rois = torch.tensor([[0, -80.0, -80.0, -20.0, -30.0], [1, 200.0, 10.0, 260.0, 40.0]])  # 13 x 17 px at 1/4
    (out, grad_in), (ref_out, ref_grad_in) = roi_align_both(ref, features, rois, grad, (7, 7), 0.25, 0, True)
    assert torch.equal(out, torch.zeros_like(out)) and torch.equal(out, ref_out)
    assert torch.equal(grad_in, torch.zeros_like(grad_in)) and torch.equal(grad_in, ref_grad_in)


@pytest.mark.parametrize("dtype", LOW_PRECISION)
@pytest.mark.parametrize("sampling", [0, 2])
def test_roi_align_of_low_precision_inputs_is_mmcvs_on_their_float32_values(ref, dtype, sampling):
    features, rois, grad = inputs()
    features, grad = features.to(dtype), grad.to(dtype)  # the values a low-precision run feeds in
    (out, grad_in), (ref_out, ref_grad_in) = roi_align_both(ref, features, rois, grad, (7, 7), 0.25, sampling, True,
                                                            ref_dtype=torch.float32)
    assert out.dtype == grad_in.dtype == dtype
    # (compiled mmcv's own fp16 CPU kernel computes every coordinate in half precision, here up to 1.0 off near the
    # image border; torchvision's autocast kernels compute in float32, as these ops do)
    assert torch.equal(out, ref_out.to(dtype)) and torch.equal(grad_in, ref_grad_in.to(dtype))


def test_roi_align_in_float64_equals_compiled_mmcv(ref):
    features, rois, grad = inputs(seed=1)
    features, rois, grad = features.double(), rois.double(), grad.double()
    for sampling in (0, 2):
        (out, grad_in), (ref_out, ref_grad_in) = roi_align_both(ref, features, rois, grad, (7, 7), 0.25, sampling,
                                                                True)
        assert torch.equal(out, ref_out) and torch.equal(grad_in, ref_grad_in)


class _RoIAlign(torch.autograd.Function):
    """mmcv's RoIAlignFunction on the provided ops (average pooling), for gradcheck."""

    @staticmethod
    def forward(ctx, features, rois, out_hw, scale, sampling, aligned):
        ctx.save_for_backward(rois)
        ctx.args, ctx.shape = (out_hw, scale, sampling, aligned), features.shape
        output, empty = features.new_zeros(len(rois), features.shape[1], *out_hw), features.new_zeros(0)
        ops.roi_align_forward(features, rois, output, empty, empty, *out_hw, scale, sampling, 1, aligned)
        return output

    @staticmethod
    def backward(ctx, grad_output):
        (rois,), (out_hw, scale, sampling, aligned) = ctx.saved_tensors, ctx.args
        grad_input, empty = grad_output.new_zeros(ctx.shape), grad_output.new_zeros(0)
        ops.roi_align_backward(grad_output.contiguous(), rois, empty, empty, grad_input, *out_hw, scale, sampling, 1,
                               aligned)
        return grad_input, None, None, None, None, None


@pytest.mark.parametrize("aligned", [True, False])
def test_roi_align_backward_is_the_gradient_of_forward(aligned):
    features, rois, _ = inputs(k=6, channels=2, height=6, width=7, scale=0.5, out_hw=(2, 3))
    features = features.double().requires_grad_()
    assert torch.autograd.gradcheck(_RoIAlign.apply, (features, rois.double(), (2, 3), 0.5, 0, aligned))


def test_roi_align_refuses_negative_rois_on_cpu_as_mmcv_does(ref):
    features, _, grad = inputs(k=1)
    rois = torch.tensor([[0, 10.0, 10.0, 4.0, 20.0]])  # x2 < x1
    with pytest.raises(ValueError, match=r"x2 >= x1 and y2 >= y1.*RoI 0"):
        roi_align_with(ops, features, rois, grad, (7, 7), 0.25, 0, True)
    with pytest.raises(RuntimeError, match="non-negative size"):  # compiled mmcv
        roi_align_with(ref, features, rois, grad, (7, 7), 0.25, 0, True)
    (out, _), (ref_out, _) = roi_align_both(ref, features, rois, grad, (7, 7), 0.25, 0, False)  # legacy: clamped
    assert torch.equal(out, ref_out)


def test_roi_align_refuses_max_pooling_and_wrong_output_shapes():
    features, rois, _ = inputs(k=4)
    empty = features.new_zeros(0)
    with pytest.raises(MissingMMCVOpError, match="pool_mode=0 .*'max'.*MIM_ZOO_MMCV_OPS=compiled"):
        ops.roi_align_forward(features, rois, features.new_zeros(4, 3, 7, 7), empty, empty, 7, 7, 0.25, 0, 0, True)
    with pytest.raises(ValueError, match=r"output has shape \(4, 3, 5, 5\), RoIAlign gives \(4, 3, 7, 7\)"):
        ops.roi_align_forward(features, rois, features.new_zeros(4, 3, 5, 5), empty, empty, 7, 7, 0.25, 0, 1, True)
