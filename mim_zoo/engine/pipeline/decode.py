"""Reading and random-resized-cropping an image in one step, decoding only what the crop needs.

:class:`DecodeRandomResizedCrop` replaces ``[LoadImageFromFile, RandomResizedCrop]`` (mmcv, mmpretrain) with the
same output distribution at 1.6-1.7x the images/s per core with OpenCV decoding the whole JPEG, and 1.95-2.06x where
libjpeg-turbo >= 3.0 is installed and decodes only the crop (``benchmarks/pipeline.py`` on a busy 2-core machine;
benchmarks/README.md):

1. read the file's bytes (mmengine ``fileio``, as ``LoadImageFromFile``) and parse its header only (Pillow's lazy
   ``Image.open``): size, format, mode, EXIF orientation; with the region decoder, a JPEG without APP1 segments (no
   EXIF, so no orientation to read: :func:`jpeg_needs_pillow`) is parsed by libjpeg-turbo alone;
2. sample the crop box from that size with mmpretrain's own ``RandomResizedCrop.rand_crop_params`` (inherited, not
   re-implemented: ten attempts at an area fraction ~ U(crop_ratio_range) and a log-uniform aspect ratio, then the
   centre-crop fallback; open-mmlab/mmpretrain@v1.2.0:mmpretrain/datasets/transforms/processing.py, the same
   algorithm as torchvision's ``RandomResizedCrop.get_params``, pytorch/vision@v0.29.1:
   torchvision/transforms/transforms.py, which draws from torch's generator instead of numpy's). A seeded run
   draws exactly the boxes mmpretrain's pipeline draws;
3. decode a JPEG at the smallest libjpeg DCT scale 1/s, s in (8, 4, 2, 1), that leaves the crop at least
   ``dct_headroom`` (default 2) times the output in both sides (libjpeg's ``scale_denom``):

   * ``decoder="turbojpeg"`` (the default ``"auto"`` where :mod:`~mim_zoo.engine.pipeline.turbojpeg` finds
     libjpeg-turbo >= 3.0): only the pixels the resize reads (the crop, or its window at 1/s, mapped to the stored
     pixels through the EXIF orientation), bit-identical to the same pixels of a full decode by OpenCV, whose
     decoder is libjpeg-turbo too; YCbCr and greyscale 8-bit JPEGs (the others go to OpenCV);
   * ``decoder="opencv"``: the whole image, with the decoder mmcv's ``LoadImageFromFile`` uses (so colour
     conversion of greyscale, CMYK, palette or 16-bit files is the reference's own), ``IMREAD_REDUCED_COLOR_s`` at
     1/s; other formats in full;
4. orient (EXIF; OpenCV's ``IMREAD_COLOR`` applies it, here it is applied to the decoded pixels so that the header
   and the pixels agree by construction), crop and resize with torch's antialiased uint8 kernels
   (:func:`~mim_zoo.engine.pipeline.geometry.resized_crop`); at 1/s, with the box's exact fractional edges
   (:func:`~mim_zoo.engine.pipeline.geometry.resize_window`).

The result is what ``RandomResizedCrop`` leaves: ``results["img"]`` an ``[h, w, 3]`` uint8 BGR array (mmcv's
convention, so mmcv's ``RandomFlip``, mmpretrain's ``PackInputs`` and ``SelfSupDataPreprocessor(to_rgb=True)``
follow unchanged and the batch stays uint8 until the device), a view of planar memory (:func:`planar_hwc`). With
``decode="device"`` steps 3-4 are left to :class:`~mim_zoo.engine.pipeline.device.NvJpegDataPreprocessor`:
``results["img"]`` is the file's bytes and the crop box travels in the data sample's metainfo (files nvjpeg cannot
take, non-JPEG or CMYK, are still decoded here and travel as ``[3, h, w]`` RGB pixels).

Unreadable files fail or are skipped exactly as with ``CheckedLoadImage``
(:class:`mim_zoo.engine.transforms.UnreadableImages`): a file TurboJPEG refuses or warns about (corrupt data,
truncation) is decoded by OpenCV, whose verdict counts. One difference is inherent to decoding less: damage that lies
wholly below the crop goes unseen (the crop's pixels are intact), where a full decode would have reported it.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from types import SimpleNamespace
from typing import NamedTuple

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
from . import turbojpeg
from .geometry import (
    CropBox,
    check_interpolation,
    dct_scale,
    decoded_window,
    orient,
    oriented_size,
    resize_window,
    scaled_resized_crop,
    stored_window,
)

JPEG_FORMATS = ("JPEG", "MPO")  # MPO: camera JPEGs with extra pictures appended; the first one is a plain JPEG
DEVICE_MODES = ("RGB", "L")  # JPEG colour modes nvjpeg decodes to RGB (CMYK/YCCK JPEGs are decoded on the CPU)
DECODERS = ("auto", "opencv", "turbojpeg")
# OpenCV's flags: colour (BGR), at 1/s through libjpeg's scaled IDCT for s > 1, EXIF orientation left to us.
_CV2_FLAGS = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
              8: cv2.IMREAD_REDUCED_COLOR_8}


class Probe(NamedTuple):
    """A file's header: stored size, EXIF orientation, format and mode (Pillow's names), TurboJPEG's header if read."""

    width: int
    height: int
    orientation: int
    format: str | None
    mode: str | None
    turbo: turbojpeg.JpegHeader | None = None


