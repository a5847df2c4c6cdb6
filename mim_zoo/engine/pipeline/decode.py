"""Reading and random-resized-cropping an image in one step, decoding only what the crop needs.

:class:`DecodeRandomResizedCrop` replaces ``[LoadImageFromFile, RandomResizedCrop]`` (mmcv, mmpretrain) with the
same output distribution at about 1.7x the images/s per core (``benchmarks/pipeline.py``; the decode, which both
pay, is half of its time):

1. read the file's bytes (mmengine ``fileio``, as ``LoadImageFromFile``) and parse its header only (Pillow's lazy
   ``Image.open``): size, format, mode, EXIF orientation;
2. sample the crop box from that size with mmpretrain's own ``RandomResizedCrop.rand_crop_params`` (inherited, not
   re-implemented: ten attempts at an area fraction ~ U(crop_ratio_range) and a log-uniform aspect ratio, then the
   centre-crop fallback; open-mmlab/mmpretrain@v1.2.0:mmpretrain/datasets/transforms/processing.py, the same
   algorithm as torchvision's ``RandomResizedCrop.get_params``, pytorch/vision@v0.29.1:
   torchvision/transforms/transforms.py, which draws from torch's generator instead of numpy's). A seeded run
   draws exactly the boxes mmpretrain's pipeline draws;
3. decode with OpenCV, the decoder mmcv's ``LoadImageFromFile`` uses (so colour conversion of greyscale, CMYK,
   palette or 16-bit files is the reference's own): a JPEG at the smallest libjpeg DCT scale 1/s, s in (8, 4, 2,
   1), that leaves the crop at least ``dct_headroom`` (default 2) times the output in both sides
   (``IMREAD_REDUCED_COLOR_s``, libjpeg's ``scale_denom``); other formats in full;
4. orient (EXIF; OpenCV's ``IMREAD_COLOR`` applies it, here it is applied to the reduced image so that the header
   and the pixels agree by construction), crop (a view) and resize with torch's antialiased uint8 kernels
   (:func:`~mim_zoo.engine.pipeline.geometry.resized_crop`); at 1/s, with the box's exact fractional edges
   (:func:`~mim_zoo.engine.pipeline.geometry.scaled_resized_crop`).

The result is what ``RandomResizedCrop`` leaves: ``results["img"]`` an ``[h, w, 3]`` uint8 BGR array (mmcv's
convention, so mmcv's ``RandomFlip``, mmpretrain's ``PackInputs`` and ``SelfSupDataPreprocessor(to_rgb=True)``
follow unchanged and the batch stays uint8 until the device). With ``decode="device"`` steps 3-4 are left to
:class:`~mim_zoo.engine.pipeline.device.NvJpegDataPreprocessor`: ``results["img"]`` is the file's bytes and the crop
box travels in the data sample's metainfo (files nvjpeg cannot take, non-JPEG or CMYK, are still decoded here and
travel as ``[3, h, w]`` RGB pixels).

Unreadable files fail or are skipped exactly as with ``CheckedLoadImage``
(:class:`mim_zoo.engine.transforms.UnreadableImages`).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from types import SimpleNamespace

import cv2
import numpy as np
import torch
from mmcv.transforms import RandomFlip
from mmengine import fileio
from mmpretrain.datasets.transforms import PackInputs, RandomResizedCrop
from PIL import ExifTags, Image
from torch import Tensor

from ..registry import TRANSFORMS
from ..transforms import UnreadableImages
from .geometry import CropBox, check_interpolation, dct_scale, orient, oriented_size, scaled_resized_crop

JPEG_FORMATS = ("JPEG", "MPO")  # MPO: camera JPEGs with extra pictures appended; the first one is a plain JPEG
DEVICE_MODES = ("RGB", "L")  # JPEG colour modes nvjpeg decodes to RGB (CMYK/YCCK JPEGs are decoded on the CPU)
# OpenCV's flags: colour (BGR), at 1/s through libjpeg's scaled IDCT for s > 1, EXIF orientation left to us.
_CV2_FLAGS = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
              8: cv2.IMREAD_REDUCED_COLOR_8}


def exif_orientation(image: Image.Image) -> int:
    """The EXIF orientation tag (1-8; 1 when absent), read from the header as ``ImageOps.exif_transpose`` reads it."""
    return int(image.getexif().get(ExifTags.Base.Orientation, 1) or 1)


def decode_bgr(data: bytes, scale: int = 1) -> Tensor:
    """OpenCV's decode of an image file's bytes as stored (no EXIF orientation): ``[3, H, W]`` uint8 BGR, a view of
    the ``[H, W, 3]`` array; a JPEG at 1/``scale`` (``ceil`` of each side), other formats need ``scale = 1``."""
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), _CV2_FLAGS[scale] | cv2.IMREAD_IGNORE_ORIENTATION)
    if pixels is None:
        raise ValueError("OpenCV cannot decode it")
    return torch.from_numpy(pixels).permute(2, 0, 1)


@TRANSFORMS.register_module()
class DecodeRandomResizedCrop(RandomResizedCrop):
    """``LoadImageFromFile`` + mmpretrain's ``RandomResizedCrop`` in one step; see the module docstring.

    Required keys: ``img_path``. Added keys: ``img``, ``img_shape`` (the output size), ``ori_shape`` (the file's
    displayed size), ``crop_box`` (``(top, left, height, width)`` in the file's displayed pixels), ``orientation``,
    ``interpolation`` and ``dct_scale`` (the s of the 1/s decode; 1 when the device decodes).

    Args:
        scale, crop_ratio_range, aspect_ratio_range, max_attempts: as mmpretrain's ``RandomResizedCrop``.
        interpolation: ``"bicubic"``, ``"bilinear"`` or ``"nearest"`` (the torch kernels that match Pillow's).
        dct_headroom: decode a JPEG at 1/s only if the crop stays ``>= dct_headroom x`` the output at 1/s;
            ``None``: always at full resolution. 1 is the least decoding (the crop just >= the output; libjpeg's
            scaled IDCT then leaves the top octave sharper than a bicubic reduction: 33-45 dB PSNR against a full
            decode of a textured photo); 2 (default) leaves the final antialiased resize a >= 2x reduction, which
            shapes that octave as the full-resolution path does (44-46 dB). See benchmarks/README.md for the cost.
        decode: ``"cpu"`` (here) or ``"device"`` (bytes for ``NvJpegDataPreprocessor``).
        on_corrupt, max_skipped, config_key: unreadable files, as ``CheckedLoadImage``.
        backend_args: mmengine file backend arguments, as ``LoadImageFromFile``.
    """

    def __init__(self, scale: Sequence[int] | int, crop_ratio_range: tuple[float, float] = (0.08, 1.0),
                 aspect_ratio_range: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0), max_attempts: int = 10,
                 interpolation: str = "bilinear", dct_headroom: float | None = 2.0, decode: str = "cpu",
                 on_corrupt: str = "raise", max_skipped: int | None = 100, backend_args: dict | None = None,
                 config_key: str | None = None) -> None:
        check_interpolation(interpolation)
        if decode not in ("cpu", "device"):
            raise ValueError(f"DecodeRandomResizedCrop decode must be 'cpu' or 'device', got {decode!r}")
        if dct_headroom is not None and dct_headroom < 1:
            raise ValueError(f"DecodeRandomResizedCrop dct_headroom must be >= 1 (the crop never decodes smaller "
                             f"than the output) or None, got {dct_headroom}")
        super().__init__(scale, crop_ratio_range=crop_ratio_range, aspect_ratio_range=aspect_ratio_range,
                         max_attempts=max_attempts, interpolation=interpolation, backend="pillow")
        self.scale = tuple(self.scale)  # (h, w)
        self.dct_headroom, self.decode, self.backend_args = dct_headroom, decode, backend_args
        self.unreadable = UnreadableImages(type(self).__name__, on_corrupt, max_skipped, config_key)

    @property
    def num_skipped(self) -> int:
        """Files skipped so far by this process and the data workers it forked."""
        return self.unreadable.num_skipped

    def transform(self, results: dict) -> dict | None:
        path = results["img_path"]
        try:
            data = fileio.get(path, backend_args=self.backend_args)
            header = Image.open(io.BytesIO(data))  # parses the header only; no pixel is decoded here
            orientation = exif_orientation(header)
        except Exception as err:  # noqa: BLE001 - any read/parse failure of this file
            return self.unreadable.handle(path, err)
        height, width = oriented_size(*header.size, orientation)
        box = CropBox(*self.rand_crop_params(SimpleNamespace(shape=(height, width))))  # reads img.shape[:2] only
        results.update(ori_shape=(height, width), img_shape=self.scale, crop_box=box, orientation=orientation,
                       interpolation=self.interpolation, dct_scale=1)
        jpeg = header.format in JPEG_FORMATS
        if self.decode == "device" and jpeg and header.mode in DEVICE_MODES:
            results["img"] = torch.frombuffer(bytearray(data), dtype=torch.uint8)
            return results
        scale = 1 if self.dct_headroom is None or not jpeg else dct_scale(box, self.scale, self.dct_headroom)
        try:
            stored = decode_bgr(data, scale)
        except Exception as err:  # noqa: BLE001 - corrupt image data
            return self.unreadable.handle(path, err)
        pixels = scaled_resized_crop(orient(stored, orientation), box, scale, self.scale, self.interpolation)
        results["dct_scale"] = scale
        # [3, h, w] BGR; the CPU pipeline's [h, w, 3] array is a view (PackInputs makes the one contiguous copy)
        results["img"] = pixels.flip(0) if self.decode == "device" else pixels.permute(1, 2, 0).numpy()
        return results


@TRANSFORMS.register_module()
class DeferredRandomFlip(RandomFlip):
    """mmcv's ``RandomFlip`` that draws the flip (the same probabilities and numpy draws) and records it in
    ``results["flip"]`` / ``["flip_direction"]`` without touching the pixels: with ``decode="device"`` the image
    does not exist yet, and :class:`~mim_zoo.engine.pipeline.device.NvJpegDataPreprocessor` flips it there."""

    def transform(self, results: dict) -> dict:
        direction = self._choose_direction()
        results["flip"], results["flip_direction"] = direction is not None, direction
        return results


@TRANSFORMS.register_module()
class PackEncodedInputs(PackInputs):
    """mmpretrain's ``PackInputs`` that also puts what the device needs to finish the crop into the data sample's
    metainfo: ``crop_box``, ``orientation`` and ``interpolation`` (with ``flip_direction`` and ``img_shape``, which
    ``PackInputs`` packs already). A class rather than ``meta_keys=`` in the config: a config dumped beside a run
    writes imported constants as dotted strings."""

    DEFAULT_META_KEYS = (*PackInputs.DEFAULT_META_KEYS, "crop_box", "orientation", "interpolation")

    def __init__(self, input_key: str = "img", algorithm_keys: Sequence[str] = (),
                 meta_keys: Sequence[str] = DEFAULT_META_KEYS) -> None:
        super().__init__(input_key=input_key, algorithm_keys=algorithm_keys, meta_keys=meta_keys)
