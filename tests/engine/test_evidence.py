"""The evidence a run carries: config hash, commit, versions, device, and the pretraining run's images/s, FLOPs and
utilisation, in every checkpoint and across a resume."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

from mim_zoo.engine.evidence import config_hash, git_commit, pretraining_evidence, summarise_sessions
from mim_zoo.engine.flops import flops_per_image

from ..conftest import REPO
from ..downstream.conftest import load_tool
from ..helpers.training import load_checkpoint, single_thread

RUN = ["train_dataloader.dataset.indices=32", "default_hooks.checkpoint.interval=1"]  # 2 iterations of 16 per epoch


def train(work_dir: Path, epochs: int, *extra: str) -> None:
    with single_thread():
        load_tool("train").main(["configs/mae/tiny_cpu.py", "--work-dir", str(work_dir), *extra, "--cfg-options",
                                 *RUN, f"train_cfg.max_epochs={epochs}"])


@pytest.fixture(scope="module")
def resumed(tmp_path_factory) -> Path:
    """1 epoch, then resumed to 2: two sessions."""
    work_dir = tmp_path_factory.mktemp("evidence")
    train(work_dir, 1)
    train(work_dir, 2, "--resume")
    return work_dir


def test_a_checkpoint_records_the_config_commit_stack_and_device(resumed):
    evidence = load_checkpoint(resumed / "epoch_1.pth")["meta"]["evidence"]
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    assert evidence["git_commit"].split("+")[0] == head
    assert len(evidence["config_hash"]) == 12 and int(evidence["config_hash"], 16) >= 0
    assert evidence["packages"]["torch"] == torch.__version__.split("+")[0]
    assert {"timm", "mmengine", "mmcv", "mmpretrain", "mmsegmentation", "mmdet", "mim_zoo"} <= set(evidence["packages"])
    assert evidence["device"]["type"] == "cpu" and evidence["device"]["count"] == 1 and evidence["device"]["name"]


def test_the_pretraining_speed_is_images_flops_and_utilisation_of_the_real_step(resumed):
    first = load_checkpoint(resumed / "epoch_1.pth")["meta"]["evidence"]["sessions"][0]
    assert (first["start_epoch"], first["end_epoch"], first["end_iter"], first["images"]) == (0, 1, 2, 32)
    assert first["img_per_s"] == pytest.approx(first["images"] / first["seconds"])
    # the FLOPs of one training step of the tiny MAE, counted here on a freshly built model
    import mim_zoo  # noqa: F401
    from mim_zoo.registry import MODELS

    model = MODELS.build(Config.fromfile("configs/mae/tiny_cpu.py").model).train()
    images = torch.randn(2, 3, 32, 32)
    expected = flops_per_image(lambda x: sum(v for k, v in model(x, mode="loss").items() if "loss" in k), images)
    assert first["flops_per_image"] == expected == pytest.approx(18.82e6, rel=1e-3)
    assert first["utilisation"] == pytest.approx(first["img_per_s"] * expected / first["peak_flops_per_s"])
    assert 0 < first["utilisation"] < 1


def test_a_resumed_run_appends_a_session_and_sums_them(resumed):
    evidence = pretraining_evidence(load_checkpoint(resumed / "epoch_2.pth"))
    sessions = evidence["sessions"]
    assert [(s["start_epoch"], s["end_epoch"]) for s in sessions] == [(0, 1), (1, 2)]
    assert evidence["images"] == 64 and evidence["wall_s"] == pytest.approx(sum(s["seconds"] for s in sessions))
    assert evidence["img_per_s"] == pytest.approx(64 / evidence["wall_s"])
    assert json.loads((resumed / "evidence.json").read_text())["sessions"] == sessions


def test_the_config_hash_ignores_where_a_run_goes_but_not_what_it_computes():
    cfg = Config.fromfile("configs/mae/tiny_cpu.py")
    moved = Config.fromfile("configs/mae/tiny_cpu.py")
    moved.work_dir, moved.launcher = "/elsewhere", "pytorch"
    assert config_hash(cfg) == config_hash(moved)
    moved.optim_wrapper.optimizer.lr = 1.0
    assert config_hash(cfg) != config_hash(moved)
    reseeded = Config.fromfile("configs/mae/tiny_cpu.py")
    reseeded.randomness.seed = 1
    assert config_hash(cfg) != config_hash(reseeded)


def test_outside_a_checkout_there_is_no_commit(tmp_path):
    assert git_commit(tmp_path) is None


def test_sessions_are_summed_and_utilisation_weighted_by_time():
    sessions = [dict(images=100, seconds=10.0, utilisation=0.5), dict(images=300, seconds=30.0, utilisation=0.1),
                dict(images=10, seconds=5.0, utilisation=None)]
    assert summarise_sessions(sessions) == dict(img_per_s=410 / 45, utilisation=(5 + 3) / 40, wall_s=45.0,
                                                images=410)
    assert pretraining_evidence({"meta": {}}) is None  # a checkpoint written without the hook
