"""Class-balanced, seeded subsets of a labelled dataset, for runs that see a few images of every class.

mmengine's ``dataset.indices=N`` keeps the first ``N`` samples; a dataset listed class folder by class folder then
gives ``N`` images of its first class. A config names a function instead, and
:func:`mim_zoo.engine.config.prepare_config` replaces the spec by the indices it returns, computed from the labels of
the dataset itself (so the indices follow the dataset's own sample order)::

    train_dataloader = dict(dataset=dict(type=CustomDataset, ...,
                                         indices=dict(type=class_balanced_indices, per_class=8, seed=0)))
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def class_balanced_indices(labels: Sequence[int], per_class: int, seed: int = 0,
                           class_names: Sequence[str] | None = None) -> list[int]:
    """``per_class`` indices of every label in ``labels``, drawn without replacement; ascending.

    The same ``labels``, ``per_class`` and ``seed`` give the same indices (numpy's PCG64, one draw per class in label
    order). ``class_names`` only names a class in the error for one with too few samples.
    """
    if not isinstance(per_class, int) or per_class < 1:
        raise ValueError(f"class_balanced_indices: per_class must be a positive integer, got {per_class!r}")
    labels = np.asarray(labels)
    if labels.ndim != 1 or not len(labels):
        raise ValueError("class_balanced_indices needs one integer label per sample of a non-empty dataset")
    rng = np.random.default_rng(seed)
    chosen = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        if len(members) < per_class:
            name = class_names[label] if class_names is not None else f"label {label}"
            raise ValueError(f"class_balanced_indices: class {name!r} has {len(members)} samples, fewer than "
                             f"per_class={per_class}")
        chosen.append(rng.choice(members, size=per_class, replace=False))
    return sorted(int(i) for i in np.concatenate(chosen))
