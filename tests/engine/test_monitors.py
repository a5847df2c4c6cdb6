"""The online representation monitors: real tiny runs through tools/train.py --monitors on labelled splits whose k-NN
answer is known, the logs they write, training left untouched, and the configs that switch them on."""

from __future__ import annotations

import glob
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config
from PIL import Image

from mim_zoo.engine.hooks.monitors import configure_monitors, interleave
from mim_zoo.engine.labelled import class_balanced_subset

from ..conftest import CATALOGUE
from ..downstream.conftest import load_tool
from ..helpers.training import load_checkpoint, single_thread

COLOURS = {"blue": (20, 40, 230), "green": (30, 200, 40), "red": (220, 30, 30), "yellow": (240, 230, 20)}
RUN = ["train_cfg.max_epochs=2", "train_dataloader.dataset.indices=16", "default_hooks.checkpoint.interval=2"]


def write_colour_split(root: Path, split: str, per_class: int, swap: bool = False, seed: int = 0) -> None:
    """``root/split/<colour>/*.JPEG``: 32-px images of one colour each (plus a little noise), so that any encoder's
    features separate the classes; ``swap`` files every image under the *other* colour of its pair (blue <-> green,
    red <-> yellow), which makes every query's neighbours carry another label."""
    rng = np.random.default_rng(seed)
    names = list(COLOURS)
    for i, name in enumerate(names):
        folder = root / split / (names[i ^ 1] if swap else name)
        folder.mkdir(parents=True, exist_ok=True)
        for j in range(per_class):
            pixels = np.clip(np.array(COLOURS[name]) + rng.normal(0, 4, (32, 32, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{name}_{j}.JPEG", quality=95)


def train(work_dir: Path, *options: str, monitors: bool = True) -> None:
    args = ["configs/mae/tiny_cpu.py", "--work-dir", str(work_dir), "--cfg-options", *RUN, *options]
    with single_thread():
        load_tool("train").main([*args, "--monitors"] if monitors else args)


def monitor_options(root: Path, **hook: object) -> list[str]:
    return [f"monitors.bank.dataset.data_root={root}", f"monitors.query.dataset.data_root={root}",
            *(f"monitors.{k}={v}" for k, v in hook.items())]


def logged(work_dir: Path) -> tuple[str, list[dict]]:
    """The text log and the monitor records of the JSON log of a run."""
    log = Path(glob.glob(str(work_dir / "*" / "*.log"))[0]).read_text()
    records = [json.loads(line) for line in open(glob.glob(str(work_dir / "*" / "vis_data" / "2*.json"))[0])]
    return log, [r for r in records if "monitor/knn_top1" in r]


@pytest.fixture(scope="module")
def colour_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("colours")
    write_colour_split(root, "train", per_class=6)
    write_colour_split(root, "val", per_class=3, seed=1)
    write_colour_split(root / "swapped", "train", per_class=6)
    write_colour_split(root / "swapped", "val", per_class=3, swap=True, seed=1)
    return root


@pytest.fixture(scope="module")
def monitored_run(colour_root, tmp_path_factory) -> Path:
    work_dir = tmp_path_factory.mktemp("monitored")
    train(work_dir, *monitor_options(colour_root, k=5))
    return work_dir


def test_knn_of_a_separable_split_is_exact_at_every_evaluation(monitored_run):
    log, records = logged(monitored_run)
    assert [r["step"] for r in records] == [0, 1, 2]  # at initialisation and after each of the 2 one-iteration epochs
    assert all(r["monitor/knn_top1"] == 1.0 for r in records)
    assert "monitor, epoch 0: k-NN top-1 100.00% (k=5, 24 bank / 12 query images)" in log
    assert "monitor, epoch 2: k-NN top-1 100.00%" in log


def test_knn_of_queries_filed_under_another_class_is_zero(colour_root, tmp_path):
    train(tmp_path, *monitor_options(colour_root / "swapped", k=5, at_start=False), "train_cfg.max_epochs=1")
    _, records = logged(tmp_path)
    assert [r["monitor/knn_top1"] for r in records] == [0.0]


def test_rank_spread_and_cost_are_logged_to_json_and_tensorboard(monitored_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, records = logged(monitored_run)
    for record in records:
        assert 1.0 <= record["monitor/rankme"] <= 64.0  # between one direction and the 64-d width
        assert 0.0 <= record["monitor/feature_std"] and record["monitor/seconds"] > 0
    assert "monitor/epoch_fraction" not in records[0] and records[1]["monitor/epoch_fraction"] > 0
    events = EventAccumulator(glob.glob(str(monitored_run / "*" / "vis_data"))[0])
    events.Reload()
    assert {"monitor/knn_top1", "monitor/rankme", "monitor/feature_std"} <= set(events.Tags()["scalars"])
    assert [e.value for e in events.Scalars("monitor/knn_top1")] == [1.0, 1.0, 1.0]


def test_a_monitored_run_trains_exactly_as_an_unmonitored_one(monitored_run, tmp_path):
    train(tmp_path, monitors=False)
    plain, monitored = load_checkpoint(tmp_path / "epoch_2.pth"), load_checkpoint(monitored_run / "epoch_2.pth")
    assert plain["state_dict"].keys() == monitored["state_dict"].keys()
    assert all(torch.equal(v, monitored["state_dict"][k]) for k, v in plain["state_dict"].items())


def test_paper_size_configs_monitor_a_fixed_tenth_of_imagenet_and_tiny_ones_only_when_asked():
    for path in CATALOGUE.configs(scale="base") + CATALOGUE.configs(scale="large"):
        cfg = Config.fromfile(str(path))
        assert cfg.monitors.enabled, path
        assert (cfg.monitors.bank.dataset.split, cfg.monitors.bank.per_class) == ("train", 128)  # 10% of train
        assert (cfg.monitors.query.dataset.split, cfg.monitors.query.per_class) == ("val", 5)  # 10% of val
        configure_monitors(cfg)
        assert cfg.default_hooks.monitors.type == "mim_zoo.RepresentationMonitorHook"
    for path in CATALOGUE.configs(scale="tiny"):
        cfg = Config.fromfile(str(path))
        configure_monitors(cfg)
        assert "monitors" not in cfg.default_hooks, path
        configure_monitors(cfg, enable=True)
        assert cfg.default_hooks.monitors.query.dataset.data_prefix == "val", path  # the held-out split
    with pytest.raises(ValueError, match="states no labelled split"):
        configure_monitors(Config(dict(default_hooks={})), enable=True)


def test_subsets_are_class_balanced_fixed_and_refuse_small_classes():
    labels = np.repeat(np.arange(3), [5, 7, 6])
    picked = class_balanced_subset(labels, per_class=4, seed=0)
    assert picked == sorted(picked) and np.bincount(labels[picked]).tolist() == [4, 4, 4]
    assert picked == class_balanced_subset(labels, per_class=4, seed=0) != class_balanced_subset(labels, 4, seed=1)
    with pytest.raises(ValueError, match="labelled split: class 0 has 5 images, fewer than per_class=6"):
        class_balanced_subset(labels, per_class=6)


def test_ranks_shares_are_put_back_in_dataset_order():
    # DefaultSampler(shuffle=False) on 5 samples and 2 ranks: rank 0 gets 0, 2, 4; rank 1 gets 1, 3 and pads with 0
    parts = [torch.tensor([[0.0], [2.0], [4.0]]), torch.tensor([[1.0], [3.0], [0.0]])]
    assert interleave(parts, size=5).flatten().tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_the_hook_refuses_bad_settings():
    from mim_zoo.engine.hooks import RepresentationMonitorHook

    with pytest.raises(ValueError, match="precision must be one of"):
        RepresentationMonitorHook(bank={}, query={}, precision="fp16")
    with pytest.raises(ValueError, match="interval must be a positive number of epochs"):
        RepresentationMonitorHook(bank={}, query={}, interval=0)
