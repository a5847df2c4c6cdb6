"""Tiny scene datasets in the real ADE20K and COCO layouts, for the CPU twins of the downstream benchmarks.

Every image is a noisy background with up to three non-overlapping shapes (circle, square, triangle) of random
size, rotation and colour, one per cell of a 2 x 2 grid, so that the class is told by shape, not by colour or
position. The label maps and polygons are drawn from the same vertices as the pixels.

* :func:`make_toy_ade20k`: ``root/images/{training,validation}/ADE_*.jpg`` and
  ``root/annotations/{training,validation}/ADE_*.png`` with ADE20K's label convention (0 = unlabelled, ``k`` = class
  ``k - 1`` of the 150 after mmseg's ``reduce_zero_label``): background ``wall`` (1), shapes ``building`` (2),
  ``sky`` (3), ``floor`` (4), a 2-px unlabelled frame.
* :func:`make_toy_coco`: ``root/{train2017,val2017}/*.jpg`` and ``root/annotations/instances_{train,val}2017.json``
  with all 80 COCO categories (their real ids) and polygon masks; the shapes are ``sports ball`` (circle),
  ``tv`` (square) and ``kite`` (triangle).

Both are deterministic for a seed and written once (a ``.complete`` stamp records the arguments).
"""

from __future__ import annotations

import json
import math
import random
import shutil
from pathlib import Path

from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle")
ADE_SHAPE_LABELS = {"circle": 2, "square": 3, "triangle": 4}  # PNG values; wall = 1, unlabelled = 0
COCO_SHAPE_CATEGORIES = {"circle": "sports ball", "square": "tv", "triangle": "kite"}
_COCO_MISSING_IDS = {12, 26, 29, 30, 45, 66, 68, 69, 71, 83}  # COCO's 80 categories use ids 1..90 without these


def coco_categories() -> list[dict]:
    """COCO's 80 categories with their real ids (``instances_*.json['categories']``)."""
    from mmdet.datasets import CocoDataset

    ids = [i for i in range(1, 91) if i not in _COCO_MISSING_IDS]
    names = CocoDataset.METAINFO["classes"]
    return [dict(id=i, name=name, supercategory="toy") for i, name in zip(ids, names, strict=True)]


def _colour(rng: random.Random, avoid: tuple[int, int, int] | None = None) -> tuple[int, int, int]:
    for _ in range(100):
        colour = tuple(rng.randint(0, 255) for _ in range(3))
        if avoid is None or sum(abs(a - b) for a, b in zip(colour, avoid, strict=True)) / 3 > 60:
            return colour
    return tuple(255 - c for c in avoid)


def _vertices(shape: str, cx: float, cy: float, radius: float, angle: float) -> list[tuple[float, float]]:
    sides = {"circle": 24, "square": 4, "triangle": 3}[shape]
    angles = [angle + 2 * math.pi * k / sides for k in range(sides)]
    return [(cx + radius * math.cos(a), cy + radius * math.sin(a)) for a in angles]


