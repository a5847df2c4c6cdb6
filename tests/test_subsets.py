"""Class-balanced, seeded subsets (mim_zoo/engine/subsets.py) and the tiny configs that train on one."""

from __future__ import annotations

from collections import Counter

import pytest
from mmengine.registry import DATASETS

from mim_zoo.engine.config import load_config, prepare_config
from mim_zoo.engine.subsets import class_balanced_indices

from .conftest import REPO

LABELS = [0] * 5 + [1] * 7 + [2] * 4 + [1] * 3  # unsorted, unequal classes


def test_every_class_in_equal_numbers_the_same_for_the_same_seed():
    chosen = class_balanced_indices(LABELS, per_class=3, seed=0)
    assert Counter(LABELS[i] for i in chosen) == {0: 3, 1: 3, 2: 3}
    assert chosen == sorted(set(chosen))  # distinct, ascending
    assert class_balanced_indices(LABELS, per_class=3, seed=0) == chosen
    assert len({tuple(class_balanced_indices(LABELS, per_class=3, seed=s)) for s in range(10)}) > 1
    # class 2 has exactly 4 samples: per_class=4 takes all of them
    assert {i for i in class_balanced_indices(LABELS, per_class=4, seed=5) if LABELS[i] == 2} == {12, 13, 14, 15}


def test_too_few_samples_or_a_bad_count_is_one_clear_error():
    with pytest.raises(ValueError, match=r"class 'star' has 4 samples, fewer than per_class=5"):
        class_balanced_indices(LABELS, per_class=5, class_names=["circle", "square", "star"])
    with pytest.raises(ValueError, match="per_class must be a positive integer"):
        class_balanced_indices(LABELS, per_class=0)


@pytest.mark.parametrize("algo", ["mae", "mixmae"])
def test_a_tiny_config_trains_on_every_class(algo):
    """The tiny configs used ``indices=64``: the first 64 files, all of class "checker". Now: 8 of each of the 10."""
    cfg = prepare_config(load_config(REPO / "configs" / algo / "tiny_cpu.py"))
    indices = cfg.train_dataloader.dataset.indices
    assert len(indices) == 80 and indices == prepare_config(load_config(REPO / "configs/mae/tiny_cpu.py")
                                                            ).train_dataloader.dataset.indices
    dataset = DATASETS.build({**cfg.train_dataloader.dataset, "pipeline": []})
    labels = Counter(dataset.get_data_info(i)["gt_label"] for i in range(len(dataset)))
    assert len(dataset) == 80 and sorted(labels.values()) == [8] * 10 and len(dataset.metainfo["classes"]) == 10
    unbalanced = DATASETS.build({**cfg.train_dataloader.dataset, "pipeline": [], "indices": 64})
    assert len({unbalanced.get_data_info(i)["gt_label"] for i in range(64)}) == 1  # what `indices=64` gave


def test_indices_none_or_an_int_keep_mmengine_meaning():
    whole = prepare_config(load_config(REPO / "configs/mae/tiny_cpu.py", {"train_dataloader.dataset.indices": None}))
    assert whole.train_dataloader.dataset.indices is None
    first = prepare_config(load_config(REPO / "configs/mae/tiny_cpu.py", {"train_dataloader.dataset.indices": 32}))
    assert first.train_dataloader.dataset.indices == 32
