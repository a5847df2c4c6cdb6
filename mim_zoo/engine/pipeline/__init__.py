"""The pretraining input pipeline: reading, cropping and decoding images at the speed a GPU consumes them.

* :class:`DecodeRandomResizedCrop` (``decode.py``): ``LoadImageFromFile`` + ``RandomResizedCrop`` in one step, with
  mmpretrain's crop distribution, decoding JPEGs at the smallest DCT scale the crop allows;
* :class:`DeferredRandomFlip`, :class:`PackEncodedInputs` and :class:`NvJpegDataPreprocessor` (``device.py``): the
  same, decoded by nvjpeg on the GPU;
* :func:`apply_pipeline_impl` (``switch.py``): the config's ``pipeline_impl`` switch, applied after overrides.

The geometry both share (crop boxes, EXIF orientation, DCT scales, the resize) is in ``geometry.py``; the optional
region decoder (libjpeg-turbo >= 3.0 through ``ctypes``: only the crop's pixels are decoded) in ``turbojpeg.py``.
"""

from .decode import DecodeRandomResizedCrop, DeferredRandomFlip, PackEncodedInputs, resolve_decoder
from .device import NvJpegDataPreprocessor, collate_encoded
from .geometry import (
    CropBox,
    dct_scale,
    decoded_window,
    orient,
    resize_window,
    resized_crop,
    scaled_resized_crop,
    stored_window,
)
from .switch import apply_pipeline_impl, default_workers, pipeline_key, resolve_workers, select_pipeline

__all__ = ["CropBox", "DecodeRandomResizedCrop", "DeferredRandomFlip", "NvJpegDataPreprocessor", "PackEncodedInputs",
           "apply_pipeline_impl", "collate_encoded", "dct_scale", "decoded_window", "default_workers", "orient",
           "pipeline_key", "resize_window", "resized_crop", "resolve_decoder", "resolve_workers", "scaled_resized_crop",
           "select_pipeline", "stored_window"]
