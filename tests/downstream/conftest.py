"""Shared fixtures of the downstream tests: real pretraining checkpoints of the tiny configs.

* :func:`tiny_checkpoint`: made the way a user makes one (``python tools/train.py configs/mae/tiny_cpu.py``: a
  64-d, 2-block ViT with 4-px patches on 32-px shapes, 8 iterations), so the tests exercise the real file format,
  including the config mmengine saves in ``meta['cfg']``.
* :func:`pretraining_checkpoint`: ``config -> path`` for any tiny config (BootMAE, MR-MAE, MixMAE, the combos),
  ``tools/train.py``'s ``main`` run in this process for one iteration: the same Runner and file format at a
  fraction of the cost, for tests that need an algorithm's encoder and checkpoint layout, not a trained encoder.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_tool(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run ``python tools/<args>`` from the repository root; fail the test with its output if it fails."""
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def load_tool(name: str) -> ModuleType:
    """``tools/<name>.py`` as a module, to call its ``main(argv)`` in this process."""
    spec = importlib.util.spec_from_file_location(f"mim_zoo_tools_{name}", ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Path of a real mim_zoo pretraining checkpoint (MAE, tiny ViT, 2 epochs)."""
    work_dir = tmp_path_factory.mktemp("tiny_mae")
    run_tool("tools/train.py", "configs/mae/tiny_cpu.py", "--work-dir", str(work_dir))
    path = work_dir / "epoch_2.pth"
    assert path.is_file()
    return str(path)


@pytest.fixture(scope="session")
def tiny_pretrained(tiny_checkpoint: str):
    """The :class:`PretrainedEncoder` of :func:`tiny_checkpoint`."""
    import mim_zoo  # noqa: F401
    from mim_zoo.core.downstream import load_pretrained_encoder

    return load_pretrained_encoder(tiny_checkpoint)


@pytest.fixture(scope="session")
def pretraining_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], str]:
    """``"BootMAE" | "mae_momentum" | ... -> path``: the catalogue's tiny config of that algorithm or combo after one
    iteration (``epoch_1.pth``, written by the Runner of ``tools/train.py``), made once per session and name."""
    from mmengine.config import Config

    from mim_zoo.engine.catalogue import load_catalogue

    made: dict[str, str] = {}

    def make(name: str) -> str:
        if name not in made:
            config = str(load_catalogue(ROOT).tiny_config(name).relative_to(ROOT))
            work_dir = tmp_path_factory.mktemp(name)
            batch = Config.fromfile(config).recipe.batch_per_gpu
            load_tool("train").main([config, "--work-dir", str(work_dir), "--cfg-options", "train_cfg.max_epochs=1",
                                     f"train_dataloader.dataset.indices={batch}"])
            made[name] = str(work_dir / "epoch_1.pth")
        return made[name]

    return make
