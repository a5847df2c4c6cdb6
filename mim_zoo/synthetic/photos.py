"""Photograph-like JPEG files of ImageNet's size distribution, for benchmarking and testing the input pipeline.

Decoding cost depends on what a file holds: its pixel count, and its entropy-coded size (Huffman decoding is most of
a libjpeg-turbo decode at ImageNet's ~4.5 bits per pixel). Flat colours would be decoded several times faster than
photographs. :func:`natural_image` therefore draws a dead-leaves scene (occluding ellipses with a power-law size
distribution, the classic model of natural-image statistics: Lee, Mumford & Huang, IJCV 2001), each leaf shaded
and textured with 1/f noise (some with soft, defocused edges), on a smooth background, plus sensor noise.
:func:`imagenet_size` draws sizes as ImageNet-1k train's: most files have a 500-pixel long side with 4:3 or 3:2
aspect, the rest spread from about 150 to 2,500 pixels. At quality 90 the files average about 110 KB, ImageNet's mean
(about 140 GB over 1.28 M files).

:func:`write_photo_folder` writes them in ImageNet's folder layout, deterministically for a seed and once (a
``.complete`` stamp with the parameters).
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
from PIL import Image


def imagenet_size(rng: np.random.Generator) -> tuple[int, int]:
    """``(height, width)`` drawn from an approximation of ImageNet-1k train's distribution."""
    if rng.random() < 0.7:
        long_side = 500.0
    else:
        long_side = float(np.clip(math.exp(rng.normal(math.log(450), 0.45)), 150, 2500))
    aspect = rng.choice([4 / 3, 3 / 2, 1.0, rng.uniform(1.0, 2.0)], p=[0.55, 0.2, 0.1, 0.15])
    short_side = long_side / aspect
    landscape = rng.random() < 0.78
    height, width = (short_side, long_side) if landscape else (long_side, short_side)
    return max(16, round(height)), max(16, round(width))


def _one_over_f(rng: np.random.Generator, height: int, width: int, alpha: float) -> np.ndarray:
    """Unit-variance noise with amplitude spectrum ``1 / f^alpha`` (alpha = 1: natural images' spectrum)."""
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    freq = np.sqrt(fx * fx + fy * fy)
    freq[0, 0] = np.inf
    spectrum = freq ** -alpha * np.exp(2j * np.pi * rng.random(freq.shape))
    noise = np.fft.irfft2(spectrum, s=(height, width))
    return (noise / noise.std()).astype(np.float32)


def natural_image(rng: np.random.Generator, height: int, width: int, detail: float = 1.8,
                  noise: float = 3.0, cover: float = 4.0) -> np.ndarray:
    """A photograph-like ``[height, width, 3]`` uint8 RGB image (see the module docstring).

    Args:
        detail: texture amplitude (JPEG size grows with it).
        noise: standard deviation of the sensor noise, in grey levels.
        cover: total leaf area / image area (about how many leaves lie over each pixel).
    """
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    top, bottom = rng.uniform(30, 220, 3), rng.uniform(30, 220, 3)
    ramp = (yy / height)[..., None]
    img = (top * (1 - ramp) + bottom * ramp).astype(np.float32)
    texture = np.full((height, width), rng.uniform(1, 6), np.float32)
    for radius in _leaf_radii(rng, height, width, cover):
        _draw_leaf(rng, img, texture, yy, xx, radius)
    grain = _one_over_f(rng, height, width, 1.0) + 0.8 * _one_over_f(rng, height, width, 0.3)
    img += (detail * texture * grain)[..., None] * rng.uniform(0.8, 1.2, 3).astype(np.float32)
    img += rng.normal(0, noise, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def _leaf_radii(rng: np.random.Generator, height: int, width: int, cover: float) -> np.ndarray:
    """Radii with density ~ r^-2.5 on [5, 0.6 * long side], until their discs cover ``cover`` times the image;
    largest first (the back of the scene)."""
    rmin, rmax = 5.0, 0.6 * max(height, width)
    radii = (rmin ** -1.5 + rng.random(4000) * (rmax ** -1.5 - rmin ** -1.5)) ** (-1 / 1.5)
    count = int(np.searchsorted(np.cumsum(np.pi * radii ** 2), cover * height * width)) + 1
    return np.sort(radii[:count])[::-1]


def _draw_leaf(rng: np.random.Generator, img: np.ndarray, texture: np.ndarray, yy: np.ndarray, xx: np.ndarray,
               radius: float) -> None:
    """Paint one shaded, rotated ellipse (sharp or defocused edge) over ``img`` and its texture amplitude."""
    height, width = texture.shape
    cy, cx = rng.uniform(0, height), rng.uniform(0, width)
    squash, angle = rng.uniform(0.4, 1.6), rng.uniform(0, np.pi)
    extent = radius * max(squash, 1.0) + 2
    y0, y1 = int(max(0, cy - extent)), int(min(height, cy + extent))
    x0, x1 = int(max(0, cx - extent)), int(min(width, cx + extent))
    if y0 >= y1 or x0 >= x1:
        return
    dy, dx = yy[y0:y1, x0:x1] - cy, xx[y0:y1, x0:x1] - cx
    u = dx * math.cos(angle) + dy * math.sin(angle)
    v = (dy * math.cos(angle) - dx * math.sin(angle)) / squash
    edge = rng.choice([0.7, 0.7, 0.7, 3.0, 8.0])  # mostly sharp, some out of focus
    alpha = np.clip((radius - np.sqrt(u * u + v * v)) / edge + 0.5, 0, 1)
    chroma = rng.normal(0, 25, 3)
    colour = np.clip(rng.uniform(15, 240) + chroma - chroma.mean(), 0, 255)
    slope = rng.normal(0, 30, 2) / radius  # shading across the leaf
    region = img[y0:y1, x0:x1]
    region += (colour + (slope[0] * u + slope[1] * v)[..., None] - region) * alpha[..., None]
    amplitude = math.exp(rng.uniform(0, math.log(30)))
    texture[y0:y1, x0:x1] += (amplitude - texture[y0:y1, x0:x1]) * alpha


def write_photo_folder(root: str | os.PathLike, num_images: int, seed: int = 0, quality: int = 90,
                       num_classes: int = 4, max_side: int | None = None) -> list[Path]:
    """Write ``num_images`` photograph-like JPEGs as ``root/train/n<8 digits>/<index>.JPEG`` (ImageNet's layout,
    ``num_classes`` folders), unless a finished folder with the same parameters is there. Returns the files.

    ``max_side`` shrinks every drawn size to fit (tests: small files, same aspect and content statistics).
    """
    root = Path(root)
    params = {"num_images": num_images, "seed": seed, "quality": quality, "num_classes": num_classes,
              "max_side": max_side, "version": 1}
    stamp = root / ".complete"
    files = [root / "train" / f"n{index % num_classes:08d}" / f"{index:06d}.JPEG" for index in range(num_images)]
    if stamp.is_file() and json.loads(stamp.read_text()) == params:
        return files
    shutil.rmtree(root / "train", ignore_errors=True)
    for index, path in enumerate(files):
        rng = np.random.default_rng([seed, index])
        height, width = imagenet_size(rng)
        if max_side and max(height, width) > max_side:
            shrink = max_side / max(height, width)
            height, width = max(8, round(height * shrink)), max(8, round(width * shrink))
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(natural_image(rng, height, width, detail=math.exp(rng.uniform(math.log(1.6), math.log(3.6)))))\
            .save(path, "JPEG", quality=quality)
    stamp.write_text(json.dumps(params))
    return files
