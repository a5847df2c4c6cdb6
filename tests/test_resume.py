"""A killed run resumes exactly: every tiny config is SIGKILLed mid-epoch and mid-checkpoint-write, resumed with
``tools/train.py --resume``, and must end with the weights, optimizer and scheduler state of an uninterrupted run,
bit for bit (random states, data order, EMA encoders, loss-weight ramps included)."""

from __future__ import annotations

import glob
import os.path as osp
import signal

import pytest

from mim_zoo.engine.reliability import checkpoint_is_complete

from .helpers.training import (
    TRAIN,
    TRAIN_WITH_FAULTS,
    assert_same_training_state,
    load_checkpoint,
    run_python,
    short_schedule,
    tiny_configs,
)

ITERS_PER_EPOCH, EPOCHS = 2, 3
SAVE_LIMIT = 256 * 1024  # bytes the killed writer gets to write: less than any tiny checkpoint


def train(config: str, work_dir: str, *extra: str, faults: list[str] = (), resume: bool = False):
    options = short_schedule(config, ITERS_PER_EPOCH, EPOCHS) + list(faults)
    script = TRAIN_WITH_FAULTS if faults else TRAIN
    args = [script, config, "--work-dir", work_dir, *(["--resume"] if resume else []), *extra,
            "--cfg-options", *options]
    return run_python(args)


@pytest.fixture(scope="module", params=tiny_configs())
def reference(request, tmp_path_factory) -> tuple[str, dict]:
    """The uninterrupted run of each tiny config and its final checkpoint."""
    config = request.param
    work_dir = str(tmp_path_factory.mktemp("reference"))
    result = train(config, work_dir)
    assert result.returncode == 0, result.stdout[-3000:]
    return config, load_checkpoint(osp.join(work_dir, f"epoch_{EPOCHS}.pth"))


@pytest.mark.slow
def test_killed_during_save_and_mid_epoch_then_resumed_equals_uninterrupted(reference, tmp_path) -> None:
    config, expected = reference
    work_dir = str(tmp_path)

    # 1. the kernel kills the run in the middle of writing its 2nd checkpoint (SIGXFSZ after SAVE_LIMIT bytes)
    faults = ["default_hooks.fault.type=KillDuringSaveHook", "default_hooks.fault.nth=2",
              f"default_hooks.fault.limit_bytes={SAVE_LIMIT}"]
    killed = train(config, work_dir, faults=faults)
    assert killed.returncode == -signal.SIGXFSZ, killed.stdout[-3000:]
    partial = glob.glob(osp.join(work_dir, ".epoch_2.pth.*.tmp"))
    assert partial and osp.getsize(partial[0]) == SAVE_LIMIT  # the kill really happened mid-write
    assert not osp.exists(osp.join(work_dir, "epoch_2.pth"))  # no truncated checkpoint under the real name
    with open(osp.join(work_dir, "last_checkpoint")) as f:
        assert f.read().strip() == osp.join(work_dir, "epoch_1.pth")
    assert all(checkpoint_is_complete(p) for p in glob.glob(osp.join(work_dir, "*.pth")))

    # 2. resume from epoch 1; SIGKILL in the middle of epoch 3 (after its first iteration)
    mid_epoch = 2 * ITERS_PER_EPOCH + 1
    killed = train(config, work_dir, resume=True, faults=["default_hooks.fault.type=KillAtIterationHook",
                                                          f"default_hooks.fault.iteration={mid_epoch}"])
    assert killed.returncode == -signal.SIGKILL, killed.stdout[-3000:]
    assert "restored the random states of 1 process(es) (epoch 1" in killed.stdout
    assert not glob.glob(osp.join(work_dir, ".epoch_2.pth.*.tmp"))  # the next write cleared the leftover
    assert not osp.exists(osp.join(work_dir, f"epoch_{EPOCHS}.pth"))

    # 3. resume again with the plain command line: the half-done epoch 3 is redone from its start
    resumed = train(config, work_dir, resume=True)
    assert resumed.returncode == 0, resumed.stdout[-3000:]
    assert f"restored the random states of 1 process(es) (epoch {EPOCHS - 1}" in resumed.stdout
    assert_same_training_state(expected, load_checkpoint(osp.join(work_dir, f"epoch_{EPOCHS}.pth")))
