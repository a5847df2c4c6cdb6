"""mim_zoo.engine.compat: each fix for modern torch, tested against the real upstream behaviour."""

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer, MessageHub

from mim_zoo.engine import compat


def test_history_buffer_pickles_without_bound_methods(tmp_path):
    buffer = HistoryBuffer()
    for value in (1.0, 2.0, 4.0):
        buffer.update(value)
    path = tmp_path / "buffer.pth"
    torch.save({"buffer": buffer}, path)
    unsafe = set(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    assert not unsafe  # every global it needs is on the allow-list (no builtins.getattr)
    loaded = torch.load(path, weights_only=True)["buffer"]
    assert loaded.mean() == pytest.approx(7 / 3) and loaded.max() == 4.0 and loaded.current() == 4.0


def test_mmengine_checkpoint_resumes_with_weights_only(tmp_path):
    """What mmengine 0.10.7's CheckpointLoader does on --resume: torch.load(path) with torch's default."""
    hub = MessageHub.get_instance("compat_test")
    hub.update_scalar("train/loss", 0.5)
    hub.update_info("iter", 3)
    checkpoint = {"meta": {"epoch": 1, "iter": 3, "seed": 0}, "state_dict": {"w": torch.ones(2)},
                  "message_hub": hub.state_dict()}
    path = tmp_path / "epoch_1.pth"
    torch.save(checkpoint, path)
    unsafe = set(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    assert "builtins.getattr" not in unsafe
    loaded = torch.load(path)  # weights_only=True is torch's default
    restored = MessageHub.get_instance("compat_test_restored")
    restored.load_state_dict(loaded["message_hub"])
    assert restored.get_scalar("train/loss").current() == 0.5


def test_arbitrary_objects_are_still_refused(tmp_path):
    import argparse

    path = tmp_path / "official.pth"
    torch.save({"model": {}, "args": argparse.Namespace(lr=1.0)}, path)
    with pytest.raises(Exception, match="Weights only load failed"):
        torch.load(path)
    assert compat.load_trusted(str(path))["args"].lr == 1.0  # the explicit opt-in for files you trust


def test_apply_is_idempotent():
    compat.apply()
    compat.apply()


def test_message_hub_is_stored_in_plain_types_and_restored_exactly(tmp_path):
    hub = MessageHub.get_instance("plain_test")
    for value in (0.5, 0.25, 0.125):
        hub.update_scalar("train/loss", value)
    hub.update_scalar("train/lr", 1e-3, count=4)
    hub.update_info("eta", np.float64(12.5))
    hub.update_info("iter", 3)
    state = hub.state_dict()
    assert state["log_scalars"]["train/loss"] == {"log_history": [0.5, 0.25, 0.125], "count_history": [1, 1, 1],
                                                  "max_length": 1000000}
    assert type(state["runtime_info"]["eta"]) is float
    path = tmp_path / "epoch_1.pth"
    torch.save({"meta": {"epoch": 1}, "state_dict": {"w": torch.ones(2)}, "message_hub": state}, path)
    assert torch.serialization.get_unsafe_globals_in_checkpoint(str(path)) == []
    restored = MessageHub.get_instance("plain_test_restored")
    restored.load_state_dict(torch.load(path, weights_only=True)["message_hub"])
    for key in ("train/loss", "train/lr"):
        ours, theirs = hub.get_scalar(key), restored.get_scalar(key)
        assert isinstance(theirs, HistoryBuffer) and theirs.max_length == ours.max_length
        assert np.array_equal(theirs.data[0], ours.data[0]) and np.array_equal(theirs.data[1], ours.data[1])
        assert theirs.data[0].dtype == ours.data[0].dtype
    assert restored.get_info("eta") == 12.5 and restored.get_info("iter") == 3


def test_a_training_checkpoint_loads_weights_only_in_plain_torch(tmp_path):
    """A real checkpoint of tools/train.py, read by a python that never imports mim_zoo (or mmengine)."""
    import subprocess
    import sys

    from .helpers.training import TRAIN, run_python

    run = run_python([TRAIN, "configs/mae/tiny_cpu.py", "--work-dir", str(tmp_path), "--cfg-options",
                      "train_dataloader.dataset.indices=16", "train_cfg.max_epochs=1",
                      "default_hooks.reconstruction_vis=None", "default_hooks.loss_curve=None"])
    assert run.returncode == 0, run.stdout[-3000:]
    code = ("import sys, torch; c = torch.load(sys.argv[1], weights_only=True); "
            "assert 'mim_zoo' not in sys.modules and 'mmengine' not in sys.modules; print(sorted(c))")
    plain = subprocess.run([sys.executable, "-c", code, str(tmp_path / "epoch_1.pth")], cwd=tmp_path,
                           capture_output=True, text=True, timeout=300)
    assert plain.returncode == 0, plain.stderr[-2000:]
    assert "message_hub" in plain.stdout and "state_dict" in plain.stdout