def probe_with_pillow(data: bytes) -> Probe:
    """Pillow's lazy ``Image.open`` (no pixel decoded): size, EXIF orientation, format, mode."""
    image = Image.open(io.BytesIO(data))
    return Probe(*image.size, exif_orientation(image), image.format, image.mode)


def jpeg_needs_pillow(data: bytes) -> bool:
    """Whether the JPEG ``data`` has an APP1 segment before its image data, or markers this scan does not follow
    (then Pillow parses it); ``False`` means no EXIF, so orientation 1 (:func:`exif_orientation`): a JPEG carries
    EXIF in an APP1 segment (so Pillow 13.0.0's ``JpegImagePlugin.APP`` reads it, and XMP, also APP1). Marker
    syntax: ITU-T T.81 B.1.1 (fill bytes 0xFF, standalone RSTn and TEM, two-byte segment lengths)."""
    i = 2  # after SOI
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return True
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
        elif marker in (0xDA, 0xD9):  # SOS, EOI: no header segment follows
            return False
        elif 0xD0 <= marker <= 0xD7 or marker == 0x01:
            i += 2
        elif marker == 0xE1:
            return True
        else:
            i += 2 + (data[i + 2] << 8 | data[i + 3])
    return True


def exif_orientation(image: Image.Image) -> int:
    """The EXIF orientation tag (1-8; 1 when absent) of a file opened by Pillow, from its EXIF only, as OpenCV's
    ``IMREAD_COLOR`` (the reference's decoder) applies it: Pillow's ``getexif`` would also take a ``tiff:Orientation``
    from XMP when EXIF has none, which OpenCV ignores."""
    exif = Image.Exif()
    if image.info.get("exif"):
        exif.load(image.info["exif"])
    return int(exif.get(ExifTags.Base.Orientation, 1) or 1)


