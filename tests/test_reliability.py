"""mim_zoo/engine/reliability.py: random states, atomic writes, resume-checkpoint lookup, checkpoint pruning order and
the stop on non-finite losses (the kill-and-resume runs are in test_resume.py)."""

from __future__ import annotations

import os
import os.path as osp
import random
import resource

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook

from mim_zoo.engine.config import prepare_config
from mim_zoo.engine.reliability import (
    NonFiniteLossError,
    capture_rng_state,
    checkpoint_is_complete,
    checkpoint_problem,
    find_resume_checkpoint,
    restore_rng_state,
    rng_isolated,
    write_atomic,
)

from .helpers.training import TRAIN, build_runner, run_python, short_schedule, single_thread, train_cli

CONFIG = "configs/mae/tiny_cpu.py"


def draws() -> tuple:
    return random.random(), float(np.random.rand()), float(np.random.randn()), torch.rand(3).tolist()


# --- random states -------------------------------------------------------------------------------------------------
def test_rng_state_round_trip_through_a_weights_only_checkpoint(tmp_path) -> None:
    torch.manual_seed(3)
    np.random.seed(3)
    random.seed(3)
    np.random.randn()  # leaves a cached gaussian in numpy's state
    path = tmp_path / "rng.pth"
    torch.save({"rng_state": capture_rng_state()}, path)
    expected = draws()
    restore_rng_state(torch.load(path, weights_only=True)["rng_state"])
    assert draws() == expected


def test_rng_isolated_repeats_its_draws_and_leaves_training_streams_alone() -> None:
    torch.manual_seed(0)
    before = capture_rng_state()
    with rng_isolated(seed=7):
        first = draws()
    with rng_isolated(seed=7):
        second = draws()
    assert first == second
    after_blocks = draws()
    restore_rng_state(before)
    assert draws() == after_blocks  # the blocks consumed nothing from the outer streams


# --- atomic writes and the resume lookup --------------------------------------------------------------------------
def test_write_atomic_keeps_the_old_file_when_the_write_fails(tmp_path) -> None:
    target = tmp_path / "epoch_1.pth"
    target.write_bytes(b"old complete checkpoint")
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, hard))  # a real failure: the kernel refuses byte 4097 (EFBIG)
    try:
        with pytest.raises(OSError):
            write_atomic(str(target), b"x" * 100_000)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert target.read_bytes() == b"old complete checkpoint"
    assert sorted(os.listdir(tmp_path)) == ["epoch_1.pth"]  # no temporary file left behind
    write_atomic(str(target), b"new")
    assert target.read_bytes() == b"new"


def save_checkpoint(path: str) -> None:
    torch.save({"meta": {"epoch": 1}, "state_dict": {"w": torch.arange(10_000.0)}}, path)


def truncate(path: str) -> None:
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])


def test_find_resume_checkpoint_falls_back_past_a_truncated_file(tmp_path) -> None:
    work_dir = str(tmp_path)
    assert find_resume_checkpoint(work_dir) is None  # nothing saved yet: start fresh
    for name in ("epoch_1.pth", "epoch_2.pth", "epoch_10.pth"):
        save_checkpoint(osp.join(work_dir, name))
    (tmp_path / "last_checkpoint").write_text(osp.join(work_dir, "epoch_2.pth"))
    assert find_resume_checkpoint(work_dir) == osp.join(work_dir, "epoch_2.pth")
    truncate(osp.join(work_dir, "epoch_2.pth"))  # e.g. written in place by plain mmengine and killed
    assert not checkpoint_is_complete(osp.join(work_dir, "epoch_2.pth"))
    assert find_resume_checkpoint(work_dir) == osp.join(work_dir, "epoch_10.pth")  # newest complete, numerically
    (tmp_path / "last_checkpoint").write_text("")  # a pointer cut short
    assert find_resume_checkpoint(work_dir) == osp.join(work_dir, "epoch_10.pth")


