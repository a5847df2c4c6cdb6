"""The embedded default dataset: procedurally drawn shapes, written as real image files in ImageNet's folder layout.

``root/{train,val}/<class>/<class>_<index>.JPEG`` (read by mmpretrain's ``CustomDataset`` / ``ImageNet``). Every
image draws a shape class (circle, square, triangle, ...) at a random position, size and rotation, in random
foreground and background colours with noise, so that neither colour nor mean brightness identifies the class:
a linear probe separates the classes only with features that see shape.

Generation is deterministic for a seed and idempotent: a finished dataset carries a ``.complete`` stamp with its
parameters and is not rewritten.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

CLASSES = ("circle", "square", "triangle", "cross", "ring", "hstripes", "vstripes", "checker", "star", "dots")


def _random_colour(rng: random.Random) -> tuple[int, int, int]:
    return tuple(rng.randint(0, 255) for _ in range(3))


def _contrasting(rng: random.Random, other: tuple[int, int, int]) -> tuple[int, int, int]:
    """A random colour whose mean absolute channel difference to ``other`` exceeds 60, so the shape stays visible."""
    for _ in range(100):
        colour = _random_colour(rng)
        if sum(abs(a - b) for a, b in zip(colour, other, strict=True)) / 3 > 60:
            return colour
    return tuple(255 - c for c in other)


def _polygon(cx: float, cy: float, radius: float, sides: int, angle: float, inner: float | None = None) -> list:
    points = []
    steps = sides * (2 if inner else 1)
    for k in range(steps):
        r = radius if (inner is None or k % 2 == 0) else radius * inner
        a = angle + 2 * math.pi * k / steps
        points.append((cx + r * math.cos(a), cy + r * math.sin(a)))
    return points


def draw_shape(cls: str, size: int, rng: random.Random) -> Image.Image:
    """One ``size x size`` RGB image of class ``cls`` (drawn at 4x and downsampled for anti-aliasing)."""
    scale = 4
    big = size * scale
    bg = _random_colour(rng)
    fg = _contrasting(rng, bg)
    img = Image.new("RGB", (big, big), bg)
    draw = ImageDraw.Draw(img)
    radius = rng.uniform(0.22, 0.4) * big
    cx, cy = (rng.uniform(radius, big - radius) for _ in range(2))
    angle = rng.uniform(0, 2 * math.pi)
    box = (cx - radius, cy - radius, cx + radius, cy + radius)
    period = rng.uniform(0.12, 0.2) * big
    if cls == "circle":
        draw.ellipse(box, fill=fg)
    elif cls == "ring":
        draw.ellipse(box, outline=fg, width=int(radius * 0.35))
    elif cls == "square":
        draw.polygon(_polygon(cx, cy, radius, 4, angle), fill=fg)
    elif cls == "triangle":
        draw.polygon(_polygon(cx, cy, radius, 3, angle), fill=fg)
    elif cls == "star":
        draw.polygon(_polygon(cx, cy, radius, 5, angle, inner=0.45), fill=fg)
    elif cls == "cross":
        w = radius * 0.35
        draw.rectangle((cx - radius, cy - w, cx + radius, cy + w), fill=fg)
        draw.rectangle((cx - w, cy - radius, cx + w, cy + radius), fill=fg)
    elif cls in ("hstripes", "vstripes"):
        offset = rng.uniform(0, period)
        for k in range(-1, int(big / period) + 2):
            lo = k * period + offset
            rect = (0, lo, big, lo + period / 2) if cls == "hstripes" else (lo, 0, lo + period / 2, big)
            draw.rectangle(rect, fill=fg)
    elif cls == "checker":
        for i in range(int(big / period) + 1):
            for j in range(int(big / period) + 1):
                if (i + j) % 2 == 0:
                    draw.rectangle((i * period, j * period, (i + 1) * period, (j + 1) * period), fill=fg)
    elif cls == "dots":
        dot = period * 0.3
        for i in range(int(big / period) + 1):
            for j in range(int(big / period) + 1):
                x, y = (i + 0.5) * period, (j + 0.5) * period
                draw.ellipse((x - dot, y - dot, x + dot, y + dot), fill=fg)
    else:
        raise ValueError(f"unknown shape class {cls!r}; known: {', '.join(CLASSES)}")
    img = img.filter(ImageFilter.GaussianBlur(radius=rng.uniform(0, 1.5) * scale / 2))
    img = img.resize((size, size), Image.BICUBIC)
    noise = Image.effect_noise((size, size), rng.uniform(5, 25)).convert("RGB")
    return Image.blend(img, noise, 0.12)


def make_shapes_dataset(root: str | os.PathLike, num_train_per_class: int = 200, num_val_per_class: int = 50,
                        size: int = 32, seed: int = 0, classes: tuple[str, ...] = CLASSES) -> Path:
    """Write (once) the shapes dataset in ImageNet's folder layout and return its root.

    Args:
        root: output directory; ``root/train/<class>/*.JPEG`` and ``root/val/<class>/*.JPEG``.
        num_train_per_class, num_val_per_class: images per class and split.
        size: image side in pixels.
        seed: RNG seed; the same arguments always give the same files.
    """
    root = Path(root)
    params = dict(num_train_per_class=num_train_per_class, num_val_per_class=num_val_per_class, size=size,
                  seed=seed, classes=list(classes))
    stamp = root / ".complete"
    if stamp.is_file():
        if json.loads(stamp.read_text()) == params:
            return root
        for split in ("train", "val"):  # made by us with other parameters: regenerate
            shutil.rmtree(root / split, ignore_errors=True)
        stamp.unlink()
    for split, count, split_seed in (("train", num_train_per_class, seed), ("val", num_val_per_class, seed + 1)):
        rng = random.Random(split_seed)
        for cls in classes:
            folder = root / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(count):
                draw_shape(cls, size, rng).save(folder / f"{cls}_{index:05d}.JPEG", quality=95)
    stamp.write_text(json.dumps(params))
    return root