def planar_hwc(pixels: Tensor) -> np.ndarray:
    """``[3, h, w]`` uint8 (CPU) -> ``[h, w, 3]``, mmcv's layout, as a view of planar ``[3, h, w]`` memory: mmpretrain's
    ``PackInputs`` then finds the ``[3, h, w]`` tensor it packs contiguous already and copies nothing (after a flip it
    still copies). OpenCV's ``split`` de-interleaves the resize's packed output into the planes, 5 us for 224 x 224
    where ``PackInputs``' own transposing copy takes 60-80 us."""
    packed = np.ascontiguousarray(pixels.permute(1, 2, 0).numpy())  # [h, w, 3]; the resize's own layout: no copy
    planes = np.empty((3, *packed.shape[:2]), np.uint8)
    cv2.split(packed, [planes[0], planes[1], planes[2]])
    return planes.transpose(1, 2, 0)


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
    ``interpolation``, ``dct_scale`` (the s of the 1/s decode; 1 when the device decodes) and ``decoder`` (which
    one decoded this file: ``"turbojpeg"``, ``"opencv"``, or ``"device"``).

    Args:
        scale, crop_ratio_range, aspect_ratio_range, max_attempts: as mmpretrain's ``RandomResizedCrop``.
        interpolation: ``"bicubic"``, ``"bilinear"`` or ``"nearest"`` (the torch kernels that match Pillow's).
        dct_headroom: decode a JPEG at 1/s only if the crop stays ``>= dct_headroom x`` the output at 1/s;
            ``None``: always at full resolution. 1 is the least decoding (the crop just >= the output; libjpeg's
            scaled IDCT then leaves the top octave sharper than a bicubic reduction: 33-45 dB PSNR against a full
            decode of a textured photo); 2 (default) leaves the final antialiased resize a >= 2x reduction, which
            shapes that octave as the full-resolution path does (44-46 dB). See benchmarks/README.md for the cost.
        decode: ``"cpu"`` (here) or ``"device"`` (bytes for ``NvJpegDataPreprocessor``).
        decoder: the CPU decoder of JPEGs: ``"turbojpeg"`` (only the pixels the crop needs; libjpeg-turbo >= 3.0,
            :mod:`~mim_zoo.engine.pipeline.turbojpeg`), ``"opencv"`` (the whole image), or ``"auto"`` (the first
            where it is installed, else the second): the same pixels either way.
        on_corrupt, max_skipped, config_key: unreadable files, as ``CheckedLoadImage``.
        backend_args: mmengine file backend arguments, as ``LoadImageFromFile``.
    """

    def __init__(self, scale: Sequence[int] | int, crop_ratio_range: tuple[float, float] = (0.08, 1.0),
                 aspect_ratio_range: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0), max_attempts: int = 10,
                 interpolation: str = "bilinear", dct_headroom: float | None = 2.0, decode: str = "cpu",
                 decoder: str = "auto", on_corrupt: str = "raise", max_skipped: int | None = 100,
                 backend_args: dict | None = None, config_key: str | None = None) -> None:
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
        self.decoder = resolve_decoder(decoder)
        self.unreadable = UnreadableImages(type(self).__name__, on_corrupt, max_skipped, config_key)

    @property
    def num_skipped(self) -> int:
        """Files skipped so far by this process and the data workers it forked."""
        return self.unreadable.num_skipped

    def transform(self, results: dict) -> dict | None:
        path = results["img_path"]
        try:
            data = fileio.get(path, backend_args=self.backend_args)
            header = self._probe(data)  # parses the header only; no pixel is decoded here
        except Exception as err:  # noqa: BLE001 - any read/parse failure of this file
            return self.unreadable.handle(path, err)
        orientation = header.orientation
        height, width = oriented_size(header.width, header.height, orientation)
        box = CropBox(*self.rand_crop_params(SimpleNamespace(shape=(height, width))))  # reads img.shape[:2] only
        results.update(ori_shape=(height, width), img_shape=self.scale, crop_box=box, orientation=orientation,
                       interpolation=self.interpolation, dct_scale=1)
        jpeg = header.format in JPEG_FORMATS
        if self.decode == "device" and jpeg and header.mode in DEVICE_MODES:
            results["img"], results["decoder"] = torch.frombuffer(bytearray(data), dtype=torch.uint8), "device"
            return results
        scale = 1 if self.dct_headroom is None or not jpeg else dct_scale(box, self.scale, self.dct_headroom)
        results["dct_scale"] = scale
        try:
            pixels, results["decoder"] = self._decode_crop(data, jpeg, (height, width), box, orientation, scale)
        except Exception as err:  # noqa: BLE001 - corrupt image data
            return self.unreadable.handle(path, err)
        results["img"] = pixels.flip(0) if self.decode == "device" else planar_hwc(pixels)  # [3, h, w] RGB, [h, w, 3]
        return results

    def _probe(self, data: bytes) -> Probe:
        """The header through TurboJPEG for a JPEG it decodes by region and without APP1 segments (the region
        decoder reads it anyway; Pillow's parse of it would cost about 20 us), else through Pillow."""
        if self.decoder == "turbojpeg" and self.decode == "cpu":
            try:
                turbo = turbojpeg.decoder().header(data)
            except turbojpeg.TurboJpegError:
                turbo = None
            if turbo is not None and turbo.decodable and not jpeg_needs_pillow(data):
                return Probe(turbo.width, turbo.height, 1, "JPEG", None, turbo)
        return probe_with_pillow(data)

    def _decode_crop(self, data: bytes, jpeg: bool, displayed: tuple[int, int], box: CropBox, orientation: int,
                     scale: int) -> tuple[Tensor, str]:
        """The resized crop ``[3, h, w]`` uint8 BGR of the file whose displayed size is ``displayed`` = (h, w), and
        the decoder that decoded it: TurboJPEG's region decode where chosen and the file is a JPEG it takes, else
        OpenCV's whole image."""
        if jpeg and self.decoder == "turbojpeg":
            try:
                return self._decode_region(data, displayed, box, orientation, scale), "turbojpeg"
            except turbojpeg.TurboJpegError:
                pass  # not a file TurboJPEG takes (12-bit, lossless, RGB/CMYK colour, ...): OpenCV decides
        stored = decode_bgr(data, scale)
        return scaled_resized_crop(orient(stored, orientation), box, scale, self.scale, self.interpolation), "opencv"

    def _decode_region(self, data: bytes, displayed: tuple[int, int], box: CropBox, orientation: int,
                       scale: int) -> Tensor:
        """TurboJPEG decodes the window of the image at 1/``scale`` that the resize of ``box`` reads (in the stored
        pixels: the displayed window mapped back through the EXIF orientation), which is then oriented and resized."""
        shown = (-(-displayed[0] // scale), -(-displayed[1] // scale))  # libjpeg rounds each side up at 1/scale
        window = decoded_window(box, scale, shown)
        pixels = turbojpeg.decoder().decode(data, stored_window(window, orientation, shown), scale)
        return resize_window(orient(pixels, orientation), window, box, scale, self.scale, self.interpolation)


def resolve_decoder(decoder: str) -> str:
    """``"auto"`` -> ``"turbojpeg"`` where libjpeg-turbo >= 3.0 is installed, else ``"opencv"``.

    Raises:
        ValueError: an unknown name, or ``"turbojpeg"`` without the library (naming how to get it).
    """
    if decoder not in DECODERS:
        raise ValueError(f"DecodeRandomResizedCrop decoder must be one of {', '.join(DECODERS)}, got {decoder!r}")
    available = turbojpeg.library() is not None
    if decoder == "turbojpeg" and not available:
        raise ValueError(f"DecodeRandomResizedCrop decoder='turbojpeg' needs libjpeg-turbo >= 3.0, which was not "
                         f"found: {turbojpeg.HOW_TO_GET}; or use decoder='opencv' (the same pixels, whole images)")
    return decoder if decoder != "auto" else "turbojpeg" if available else "opencv"


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
