"""Shared fixtures of the downstream tests: one tiny MAE pretraining checkpoint per session.

The checkpoint is made the way a user makes one (``python tools/train.py configs/mae/tiny_cpu.py``: a 64-d, 2-block
ViT with 4-px patches on 32-px shapes, 8 iterations), so the tests exercise the real file format, including the
config mmengine saves in ``meta['cfg']``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_tool(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run ``python tools/<args>`` from the repository root; fail the test with its output if it fails."""
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


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
    from mim_zoo.downstream import load_pretrained_encoder

    return load_pretrained_encoder(tiny_checkpoint)
