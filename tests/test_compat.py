"""mim_zoo.engine.compat: each fix for modern torch, tested against the real upstream behaviour."""

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
