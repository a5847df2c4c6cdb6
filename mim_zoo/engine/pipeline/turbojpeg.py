"""Region-of-interest JPEG decoding with libjpeg-turbo's TurboJPEG 3 API, through ``ctypes``, when it is installed.

A random resized crop needs only the pixels of its box. libjpeg-turbo >= 3.0 decodes just those
(``tj3SetCroppingRegion``; libjpeg-turbo/libjpeg-turbo@6d48aaacd21911d8484289b7396b880eb1f393e0:src/turbojpeg-mp.c,
``tj3Decompress8``): the rows above the box are entropy-decoded but skipped before the IDCT, upsampling and colour
conversion (``jpeg_skip_scanlines``), the columns outside it are not transformed (``jpeg_crop_scanline``), and
decoding stops after the box's last row (skipping to the end of the image returns at once). The pixels inside the
region are libjpeg's own, the same IDCT (``ISLOW``) and smooth chroma upsampling as a full decode by OpenCV (whose
decoder is libjpeg-turbo too), except in the region's first and last columns, where the upsampler has no neighbour
outside the region: :meth:`TurboJpeg.decode` therefore decodes one more pixel on every side than it returns
(``tests/engine/test_pipeline.py`` asserts bit-identical pixels for every subsampling, progressive and greyscale
files, at every DCT scale).

The library is loaded from, in order: ``$MIM_ZOO_LIBTURBOJPEG`` (a path), ``<sys.prefix>/lib`` (a conda environment
with ``libjpeg-turbo >= 3``), the copy bundled in the ``turbojpeg`` wheel of the stack (``mim_zoo/requirements.txt``;
only its library is used), the system's library path (``ctypes.util.find_library``). Debian 12 and
Ubuntu 24.04 ship TurboJPEG 2.1 (no ``tj3*`` functions): there :func:`library` is ``None`` and the pipeline decodes
with OpenCV. The TurboJPEG API reports errors by return value (no ``longjmp`` through Python), which is what makes
``ctypes`` safe here; the libjpeg API under it is not callable that way. Constants: ``src/turbojpeg.h`` at
libjpeg-turbo/libjpeg-turbo@26d978b661a1f30067c71ed12d0a7338f694cba0.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import importlib.metadata as metadata
import os
import sys
import threading
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from .geometry import CropBox

LIBRARY_ENV = "MIM_ZOO_LIBTURBOJPEG"
_INIT_DECOMPRESS = 1  # TJINIT_DECOMPRESS
_PARAM_SUBSAMP, _PARAM_WIDTH, _PARAM_HEIGHT, _PARAM_COLORSPACE = 4, 5, 6, 8  # TJPARAM_*
_PF_BGR = 1  # TJPF_BGR: OpenCV's (and mmcv's) channel order
_CS_YCBCR, _CS_GRAY = 1, 2  # TJCS_*: the colour spaces decoded here; others (RGB, CMYK, YCCK) are left to OpenCV
_MCU_WIDTH = (8, 16, 16, 8, 8, 32, 8)  # tjMCUWidth[TJSAMP_444, 422, 420, GRAY, 440, 411, 441]
HOW_TO_GET = ("install libjpeg-turbo >= 3.0 (`conda install -c conda-forge libjpeg-turbo`, or a distribution's "
              f"libturbojpeg 3.x) or point ${LIBRARY_ENV} at its libturbojpeg.so")


class _Region(ctypes.Structure):
    _fields_ = [("x", ctypes.c_int), ("y", ctypes.c_int), ("w", ctypes.c_int), ("h", ctypes.c_int)]  # tjregion


class _Scale(ctypes.Structure):
    _fields_ = [("num", ctypes.c_int), ("denom", ctypes.c_int)]  # tjscalingfactor


class JpegHeader(NamedTuple):
    """What TurboJPEG reads from a JPEG's header: stored size, TJSAMP subsampling, TJCS colour space."""

    width: int
    height: int
    subsampling: int
    colorspace: int

    @property
    def decodable(self) -> bool:
        """Whether :meth:`TurboJpeg.decode` takes this file: YCbCr or greyscale with a known subsampling (12-bit and
        lossless JPEGs it refuses with an error when asked)."""
        return self.colorspace in (_CS_YCBCR, _CS_GRAY) and 0 <= self.subsampling < len(_MCU_WIDTH)


