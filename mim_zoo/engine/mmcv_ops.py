"""mmcv 2.1.0's compiled operators without a compiler: the functions of ``mmcv._ext``, on torchvision's kernels.

mmcv's Python ops (``mmcv/ops/*.py``) reach their kernels only through
``mmcv.utils.ext_loader.load_ext('_ext', names)``, which imports ``mmcv._ext`` and asserts that each name exists.
The mmcv that ``tools/install.sh`` builds by default (the PyPI sdist with ``MMCV_WITH_OPS=0``, no compiler) carries
an ``mmcv/_ext.py`` that re-exports this module (``tools/mmcv_ext.py``), so the ops are in place whatever imports
first: ``import mmdet``, mmdet's or mmseg's own ``tools/train.py``, or mim_zoo. A compiled mmcv replaces that file.

Provided, on CPU and CUDA (what mmdet's Mask R-CNN calls on ``configs/benchmarks/coco``; mmseg's UperNet and
mmpretrain's models call no compiled op: every call of the tiny ADE20K, COCO, linear and fine-tune runs was
recorded):

* ``nms``: ``torchvision::nms``;
* ``roi_align_forward`` / ``roi_align_backward``: ``torchvision::roi_align`` / ``torchvision::_roi_align_backward``
  (average pooling, ``aligned`` both ways, any ``sampling_ratio``), in mmcv's in-place signatures;
* ``get_compiler_version`` / ``get_compiling_cuda_version`` (what ``mmcv.utils.collect_env`` reports).

Every other name that mmcv 2.1.0 asserts (:data:`WITHOUT_KERNEL`) exists and raises :class:`MissingMMCVOpError`,
naming the op and the way to compiled ops; none returns a made-up value.

Exactness (checked against compiled mmcv in ``tests/engine/test_mmcv_ops.py``): mmcv's CPU kernels
(mmcv 2.1.0 sdist, ``mmcv/ops/csrc/pytorch/cpu/{nms,roi_align}.cpp``) and torchvision's
(pytorch/vision@0b23e88, ``torchvision/csrc/ops/cpu/{nms,roi_align}_kernel.cpp``) both descend from Caffe2's and
Detectron2's and evaluate the same float expressions in the same order. Three details of mmcv's are reproduced here:
its pybind signatures take ``iou_threshold`` and ``spatial_scale`` as C ``float`` (rounded to float32 below), its
NMS visits tied scores in the order its own sort call gives (torchvision's kernel is handed the ranks of that order),
and its CPU RoIAlign refuses RoIs of negative size when ``aligned`` (so does this module on CPU; on CUDA neither
checks). fp16/bf16 inputs are computed in float32 and cast back, as torchvision's autocast kernels do (mmcv's CPU
kernels would compute in half precision, or refuse bf16). Two differences remain, both on purpose: torchvision's
RoIAlign makes a strided (e.g. channels-last) input contiguous, where mmcv's kernels read ``data_ptr`` as
``[B, C, H, W]`` and pool wrong values; and on CUDA mmcv's NMS compares ``inter > threshold * union``
(``common/cuda/nms_cuda_kernel.cuh``) where torchvision, like both CPU kernels, compares ``inter / union >
threshold``: they can differ only for an IoU within float rounding of the threshold.

This module imports nothing from mmcv, mmdet, mmseg, mmpretrain or mim_zoo's plugins: it is imported while
``mmcv.ops`` is being imported (``import mmpretrain.models`` -> ``mmdet.models`` -> ``mmcv.ops`` -> here).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import NoReturn

import torch
import torchvision
from torch import Tensor

COMPILED_OPS_HINT = ("install mmcv with compiled ops instead: `MIM_ZOO_MMCV_OPS=compiled bash tools/install.sh` "
                     "(see DEVELOPERS.md)")
PROVIDED = ("nms", "roi_align_forward", "roi_align_backward", "get_compiler_version", "get_compiling_cuda_version")
_AVG_POOL = 1  # mmcv's RoIAlign passes pool_mode 0 for 'max', 1 for 'avg'


class MissingMMCVOpError(RuntimeError):
    """An mmcv op was called that the compiler-free ops do not provide."""


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """fp16/bf16 are computed in float32; float32/float64 in themselves."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _as_c_float(value: float) -> float:
    """``value`` rounded to float32, as mmcv's pybind signatures (C ``float``) receive it."""
    return struct.unpack("f", struct.pack("f", value))[0]


