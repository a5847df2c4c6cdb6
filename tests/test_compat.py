"""mim_zoo.engine.compat: each fix for modern torch and the GPU images' packages, tested against the real upstream
behaviour."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer, MessageHub

from mim_zoo.engine import compat
from mim_zoo.engine.env import mmcv_ops_backend

REPO = Path(__file__).resolve().parents[1]


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


def test_numpy_arrays_load_with_weights_only_and_no_numpy_core_warning(tmp_path):
    """numpy arrays and scalars (an mmengine checkpoint's message hub holds them) load with ``weights_only``: the
    allow-list names the module numpy's own pickles name, and numpy 2's ``numpy.core`` shim, which warns, is never
    touched (the device check runs this on the GPU image's numpy 2)."""
    import pickle
    import warnings

    import numpy as np

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compat.allow_mmengine_checkpoints()
    multiarray = compat.numpy_multiarray()
    assert f"{multiarray.__name__}\n_reconstruct".encode() in pickle.dumps(np.arange(3), protocol=2)
    path = tmp_path / "arrays.pth"
    torch.save({"array": np.arange(3.0), "scalar": np.float64(2.5)}, path)
    loaded = torch.load(path, weights_only=True)
    assert loaded["array"].tolist() == [0.0, 1.0, 2.0] and loaded["scalar"] == 2.5


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


TRANSFORMERS = "transformers==5.17.0"  # the version the GPU machine's image ships (.library/device/KINDS.md)


@pytest.fixture(scope="module")
def transformers_site(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A folder holding the real transformers wheel from PyPI (no dependencies: mmpretrain's switch reads only its
    package metadata, and mmpretrain's import of it must not succeed for the upstream failure to show)."""
    site = tmp_path_factory.mktemp("transformers_site")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps",
                    "--target", str(site), TRANSFORMERS], check=True, capture_output=True)
    return str(site)


def python_with(site: str, code: str) -> subprocess.CompletedProcess:
    """``python -c code`` from the repository root with ``site`` first on the path."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([site, str(REPO)])}
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.slow
def test_mmpretrain_imports_beside_transformers_once_mim_zoo_is_imported(transformers_site):
    assert importlib.util.find_spec("pycocotools") is not None  # the other half of mmpretrain's switch
    alone = python_with(transformers_site, "import mmpretrain.models")
    if mmcv_ops_backend() == "compiled":
        assert alone.returncode != 0  # the upstream problem: mmpretrain takes its multimodal branch and fails in it
        assert "mmpretrain/models/multimodal" in alone.stderr or "mmpretrain/models/utils/huggingface" in alone.stderr
    else:  # the compiler-free mmcv._ext imports mim_zoo (mmpretrain -> mmdet -> mmcv.ops), which applies the fix
        assert alone.returncode == 0, alone.stderr[-3000:]
    after = python_with(transformers_site, "\n".join([
        "import mim_zoo, mmpretrain.models, mmpretrain.datasets",
        "from mmpretrain.utils.dependency import WITH_MULTIMODAL",
        "from mmpretrain.registry import MODELS",
        "assert WITH_MULTIMODAL is False",
        "try:",
        "    MODELS.build(dict(type='BlipCaption'))",
        "except ImportError as err:",  # mmpretrain's own placeholder, as without transformers
        "    assert 'multi-modal dependencies' in str(err), err",
        "else:",
        "    raise AssertionError('a multimodal model was built')",
    ]))
    assert after.returncode == 0, after.stderr[-3000:]


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