def test_find_resume_checkpoint_explains_when_nothing_is_usable(tmp_path) -> None:
    save_checkpoint(str(tmp_path / "epoch_3.pth"))
    truncate(str(tmp_path / "epoch_3.pth"))
    (tmp_path / "last_checkpoint").write_text(str(tmp_path / "epoch_4.pth"))
    with pytest.raises(FileNotFoundError, match=r"epoch_4\.pth \(named by last_checkpoint\): it does not exist; "
                                                r".*epoch_3\.pth: it is truncated or damaged"):
        find_resume_checkpoint(str(tmp_path))


def test_checkpoint_problem_says_why_a_file_is_unusable(tmp_path) -> None:
    save_checkpoint(str(tmp_path / "good.pth"))
    assert checkpoint_problem(str(tmp_path / "good.pth")) is None
    assert checkpoint_problem(str(tmp_path / "absent.pth")) == "it does not exist"
    (tmp_path / "empty.pth").write_bytes(b"")
    assert checkpoint_problem(str(tmp_path / "empty.pth")) == "it is empty (0 bytes)"
    save_checkpoint(str(tmp_path / "cut.pth"))
    truncate(str(tmp_path / "cut.pth"))
    assert checkpoint_problem(str(tmp_path / "cut.pth")).startswith("it is truncated or damaged: no complete zip")


def test_resume_says_which_newer_checkpoint_it_skips_and_why(tmp_path) -> None:
    """A truncated newest checkpoint that last_checkpoint names: one warning line names it and why, before the run
    loads the older one."""
    work_dir = str(tmp_path)
    options = ["--cfg-options", *short_schedule(CONFIG, iters_per_epoch=1, epochs=2),
               "default_hooks.reconstruction_vis=None", "default_hooks.loss_curve=None"]
    first = run_python([TRAIN, CONFIG, "--work-dir", work_dir, *options])
    assert first.returncode == 0, first.stdout[-3000:]
    truncate(osp.join(work_dir, "epoch_2.pth"))
    assert (tmp_path / "last_checkpoint").read_text().endswith("epoch_2.pth")
    resumed = run_python([TRAIN, CONFIG, "--work-dir", work_dir, "--resume", *options])
    assert resumed.returncode == 0, resumed.stdout[-3000:]
    lines = resumed.stdout.splitlines()
    warnings = [i for i, line in enumerate(lines) if "--resume: skipping" in line]
    assert len(warnings) == 1, resumed.stdout[-3000:]
    warning = lines[warnings[0]]
    assert "WARNING" in warning and "epoch_2.pth (named by last_checkpoint): it is truncated or damaged" in warning
    assert warning.endswith(f"resuming from {osp.join(work_dir, 'epoch_1.pth')}")
    loads = [i for i, line in enumerate(lines) if "Load checkpoint from" in line]
    assert loads and warnings[0] < loads[0] and lines[loads[0]].endswith("epoch_1.pth")


def test_resume_from_a_truncated_file_is_one_line(tmp_path) -> None:
    save_checkpoint(str(tmp_path / "epoch_1.pth"))
    truncate(str(tmp_path / "epoch_1.pth"))
    message = train_cli([CONFIG, "--work-dir", str(tmp_path / "work"), "--resume", str(tmp_path / "epoch_1.pth")])
    assert message.startswith(f"error: --resume {tmp_path / 'epoch_1.pth'}: it is truncated or damaged")
    assert "--resume without a path" in message and "\n" not in message
    assert not (tmp_path / "work").exists()


def test_resume_flag_starts_fresh_without_checkpoints_and_refuses_broken_ones(tmp_path) -> None:
    cfg = Config.fromfile(CONFIG)
    cfg.work_dir = str(tmp_path)
    prepare_config(cfg, resume="auto")  # first launch of a requeue-safe command line
    assert cfg.resume is False and cfg.load_from is None
    save_checkpoint(str(tmp_path / "epoch_1.pth"))
    prepare_config(cfg, resume="auto")
    assert cfg.resume is True and cfg.load_from == osp.join(str(tmp_path), "epoch_1.pth")
    truncate(str(tmp_path / "epoch_1.pth"))
    message = train_cli([CONFIG, "--work-dir", str(tmp_path), "--resume"])
    assert message.startswith("error: --resume: no complete checkpoint to resume from") and "epoch_1.pth" in message