def _sort_keys(scores: Tensor, dtype: torch.dtype) -> Tensor:
    """[N] keys in ``dtype``, strictly decreasing along mmcv's order of ``scores``.

    mmcv visits the boxes in the order of ``scores.sort(0, descending=True)``, which breaks ties its own way and
    sorts in the scores' own dtype. torchvision's kernel sorts what it is given in another way, so it is given
    distinct ranks of mmcv's order: it then visits the boxes exactly as mmcv does.
    """
    order = scores.sort(0, descending=True)[1]  # the call mmcv's kernels make
    if len(order) > 2 / torch.finfo(dtype).eps:  # 2**24 for float32: beyond it, integers collide
        raise ValueError(f"nms of {len(order)} boxes: more than {dtype} ranks can tell apart")
    keys = torch.empty(len(order), dtype=dtype, device=scores.device)
    keys[order] = torch.arange(len(order), 0, -1, dtype=dtype, device=scores.device)
    return keys


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float, offset: int) -> Tensor:
    """mmcv's ``nms``: indices of the boxes kept, highest score first.

    Args:
        boxes: [N, 4] as (x1, y1, x2, y2).
        scores: [N].
        iou_threshold: a box is dropped when its IoU with a kept, higher-scoring box exceeds this.
        offset: 0 (widths ``x2 - x1``). mmcv's ``offset=1`` (``x2 - x1 + 1``, the mmdet 1.x convention) has no
            torchvision kernel and is refused rather than approximated.

    Returns:
        [K] int64 indices into ``boxes``.
    """
    if offset != 0:
        raise MissingMMCVOpError(
            f"mmcv nms with offset={offset} (box widths x2 - x1 + {offset}) has no compiler-free kernel; mim_zoo's "
            f"torchvision-backed nms supports offset=0 (mmdet 3.x's default). Use offset=0, or {COMPILED_OPS_HINT}")
    dtype = _compute_dtype(boxes.dtype)
    return torch.ops.torchvision.nms(boxes.to(dtype), _sort_keys(scores, dtype), _as_c_float(iou_threshold))


def _require_avg_pool(pool_mode: int) -> None:
    if pool_mode != _AVG_POOL:
        raise MissingMMCVOpError(
            f"mmcv RoIAlign with pool_mode={pool_mode} ('max') has no compiler-free kernel; mim_zoo's torchvision-"
            f"backed RoIAlign averages (pool_mode='avg', what mmdet's RoI extractors use). {COMPILED_OPS_HINT}")


def _check_roi_sizes(rois: Tensor, spatial_scale: float) -> None:
    """mmcv's CPU RoIAlign with ``aligned=True`` refuses RoIs of negative (or NaN) width or height."""
    start, end = rois[:, 1:3] * spatial_scale - 0.5, rois[:, 3:5] * spatial_scale - 0.5  # [K, 2] (x, y)
    bad = ~(end - start >= 0).all(dim=1)  # [K]
    if bool(bad.any()):
        k = int(bad.nonzero()[0])
        raise ValueError(f"RoIAlign(aligned=True) needs RoIs (batch, x1, y1, x2, y2) with x2 >= x1 and y2 >= y1, as "
                         f"mmcv's CPU kernel does; RoI {k} is {rois[k].tolist()}")


