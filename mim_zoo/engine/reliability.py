"""What runs that survive faults need besides hooks: errors that end a run cleanly, random states, atomic writes and
finding the checkpoint ``--resume`` continues from. The hooks that use them are in :mod:`mim_zoo.engine.hooks`."""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import os.path as osp
import random
import re
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from mmengine.fileio import LocalBackend, register_backend
from mmengine.logging import print_log

from ..core.checkpoints.read import checkpoint_problem


class RunAborted(RuntimeError):
    """Training stopped for a reason its message explains; ``tools/train.py`` prints it without a traceback."""


class NonFiniteLossError(RunAborted):
    """The loss (or the weights about to be checkpointed) became NaN or infinite."""


def capture_rng_state() -> dict[str, Any]:
    """The python, numpy, torch (CPU) and, once initialised, CUDA random states of this process.

    Everything is stored as tensors and plain python values, so checkpoints holding it still load with
    ``torch.load(weights_only=True)``.
    """
    version, py_state, gauss = random.getstate()
    _, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": (version, list(py_state), gauss),
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss),
                  "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state` (tensors may arrive on any device)."""
    version, py_state, gauss = state["python"]
    random.setstate((version, tuple(py_state), gauss))
    np_state = state["numpy"]
    np.random.set_state(("MT19937", np_state["keys"].cpu().numpy().astype(np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["cached_gaussian"]))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        if len(state["cuda"]) != torch.cuda.device_count():
            raise ValueError(f"the checkpoint holds the CUDA random states of {len(state['cuda'])} devices, this "
                             f"process sees {torch.cuda.device_count()}")
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


@contextlib.contextmanager
def rng_isolated(seed: int | None = None) -> Iterator[None]:
    """Run a block without touching the global random streams of training.

    Args:
        seed: seed python, numpy and torch inside the block (same draws every time), or keep the current states.
    """
    saved = capture_rng_state()
    try:
        if seed is not None:
            random.seed(seed)
            np.random.seed(seed)
            torch.manual_seed(seed)
        yield
    finally:
        restore_rng_state(saved)


def write_atomic(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the complete new one, never a partial one.

    The bytes go to a temporary file in the same directory (same file system), which is flushed, fsynced and renamed
    over ``path`` with ``os.replace`` (atomic on POSIX); the directory is fsynced so the rename survives a power
    loss. Leftovers of earlier writers killed mid-write (``.NAME.*.tmp``) are removed.
    """
    folder, name = osp.split(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    for stale in glob.glob(osp.join(folder, f".{glob.escape(name)}.*.tmp")):
        with contextlib.suppress(FileNotFoundError):
            os.remove(stale)
    tmp = osp.join(folder, f".{name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the usual umask-based permissions
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class AtomicLocalBackend(LocalBackend):
    """mmengine's local file backend whose ``put`` is :func:`write_atomic` (registered as ``"atomic_local"``)."""

    def put(self, obj: bytes, filepath: str | os.PathLike) -> None:
        write_atomic(str(filepath), obj)


register_backend("atomic_local", AtomicLocalBackend, force=True)


_CKPT_NAME = re.compile(r"^(epoch|iter)_(\d+)\.pth$")


def checkpoint_is_complete(path: str) -> bool:
    """Whether ``path`` is a complete checkpoint file (:func:`~mim_zoo.core.checkpoints.read.checkpoint_problem`
    finds nothing wrong)."""
    return checkpoint_problem(path) is None


def find_resume_checkpoint(work_dir: str, warn: bool = True) -> str | None:
    """The checkpoint ``--resume`` continues from: the one ``last_checkpoint`` names if it is complete, else the
    newest complete ``epoch_N.pth`` / ``iter_N.pth`` of ``work_dir``; ``None`` when nothing was saved yet.

    Args:
        work_dir: the run's work dir.
        warn: log one warning line when a newer file is passed over, naming it, why, and the file taken instead.

    Raises:
        FileNotFoundError: checkpoints exist but none is complete (the message lists each and why).
    """
    pointer = osp.join(work_dir, "last_checkpoint")
    rejected, named = [], None
    if osp.isfile(pointer):
        with open(pointer) as f:
            named = f.read().strip()
        problem = checkpoint_problem(named) if named else None
        if named and problem is None:
            return named
        rejected.append(f"{named} (named by last_checkpoint): {problem}" if named
                        else "last_checkpoint: it is empty (a write cut short)")
    names = os.listdir(work_dir) if osp.isdir(work_dir) else []
    candidates = [(m.group(1) == "epoch", int(m.group(2)), n) for n in names if (m := _CKPT_NAME.match(n))]
    for _, _, name in sorted(candidates, reverse=True):
        path = osp.join(work_dir, name)
        problem = checkpoint_problem(path)
        if problem is None:
            if rejected and warn:
                print_log(f"--resume: skipping {'; '.join(rejected)}; resuming from {path}", logger="current",
                          level=logging.WARNING)
            return path
        if not (named and osp.abspath(named) == osp.abspath(path)):
            rejected.append(f"{path}: {problem}")
    if not rejected:
        return None  # nothing saved yet: a fresh start (so one command line serves first launch and requeue)
    raise FileNotFoundError(f"--resume: no complete checkpoint to resume from in {work_dir!r} "
                            f"({'; '.join(rejected)}). Pass one explicitly (--resume PATH) or start a new work dir.")
