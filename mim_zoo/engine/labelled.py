"""Labelled evaluation splits for the representation monitors and the depth probe: a dataloader config with an
optional fixed, class-balanced subset (``per_class``), its batches normalised as the model's data preprocessor does.

A split is ``dict(dataset=<labelled dataset config>, batch_size=..., num_workers=..., per_class=N)``; the dataset's
pipeline ends in ``PackInputs`` (uint8 images and ``gt_label`` data samples), and the loader never shuffles
(``DefaultSampler(shuffle=False)``: in a distributed run rank ``r`` of ``W`` gets samples ``r, r + W, ...``).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from mmengine.registry import DATASETS, DefaultScope
from mmengine.runner import Runner
from mmpretrain.models import SelfSupDataPreprocessor
from torch import Tensor, nn


def class_balanced_subset(labels: np.ndarray, per_class: int, seed: int = 0) -> list[int]:
    """``per_class`` indices of every label, drawn without replacement (numpy PCG64, one draw per class in label
    order), ascending: a fixed, documented subset of a labelled split."""
    rng = np.random.default_rng(seed)
    chosen = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        if len(members) < per_class:
            raise ValueError(f"labelled split: class {label} has {len(members)} images, fewer than "
                             f"per_class={per_class}")
        chosen.append(rng.choice(members, size=per_class, replace=False))
    return sorted(int(i) for i in np.concatenate(chosen))


def labelled_loader(split: dict, seed: int = 0, scope: str | None = None) -> Any:
    """The dataloader of a split config (module docstring). ``scope``: the registry scope the dataset's string types
    are looked up in (``"mmpretrain"`` for text configs; classes of pure-Python configs need none)."""
    spec = copy.deepcopy(dict(split))
    per_class = spec.pop("per_class", None)
    if scope is None:
        dataset = DATASETS.build(spec.pop("dataset"))
    else:
        with DefaultScope.overwrite_default_scope(scope):
            dataset = DATASETS.build(spec.pop("dataset"))
    if per_class is not None:
        dataset.get_subset_(class_balanced_subset(np.asarray(dataset.get_gt_labels()), per_class, seed))
    spec.setdefault("num_workers", 0)
    if not spec["num_workers"]:
        spec.pop("persistent_workers", None)
    spec.update(dataset=dataset, sampler=dict(type="DefaultSampler", shuffle=False),
                collate_fn=dict(type="default_collate"))
    return Runner.build_dataloader(spec, seed=seed)


def normalise(preprocessor: nn.Module, batch: dict) -> Tensor:
    """A batch through a data preprocessor: a ``SelfSupDataPreprocessor``'s own casting, channel order and
    normalisation (a subclass that decodes on the device, like the nvjpeg one, receives decoded images here)."""
    if isinstance(preprocessor, SelfSupDataPreprocessor):
        images = SelfSupDataPreprocessor.forward(preprocessor, batch, False)["inputs"]
    else:
        images = preprocessor(batch, False)["inputs"]
    return images[0] if isinstance(images, (list, tuple)) else images


def labelled_batches(loader: Any, preprocessor: nn.Module, labels: list[Tensor]) -> Iterator[Tensor]:
    """The normalised images of every batch of ``loader``; their labels are appended to ``labels`` as they pass."""
    for batch in loader:
        images = normalise(preprocessor, batch)
        labels.append(torch.cat([s.gt_label for s in batch["data_samples"]]).to(images.device))
        yield images
