"""Decoding on the device: a batch of JPEG files decoded by nvjpeg, cropped, resized and flipped on the GPU.

With ``pipeline_impl = "nvjpeg"`` the data workers only read each file and sample its crop box
(:class:`~mim_zoo.engine.pipeline.decode.DecodeRandomResizedCrop` with ``decode="device"``, then
:class:`~mim_zoo.engine.pipeline.decode.DeferredRandomFlip`); :class:`NvJpegDataPreprocessor` does the rest
where the model is. ``torchvision.io.decode_jpeg`` takes the whole batch in one call and, on a CUDA device, decodes it
with nvjpeg; on the CPU it runs torchvision's libjpeg-turbo decoder, which is how the tests run this code path.
:func:`collate_encoded` packs a batch's per-image tensors into one, so that a worker hands the main process one
shared-memory block per batch instead of one per image: with 2 workers the loader's CPU time per image went from 0.76
to 0.57 ms here (busy 2-core machine; ``benchmarks/pipeline.py``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from mmengine.dataset import pseudo_collate
from mmpretrain.models import SelfSupDataPreprocessor
from mmpretrain.structures import DataSample
from torch import Tensor
from torchvision.io import ImageReadMode, decode_jpeg

from ..transforms import CorruptImageError
from .geometry import CropBox, orient, resized_crop

_FLIP_DIMS = {"horizontal": (-1,), "vertical": (-2,), "diagonal": (-2, -1)}  # mmcv RandomFlip's directions


class NvJpegDataPreprocessor(SelfSupDataPreprocessor):
    """mmpretrain's ``SelfSupDataPreprocessor`` for a pipeline that leaves decoding to the device (named by class in
    the config, as its parent is: no entry in mim_zoo's ``MODELS``, which holds the plugin seams).

    Takes :func:`collate_encoded`'s batch (or ``pseudo_collate``'s): per image, either the bytes of a JPEG (``[N]``
    uint8) or pixels the worker decoded because nvjpeg cannot (``[3, h, w]`` uint8 RGB: non-JPEG or CMYK files), and
    data samples carrying ``crop_box``, ``orientation``, ``img_shape``, ``interpolation`` and ``flip_direction``.
    Decodes the JPEGs in one ``decode_jpeg`` call on this module's device, orients, crops, resizes and flips each,
    and hands the uint8 batch, in mmcv's BGR order like a CPU pipeline's batch, to
    ``SelfSupDataPreprocessor.forward`` (``to_rgb``, float, normalisation): the same arguments and output as the CPU
    pipelines.
    """

    def forward(self, data: dict, training: bool = False) -> dict:
        inputs = data["inputs"]
        inputs = unpack(inputs) if isinstance(inputs, dict) else inputs
        images = decode_batch(inputs, data["data_samples"], self._device)  # [B, 3, h, w] uint8 RGB
        return super().forward({"inputs": images[:, [2, 1, 0]], "data_samples": data["data_samples"]}, training)


def collate_encoded(batch: Sequence[dict]) -> dict:
    """``pseudo_collate``, with the per-image tensors packed: ``inputs = {"packed": [sum of sizes] uint8, "shapes":
    [shape of each]}`` (:func:`unpack` gives them back as views)."""
    data = pseudo_collate(batch)
    items = data["inputs"]
    data["inputs"] = {"packed": torch.cat([item.reshape(-1) for item in items]),
                      "shapes": [tuple(item.shape) for item in items]}
    return data


def unpack(inputs: dict) -> list[Tensor]:
    """:func:`collate_encoded`'s ``inputs`` -> the per-image tensors (views of the packed one)."""
    parts = inputs["packed"].split([math.prod(shape) for shape in inputs["shapes"]])
    return [part.view(shape) for part, shape in zip(parts, inputs["shapes"], strict=True)]


def decode_batch(inputs: Sequence[Tensor], samples: Sequence[DataSample], device: torch.device) -> Tensor:
    """Per-image bytes or pixels and their data samples -> ``[B, 3, h, w]`` uint8 RGB on ``device``."""
    encoded = [i for i, item in enumerate(inputs) if item.ndim == 1]
    jpegs = decode_jpegs([inputs[i] for i in encoded], [samples[i] for i in encoded], device)
    decoded = dict(zip(encoded, jpegs, strict=True))
    images = []
    for i, (item, sample) in enumerate(zip(inputs, samples, strict=True)):
        if i in decoded:
            image = resized_crop(orient(decoded[i], sample.orientation), CropBox(*sample.crop_box),
                                 tuple(sample.img_shape), sample.interpolation)
        else:
            image = item.to(device, non_blocking=True)
        direction = sample.get("flip_direction")
        images.append(image.flip(_FLIP_DIMS[direction]) if direction else image)
    return torch.stack(images)


def decode_jpegs(data: list[Tensor], samples: Sequence[DataSample], device: torch.device) -> list[Tensor]:
    """``decode_jpeg`` of a list of JPEG byte tensors (on the CPU) to RGB on ``device``; a file that fails is named."""
    if not data:
        return []
    try:
        return decode_jpeg(data, mode=ImageReadMode.RGB, device=device)
    except RuntimeError as err:
        bad = [sample.img_path for item, sample in zip(data, samples, strict=True) if not _decodes(item, device)]
        raise CorruptImageError(
            f"cannot decode training image(s) {bad or [s.img_path for s in samples]} on {device} ({err}). Replace or "
            "delete them, or train with pipeline_impl='fast', whose workers can skip unreadable files "
            "(on_corrupt='skip')") from err


def _decodes(item: Tensor, device: torch.device) -> bool:
    try:
        decode_jpeg(item, mode=ImageReadMode.RGB, device=device)
    except RuntimeError:
        return False
    return True
