"""The geometry of a random resized crop, shared by the CPU pipeline and the on-device (nvjpeg) decoder.

Everything works on ``[C, H, W]`` uint8 tensors, on any device (:func:`scaled_resized_crop`: on the CPU):

* :func:`orient` turns the stored pixels into the image as displayed (EXIF orientation, as
  ``PIL.ImageOps.exif_transpose`` and OpenCV's ``IMREAD_COLOR`` do), with views and flips;
* :func:`dct_scale` picks the JPEG decoding scale 1/s, s in (1, 2, 4, 8), that keeps a crop at least as large as
  the output (times a headroom); :func:`scaled_resized_crop` crops and resizes the image decoded at that scale;
* :func:`resized_crop` crops (a view) and resizes with torch's antialiased kernels, which compute Pillow's filters
  (pytorch ``aten/src/ATen/native/cpu/UpSampleKernelAVXAntialias.h``: the uint8 AVX2 path follows Pillow-SIMD's
  ``Resample.c``): within 1-2 grey levels of mmpretrain's crop + Pillow resize (``tests/engine/test_pipeline.py``),
  at about a third of Pillow's time for a 224^2 bicubic output.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
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
_PILLOW_FILTERS = {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}
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


def scaled_resized_crop(image: Tensor, box: CropBox, scale: int, size: tuple[int, int],
                        interpolation: str = "bicubic") -> Tensor:
    """:func:`resized_crop` of ``box`` (in full-resolution pixels) out of ``image`` ``[3, H, W]`` uint8 (CPU), the
    image decoded at 1/``scale``: ``[3, h, w]`` uint8.

    libjpeg's pixel i at 1/s covers full-resolution pixels [s i, s i + s), so an edge at x lies at x / s, between
    two reduced pixels; Pillow's resize takes that fractional box, on the smallest whole-pixel crop around it (the
    filter reads at most a pixel beyond the box, where the full-resolution path clamps at the crop's edge). Rounding
    the edges instead would move the crop by up to a quarter output pixel (``dct_headroom=2``): 27-32 dB PSNR
    against the full-resolution decode on textured photos, 44-46 dB with the exact box.
    """
    if scale == 1:
        return resized_crop(image, box, size, interpolation)
    height, width = image.shape[-2:]
    top, left = box.top / scale, box.left / scale
    bottom, right = min(height, (box.top + box.height) / scale), min(width, (box.left + box.width) / scale)
    rows, cols = slice(math.floor(top), math.ceil(bottom)), slice(math.floor(left), math.ceil(right))
    crop = np.ascontiguousarray(image[:, rows, cols].permute(1, 2, 0).numpy())
    inner = (left - cols.start, top - rows.start, right - cols.start, bottom - rows.start)
    out = Image.fromarray(crop).resize((size[1], size[0]), _PILLOW_FILTERS[interpolation], box=inner)
    return torch.from_numpy(np.array(out)).permute(2, 0, 1)


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
    directly on uint8 (``uint8_kernel``; CPU), or in float32, rounded and clamped back (any device).

    The uint8 kernel rounds and clips between its two passes, so the order of the passes shows in the result;
    torch runs the horizontal pass first, and Pillow the vertical one when the height shrinks by more than twice as
    many pixels as the width (Pillow 13's ``ImagingResampleInner``: the same order on 400 random shapes,
    ``tests/engine/test_pipeline.py``). Here too: then the two passes are two one-axis calls (a kernel leaves an
    axis whose size does not change untouched).
    """
    mode = check_interpolation(interpolation)
    if not uint8_kernel:
        return _resize(images.float(), size, mode).round_().clamp_(0, 255).to(torch.uint8)
    if _pillow_resizes_vertically_first(tuple(images.shape[-2:]), tuple(size)):
        return _resize(_resize(images, (size[0], images.shape[-1]), mode), size, mode)  # vertical, then horizontal
    return _resize(images, size, mode)


def _resize(images: Tensor, size: tuple[int, int], mode: str) -> Tensor:
    return F.interpolate(images, size=tuple(size), mode=mode, antialias=mode != "nearest-exact")


def _pillow_resizes_vertically_first(shape: tuple[int, int], size: tuple[int, int]) -> bool:
    shrink_rows, shrink_cols = shape[0] - size[0], shape[1] - size[1]
    return shrink_rows > 0 and shrink_rows > 2 * shrink_cols