class TurboJpegError(RuntimeError):
    """TurboJPEG refused a file (the caller falls back to OpenCV, which decides whether it is unreadable)."""


def library_candidates() -> list[str]:
    """Where :func:`library` looks, in order (see the module docstring)."""
    if os.environ.get(LIBRARY_ENV):
        return [os.environ[LIBRARY_ENV]]
    local = [str(p) for p in (Path(sys.prefix) / "lib" / "libturbojpeg.so.0", Path(sys.prefix) / "lib"
                              / "libturbojpeg.dylib") if p.is_file()]
    found = ctypes.util.find_library("turbojpeg")
    return local + bundled_library() + ([found] if found else [])


def bundled_library() -> list[str]:
    """libturbojpeg as the ``turbojpeg`` wheel bundles it (``turbojpeg.libs/libturbojpeg-<hash>.so.0.3.0``)."""
    try:
        files = metadata.distribution("turbojpeg").files or []
    except metadata.PackageNotFoundError:
        return []
    return sorted(str(f.locate()) for f in files if f.name.startswith("libturbojpeg"))


def load_library(path: str) -> ctypes.CDLL:
    """Load ``path`` and declare the TurboJPEG 3 functions used here.

    Raises:
        OSError: the file does not load, or is TurboJPEG < 3.0 (no ``tj3SetCroppingRegion``).
    """
    lib = ctypes.CDLL(path)
    try:
        lib.tj3SetCroppingRegion.argtypes = [ctypes.c_void_p, _Region]
    except AttributeError as err:
        raise OSError(f"{path} is TurboJPEG < 3.0 (no tj3SetCroppingRegion); region decoding needs libjpeg-turbo "
                      ">= 3.0") from err
    lib.tj3Init.argtypes, lib.tj3Init.restype = [ctypes.c_int], ctypes.c_void_p
    lib.tj3Destroy.argtypes, lib.tj3Destroy.restype = [ctypes.c_void_p], None
    lib.tj3Get.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.tj3DecompressHeader.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
    lib.tj3SetScalingFactor.argtypes = [ctypes.c_void_p, _Scale]
    lib.tj3Decompress8.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_int,
                                   ctypes.c_int]
    lib.tj3GetErrorStr.argtypes, lib.tj3GetErrorStr.restype = [ctypes.c_void_p], ctypes.c_char_p
    return lib


@functools.cache
def library() -> tuple[ctypes.CDLL, str] | None:
    """The first loadable TurboJPEG >= 3.0 among :func:`library_candidates` and its path, or ``None``.

    Raises:
        OSError: ``$MIM_ZOO_LIBTURBOJPEG`` is set but names no TurboJPEG >= 3.0 (an explicit choice fails loudly).
    """
    for path in library_candidates():
        try:
            return load_library(path), path
        except OSError as err:
            if os.environ.get(LIBRARY_ENV):
                raise OSError(f"${LIBRARY_ENV}={path!r} is not a loadable TurboJPEG >= 3.0 library ({err}); "
                              f"point it at libjpeg-turbo 3's libturbojpeg.so, or unset it") from err
    return None