def roi_align_forward(input: Tensor, rois: Tensor, output: Tensor, argmax_y: Tensor, argmax_x: Tensor,
                      aligned_height: int, aligned_width: int, spatial_scale: float, sampling_ratio: int,
                      pool_mode: int, aligned: bool) -> None:
    """mmcv's ``roi_align_forward``: writes the RoIAlign of ``input`` into ``output`` in place.

    Args:
        input: [B, C, H, W] features.
        rois: [K, 5] as (batch index, x1, y1, x2, y2) in input pixels / ``spatial_scale``.
        output: [K, C, aligned_height, aligned_width], overwritten.
        argmax_y, argmax_x: max pooling's outputs in mmcv; unused by average pooling (mmcv passes empty tensors).
        sampling_ratio: samples per bin side; ``<= 0`` adapts it to the RoI (``ceil(roi_size / aligned_size)``).
        pool_mode: 1 (average); 0 (max) is refused.
        aligned: shift the RoI by half a pixel (Detectron2's ``aligned=True``); ``False`` is the legacy variant that
            also clamps RoIs to at least 1 x 1.
    """
    _require_avg_pool(pool_mode)
    dtype = _compute_dtype(input.dtype)
    scale, rois = _as_c_float(spatial_scale), rois.to(dtype)
    if aligned and rois.device.type == "cpu":
        _check_roi_sizes(rois, scale)
    pooled = torch.ops.torchvision.roi_align(input.to(dtype), rois, scale, aligned_height, aligned_width,
                                             sampling_ratio, aligned)  # [K, C, aligned_height, aligned_width]
    if pooled.shape != output.shape:
        raise ValueError(f"roi_align_forward: output has shape {tuple(output.shape)}, RoIAlign gives "
                         f"{tuple(pooled.shape)}")
    output.copy_(pooled)


def roi_align_backward(grad_output: Tensor, rois: Tensor, argmax_y: Tensor, argmax_x: Tensor, grad_input: Tensor,
                       aligned_height: int, aligned_width: int, spatial_scale: float, sampling_ratio: int,
                       pool_mode: int, aligned: bool) -> None:
    """mmcv's ``roi_align_backward``: adds the gradient of :func:`roi_align_forward` into ``grad_input`` in place.

    Args:
        grad_output: [K, C, aligned_height, aligned_width].
        grad_input: [B, C, H, W], accumulated into as mmcv's kernels do (mmcv passes zeros).
        The other arguments are those of :func:`roi_align_forward`.
    """
    _require_avg_pool(pool_mode)
    dtype = _compute_dtype(grad_input.dtype)
    scale, rois = _as_c_float(spatial_scale), rois.to(dtype)
    if aligned and rois.device.type == "cpu":
        _check_roi_sizes(rois, scale)
    batch, channels, height, width = grad_input.shape
    grad = torch.ops.torchvision._roi_align_backward(grad_output.to(dtype), rois, scale, aligned_height,
                                                     aligned_width, batch, channels, height, width, sampling_ratio,
                                                     aligned)  # [B, C, H, W]
    grad_input.add_(grad)


def get_compiler_version() -> str:
    """What mmcv reports as the compiler of its ops: none; the kernels are torchvision's."""
    return f"none (mim_zoo.engine.mmcv_ops: torchvision {torchvision.__version__} kernels)"


def get_compiling_cuda_version() -> str:
    """The CUDA version torchvision's kernels were built with (mmcv's "not available" when built without CUDA)."""
    version = int(torch.ops.torchvision._cuda_version())
    return f"{version // 1000}.{version % 1000 // 10}" if version > 0 else "not available"