# --- checkpoint hook: prune only after the new checkpoint is complete --------------------------------------------
class RecordFilesAtSave(Hook):
    priority = "LOWEST"

    def __init__(self) -> None:
        self.seen: list[list[str]] = []

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        self.seen.append(sorted(f for f in os.listdir(runner.work_dir) if f.endswith(".pth")))


def test_old_checkpoint_is_deleted_only_after_the_new_one_is_written(tmp_path) -> None:
    options = {"train_dataloader.dataset.indices": 16, "train_cfg.max_epochs": 3,
               "default_hooks.checkpoint.max_keep_ckpts": 1, "default_hooks.reconstruction_vis": None}
    with single_thread():
        runner = build_runner(CONFIG, str(tmp_path), options)
        probe = RecordFilesAtSave()
        runner.register_hook(probe)
        runner.train()
    # plain mmengine deletes epoch_1.pth before writing epoch_2.pth; with max_keep_ckpts=1 a kill then loses both
    assert probe.seen == [[], ["epoch_1.pth"], ["epoch_2.pth"]]
    assert sorted(f for f in os.listdir(tmp_path) if f.endswith(".pth")) == ["epoch_3.pth"]
    assert (tmp_path / "last_checkpoint").read_text() == osp.join(str(tmp_path), "epoch_3.pth")


# --- non-finite losses ----------------------------------------------------------------------------------------------
def nan_lr_options(by_epoch: bool) -> dict:
    """2 iterations per epoch; the learning rate becomes NaN at epoch 2 (by_epoch) or for iteration 2's step."""
    return {"train_dataloader.dataset.indices": 32, "train_cfg.max_epochs": 3,
            "param_scheduler": [dict(type="MultiStepLR", by_epoch=by_epoch, milestones=[1], gamma=float("nan"))]}


def test_nan_loss_stops_the_run_naming_iteration_and_last_good_checkpoint(tmp_path) -> None:
    with single_thread():
        runner = build_runner(CONFIG, str(tmp_path), nan_lr_options(by_epoch=True))
        with pytest.raises(NonFiniteLossError) as err:
            runner.train()
    # iteration 3 steps with a NaN learning rate, so the loss of iteration 4 (epoch 2, batch 2) is NaN
    message = str(err.value)
    assert "non-finite loss (nan) at iteration 4 (epoch 2, batch 2)" in message
    assert f"last good checkpoint is {osp.join(str(tmp_path), 'epoch_1.pth')}" in message
    assert "--resume" in message
    assert not osp.exists(tmp_path / "epoch_2.pth")


def test_checkpoint_with_non_finite_weights_is_refused(tmp_path) -> None:
    with single_thread():
        runner = build_runner(CONFIG, str(tmp_path), nan_lr_options(by_epoch=False))
        with pytest.raises(NonFiniteLossError, match=r"refusing to save a checkpoint with non-finite weights after "
                                                     r"iteration 2: encoder\.vit\.cls_token.*No checkpoint"):
            runner.train()
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".pth")]
    assert not osp.exists(tmp_path / "last_checkpoint")


# --- random states in iteration-based checkpoints --------------------------------------------------------------------
class RecordRngAfterIteration(Hook):
    priority = "LOWEST"  # after CheckpointHook: nothing draws random numbers between its save and this hook

    def __init__(self) -> None:
        self.states: dict[int, torch.Tensor] = {}

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        self.states[runner.iter + 1] = torch.get_rng_state()


def test_iteration_checkpoints_hold_the_random_state_of_their_iteration(tmp_path) -> None:
    options = {"train_cfg": dict(_delete_=True, type="IterBasedTrainLoop", max_iters=4), "param_scheduler": None,
               "log_processor.by_epoch": False, "default_hooks.checkpoint.by_epoch": False,
               "default_hooks.checkpoint.interval": 2, "default_hooks.reconstruction_vis": None}
    with single_thread():
        runner = build_runner(CONFIG, str(tmp_path), options)
        probe = RecordRngAfterIteration()
        runner.register_hook(probe)
        runner.train()
    for step in (2, 4):
        saved = torch.load(tmp_path / f"iter_{step}.pth", weights_only=True)["rng_state"]
        assert saved["world_size"] == 1
        assert torch.equal(saved["ranks"][0]["torch"], probe.states[step])
    assert not torch.equal(probe.states[2], probe.states[4])