class TurboJpeg:
    """One TurboJPEG decompressor per process and thread (handles are neither thread-safe nor to be shared by
    forked workers); :func:`decoder` gives this process's."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self.lib, self.pid, self.handle = lib, os.getpid(), None
        self.handle = lib.tj3Init(_INIT_DECOMPRESS)
        if not self.handle:
            raise OSError("tj3Init failed")
        self._parsed: tuple[bytes, JpegHeader] | None = None  # the file whose header the handle holds
        self._scale = 1

    def __del__(self) -> None:
        if self.handle and os.getpid() == self.pid:
            self.lib.tj3Destroy(self.handle)

    def header(self, data: bytes) -> JpegHeader:
        """Parse ``data``'s header.

        Raises:
            TurboJpegError: not a JPEG TurboJPEG can parse.
        """
        if self._parsed is not None and self._parsed[0] is data:
            return self._parsed[1]
        self._parsed = None
        self._check(self.lib.tj3DecompressHeader(self.handle, data, len(data)), "tj3DecompressHeader")
        get = self.lib.tj3Get
        header = JpegHeader(get(self.handle, _PARAM_WIDTH), get(self.handle, _PARAM_HEIGHT),
                            get(self.handle, _PARAM_SUBSAMP), get(self.handle, _PARAM_COLORSPACE))
        self._parsed = data, header
        return header

    def decode(self, data: bytes, window: CropBox, scale: int = 1) -> Tensor:
        """``window`` of the JPEG ``data``'s stored pixels decoded at 1/``scale`` (an image of ``ceil(side / scale)``
        sides, as OpenCV's ``IMREAD_REDUCED_*``): ``[3, h, w]`` uint8 BGR, a view of the decoded region, with the
        pixels a full decode at that scale has there.

        Raises:
            TurboJpegError: TurboJPEG cannot decode the file (not :attr:`JpegHeader.decodable`, or an error or a
                warning from libjpeg).
        """
        header = self.header(data)  # parsed already if the caller just read it
        if not header.decodable:
            raise TurboJpegError(f"not decoded by region: {header}")
        width, height = -(-header.width // scale), -(-header.height // scale)
        mcu = -(-_MCU_WIDTH[header.subsampling] // scale)  # TJSCALED(tjMCUWidth[subsampling], 1/scale)
        left = max(0, window.left - 1) // mcu * mcu  # region edges aligned to the iMCU grid, one pixel to spare
        right = min(width, window.left + window.width + 1)
        top, bottom = max(0, window.top - 1), min(height, window.top + window.height + 1)
        out = np.empty((bottom - top, right - left, 3), np.uint8)
        if scale != self._scale:
            self._check(self.lib.tj3SetScalingFactor(self.handle, _Scale(1, scale)), "tj3SetScalingFactor")
            self._scale = scale
        self._check(self.lib.tj3SetCroppingRegion(self.handle, _Region(left, top, right - left, bottom - top)),
                    "tj3SetCroppingRegion")
        # Warnings too (corrupt data libjpeg skipped or filled, a truncated file): the caller lets OpenCV decide, whose
        # verdict on such files (an image, or unreadable when truncated) is the reference pipeline's.
        self._parsed = None  # decompressing ends the handle's hold on the header
        self._check(self.lib.tj3Decompress8(self.handle, data, len(data), out.ctypes.data, 0, _PF_BGR),
                    "tj3Decompress8")
        rows, cols = slice(window.top - top, window.top - top + window.height), slice(
            window.left - left, window.left - left + window.width)
        return torch.from_numpy(out).permute(2, 0, 1)[:, rows, cols]

    def _check(self, status: int, function: str) -> None:
        if status != 0:
            raise TurboJpegError(f"{function}: {self.lib.tj3GetErrorStr(self.handle).decode(errors='replace')}")


_local = threading.local()


def decoder() -> TurboJpeg:
    """This process's and thread's :class:`TurboJpeg` (created on first use after a fork).

    Raises:
        RuntimeError: no TurboJPEG >= 3.0 is installed (:data:`HOW_TO_GET`).
    """
    current = getattr(_local, "decoder", None)
    if current is None or current.pid != os.getpid():
        found = library()
        if found is None:
            raise RuntimeError(f"no TurboJPEG >= 3.0 library found; {HOW_TO_GET}")
        current = _local.decoder = TurboJpeg(found[0])
    return current
