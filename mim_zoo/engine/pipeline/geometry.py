"""The geometry of a random resized crop, shared by the CPU pipeline and the on-device (nvjpeg) decoder.

Everything works on ``[C, H, W]`` uint8 tensors, on any device:

* :func:`orient` turns the stored pixels into the image as displayed (EXIF orientation, as
  ``PIL.ImageOps.exif_transpose`` and OpenCV's ``IMREAD_COLOR`` do), with views and flips;
* :func:`dct_scale` picks the JPEG decoding scale 1/s, s in (1, 2, 4, 8), that keeps a crop at least as large as
  the output (times a headroom); :func:`reduce_box` maps a crop box onto the image decoded at that scale;
* :func:`resized_crop` crops (a view) and resizes with torch's antialiased kernels, which compute Pillow's filters
  (pytorch ``aten/src/ATen/native/cpu/UpSampleKernelAVXAntialias.h``: the uint8 AVX2 path follows Pillow-SIMD's
  ``Resample.c``): within 1-2 grey levels of mmpretrain's crop + Pillow resize (``tests/engine/test_pipeline.py``),
  at about a third of Pillow's time for a 224^2 bicubic output.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor


class CropBox(NamedTuple):
    """A crop in pixels of the displayed image: ``(top, left, height, width)``, the order of mmpretrain's
    ``RandomResizedCrop.rand_crop_params`` and torchvision's ``RandomResizedCrop.get_params``."""

    top: int
    left: int
    height: int
    width: int


# EXIF orientation -> (transpose, flip rows, flip columns), applied in this order to the stored pixels (EXIF 2.32,
# tag 0x0112; the same mapping as PIL.ImageOps.exif_transpose). 5-8 swap height and width.
_ORIENTATIONS = {1: (False, False, False), 2: (False, False, True), 3: (False, True, True), 4: (False, True, False),
                 5: (True, False, False), 6: (True, False, True), 7: (True, True, True), 8: (True, True, False)}
# torch kernels for mmpretrain's interpolation names. "nearest-exact" is Pillow's NEAREST (centre sampling).
_MODES = {"nearest": "nearest-exact", "bilinear": "bilinear", "bicubic": "bicubic"}
DCT_SCALES = (8, 4, 2, 1)  # libjpeg's scaled IDCT: 1/8, 1/4, 1/2, 1 (scale_denom; OpenCV's IMREAD_REDUCED_*)


def check_interpolation(interpolation: str) -> str:
    """The torch mode of an interpolation name, or a clear error for the ones without an antialiased torch kernel."""
    if interpolation not in _MODES:
        raise ValueError(f"interpolation {interpolation!r} has no torch kernel matching Pillow's; use one of "
                         f"{', '.join(_MODES)}, or pipeline_impl='mmpretrain' (Pillow resize) for this one")
    return _MODES[interpolation]


def oriented_size(width: int, height: int, orientation: int) -> tuple[int, int]:
    """``(height, width)`` of the displayed image whose stored pixels are ``width x height``."""
    transpose = _ORIENTATIONS.get(orientation, _ORIENTATIONS[1])[0]
    return (width, height) if transpose else (height, width)


def orient(image: Tensor, orientation: int) -> Tensor:
    """``[C, H, W]`` stored pixels -> the displayed image (``[C, W, H]`` for orientations 5-8). Unknown values
    (0, > 8: malformed EXIF) leave the image as stored, as PIL does."""
    transpose, flip_rows, flip_cols = _ORIENTATIONS.get(orientation, _ORIENTATIONS[1])
    if transpose:
        image = image.transpose(-1, -2)
    dims = [d for d, flip in ((-2, flip_rows), (-1, flip_cols)) if flip]
    return image.flip(dims) if dims else image


def dct_scale(box: CropBox, size: tuple[int, int], headroom: float = 1.0) -> int:
    """The largest s in (8, 4, 2, 1) for which the crop decoded at 1/s is still at least ``headroom x size``
    (``size`` = (h, w)) in both sides; 1 for a crop smaller than that (enlarged from full-resolution pixels)."""
    return next((s for s in DCT_SCALES
                 if box.height >= headroom * size[0] * s and box.width >= headroom * size[1] * s), 1)


def reduce_box(box: CropBox, scale: int, shape: tuple[int, int]) -> CropBox:
    """``box`` on the image decoded at 1/``scale`` (``shape`` = its (H, W)), edges rounded to its pixel grid.

    libjpeg's pixel i at 1/s covers full-resolution pixels [s i, s i + s), so an edge at x maps to x / s; rounding
    moves each edge by at most s / 2 full-resolution pixels, less than half an output pixel (the crop is >= s times
    the output). The crop's position is uniform in [0, W - w], so this changes no statistic of the crop box.
    """
    if scale == 1:
        return box
    top, left = round(box.top / scale), round(box.left / scale)
    bottom = min(shape[0], round((box.top + box.height) / scale))
    right = min(shape[1], round((box.left + box.width) / scale))
    return CropBox(top, left, bottom - top, right - left)


def resized_crop(image: Tensor, box: CropBox, size: tuple[int, int], interpolation: str = "bicubic") -> Tensor:
    """Crop ``box`` out of ``image`` ``[C, H, W]`` uint8 and resize it to ``size`` = (h, w): ``[C, h, w]`` uint8.

    The crop is a view, so the filter stops at the crop's edges as it does for mmpretrain's copy-then-resize
    (Pillow's ``resize(box=...)`` instead reads the pixels outside the box: up to 28 grey levels apart at the
    border). Bilinear and bicubic are antialiased (Pillow's filters, support scaled with the reduction). The
    uint8 kernels exist on CPU only; elsewhere the crop is resized in float and rounded back to uint8.
    """
    crop = image[None, :, box.top:box.top + box.height, box.left:box.left + box.width]
    return interpolate(crop, size, interpolation, uint8_kernel=crop.device.type == "cpu")[0]


def interpolate(images: Tensor, size: tuple[int, int], interpolation: str, uint8_kernel: bool) -> Tensor:
    """``[N, C, H, W]`` uint8 -> ``[N, C, h, w]`` uint8 with torch's (antialiased) kernel for ``interpolation``:
    directly on uint8 (``uint8_kernel``; CPU), or in float32, rounded and clamped back (any device)."""
    mode = check_interpolation(interpolation)
    x = images if uint8_kernel else images.float()
    out = F.interpolate(x, size=tuple(size), mode=mode, antialias=mode != "nearest-exact")
    return out if uint8_kernel else out.round_().clamp_(0, 255).to(torch.uint8)