# Every other name that mmcv 2.1.0's ops assert in load_ext('_ext', [...]) (tests/engine/test_mmcv_ops.py reads
# mmcv's sources to keep this list complete).
WITHOUT_KERNEL = (
    "active_rotated_filter_backward", "active_rotated_filter_forward", "assign_score_withk_backward",
    "assign_score_withk_forward", "ball_query_forward", "bbox_overlaps", "bezier_align_backward",
    "bezier_align_forward", "bias_act", "border_align_backward", "border_align_forward", "box_iou_quadri",
    "box_iou_rotated", "carafe_backward", "carafe_forward", "carafe_naive_backward", "carafe_naive_forward",
    "chamfer_distance_backward", "chamfer_distance_forward", "contour_expand", "convex_giou", "convex_iou",
    "correlation_backward", "correlation_forward", "deform_conv_backward_input", "deform_conv_backward_parameters",
    "deform_conv_forward", "deform_roi_pool_backward", "deform_roi_pool_forward",
    "diff_iou_rotated_sort_vertices_forward", "dynamic_point_to_voxel_backward", "dynamic_point_to_voxel_forward",
    "dynamic_voxelize_forward", "filtered_lrelu", "filtered_lrelu_act_", "furthest_point_sampling_forward",
    "furthest_point_sampling_with_dist_forward", "fused_bias_leakyrelu", "fused_indice_conv_forward",
    "gather_points_backward", "gather_points_forward", "get_indice_pairs_2d_backward", "get_indice_pairs_2d_forward",
    "get_indice_pairs_3d_backward", "get_indice_pairs_3d_forward", "get_indice_pairs_4d_forward",
    "group_points_backward", "group_points_forward", "hard_voxelize_forward", "indice_conv_backward",
    "indice_conv_forward", "indice_maxpool_backward", "indice_maxpool_forward", "iou3d_boxes_overlap_bev_forward",
    "iou3d_nms3d_forward", "iou3d_nms3d_normal_forward", "knn_forward", "masked_col2im_forward",
    "masked_im2col_forward", "min_area_polygons", "modulated_deform_conv_backward", "modulated_deform_conv_forward",
    "ms_deform_attn_backward", "ms_deform_attn_forward", "nms_match", "nms_quadri", "nms_rotated", "pixel_group",
    "points_in_boxes_all_forward", "points_in_boxes_cpu_forward", "points_in_boxes_part_forward",
    "points_in_polygons_forward", "prroi_pool_backward", "prroi_pool_coor_backward", "prroi_pool_forward",
    "psamask_backward", "psamask_forward", "riroi_align_rotated_backward", "riroi_align_rotated_forward",
    "roi_align_rotated_backward", "roi_align_rotated_forward", "roi_pool_backward", "roi_pool_forward",
    "roiaware_pool3d_backward", "roiaware_pool3d_forward", "roipoint_pool3d_forward",
    "rotated_feature_align_backward", "rotated_feature_align_forward", "sigmoid_focal_loss_backward",
    "sigmoid_focal_loss_forward", "softmax_focal_loss_backward", "softmax_focal_loss_forward", "softnms",
    "stack_ball_query_forward", "stack_group_points_backward", "stack_group_points_forward", "sync_bn_backward_data",
    "sync_bn_backward_param", "sync_bn_forward_mean", "sync_bn_forward_output", "sync_bn_forward_var",
    "three_interpolate_backward", "three_interpolate_forward", "three_nn_forward", "tin_shift_backward",
    "tin_shift_forward", "upfirdn2d",
)


def _without_kernel(name: str) -> Callable[..., NoReturn]:
    def op(*args: object, **kwargs: object) -> NoReturn:
        raise MissingMMCVOpError(
            f"mmcv op {name!r} has no compiler-free kernel: mim_zoo's mmcv ops (mim_zoo.engine.mmcv_ops, on "
            f"torchvision) provide {', '.join(PROVIDED[:3])}, what mim_zoo's configs reach. To run a model that "
            f"needs {name!r}, {COMPILED_OPS_HINT}")

    op.__name__ = op.__qualname__ = name
    op.__doc__ = f"mmcv's {name}: not provided without compiled ops (raises MissingMMCVOpError)."
    return op


globals().update({name: _without_kernel(name) for name in WITHOUT_KERNEL})

__all__ = ["MissingMMCVOpError", *PROVIDED, *WITHOUT_KERNEL]