def draw_scene(size: int, rng: random.Random) -> tuple[Image.Image, list[tuple[str, list[tuple[float, float]]]]]:
    """One ``size x size`` RGB scene and its objects ``[(shape, polygon)]`` (1 to 3, one per grid cell)."""
    background = _colour(rng)
    image = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(image)
    cell = size / 2
    objects = []
    for index in rng.sample(range(4), rng.randint(1, 3)):
        shape = rng.choice(SHAPES)
        radius = rng.uniform(0.28, 0.45) * cell
        cx = (index % 2) * cell + rng.uniform(radius, cell - radius)
        cy = (index // 2) * cell + rng.uniform(radius, cell - radius)
        polygon = _vertices(shape, cx, cy, radius, rng.uniform(0, 2 * math.pi))
        draw.polygon(polygon, fill=_colour(rng, background))
        objects.append((shape, polygon))
    noise = Image.effect_noise((size, size), rng.uniform(5, 20)).convert("RGB")
    return Image.blend(image, noise, 0.1), objects


def _stamped(root: Path, params: dict, folders: tuple[str, ...]) -> bool:
    """True when ``root`` already holds a dataset made with ``params``; otherwise clear what is there."""
    stamp = root / ".complete"
    if stamp.is_file() and json.loads(stamp.read_text()) == params:
        return True
    for folder in folders:
        shutil.rmtree(root / folder, ignore_errors=True)
    return False


def make_toy_ade20k(root: str | Path, num_train: int = 16, num_val: int = 8, size: int = 64, seed: int = 0) -> Path:
    """Write (once) a toy ADE20K (``ADEChallengeData2016`` layout) under ``root``; return ``root``."""
    root = Path(root)
    params = dict(kind="ade20k", num_train=num_train, num_val=num_val, size=size, seed=seed)
    if _stamped(root, params, ("images", "annotations")):
        return root
    for split, count, split_seed in (("training", num_train, seed), ("validation", num_val, seed + 1)):
        rng = random.Random(split_seed)
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "annotations" / split).mkdir(parents=True, exist_ok=True)
        for index in range(count):
            image, objects = draw_scene(size, rng)
            label = Image.new("L", (size, size), 1)  # wall
            draw = ImageDraw.Draw(label)
            for shape, polygon in objects:
                draw.polygon(polygon, fill=ADE_SHAPE_LABELS[shape])
            draw.rectangle((0, 0, size - 1, size - 1), outline=0, width=2)  # unlabelled frame
            name = f"ADE_{split[:5] if split == 'training' else 'val'}_{index + 1:08d}"
            image.save(root / "images" / split / f"{name}.jpg", quality=95)
            label.save(root / "annotations" / split / f"{name}.png")
    (root / ".complete").write_text(json.dumps(params))
    return root


def _polygon_area(polygon: list[tuple[float, float]]) -> float:
    edges = zip(polygon, polygon[1:] + polygon[:1], strict=True)
    return abs(sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in edges)) / 2


def _coco_split(root: Path, split: str, count: int, size: int, rng: random.Random, categories: list[dict]) -> dict:
    ids = {c["name"]: c["id"] for c in categories}
    images, annotations = [], []
    (root / split).mkdir(parents=True, exist_ok=True)
    for index in range(count):
        image, objects = draw_scene(size, rng)
        file_name = f"{index + 1:012d}.jpg"
        image.save(root / split / file_name, quality=95)
        images.append(dict(id=index + 1, file_name=file_name, width=size, height=size))
        for shape, polygon in objects:
            xs, ys = [p[0] for p in polygon], [p[1] for p in polygon]
            annotations.append(dict(
                id=len(annotations) + 1, image_id=index + 1, category_id=ids[COCO_SHAPE_CATEGORIES[shape]],
                segmentation=[[round(v, 2) for point in polygon for v in point]], area=_polygon_area(polygon),
                bbox=[min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)], iscrowd=0))
    return dict(info=dict(description="mim_zoo toy COCO"), images=images, annotations=annotations,
                categories=categories)


def make_toy_coco(root: str | Path, num_train: int = 16, num_val: int = 8, size: int = 64, seed: int = 0) -> Path:
    """Write (once) a toy COCO (``train2017``/``val2017`` + ``annotations/instances_*.json``); return ``root``."""
    root = Path(root)
    params = dict(kind="coco", num_train=num_train, num_val=num_val, size=size, seed=seed)
    if _stamped(root, params, ("train2017", "val2017", "annotations")):
        return root
    categories = coco_categories()
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    for split, count, split_seed in (("train2017", num_train, seed), ("val2017", num_val, seed + 1)):
        data = _coco_split(root, split, count, size, random.Random(split_seed), categories)
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(data))
    (root / ".complete").write_text(json.dumps(params))
    return root


TOY_DATASETS = {"ade20k": make_toy_ade20k, "coco": make_toy_coco}


def make_toy_dataset(kind: str, **kwargs) -> Path:
    """``make_toy_ade20k`` or ``make_toy_coco`` by name (the ``toy_dataset`` entry of a tiny twin config)."""
    if kind not in TOY_DATASETS:
        raise ValueError(f"unknown toy dataset {kind!r}; known: {', '.join(TOY_DATASETS)}")
    return TOY_DATASETS[kind](**kwargs)
