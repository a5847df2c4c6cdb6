"""What a number was measured with, recorded beside it: a results row that carries its evidence.

:func:`environment` describes a run: the hash of its resolved config (:func:`config_hash`), the git commit of the
checkout it ran from (:func:`git_commit`), the versions of the stack (:func:`package_versions`) and the device it ran
on, by name and count (:func:`device_info`). :class:`mim_zoo.engine.hooks.RunEvidenceHook` adds what only the
pretraining run itself can measure, its images/s, the utilisation of the device's matmul peak and its wall time,
and stores all of it in every checkpoint (``meta['evidence']``), where ``tools/benchmark.py`` and the comparison
study find it (:func:`pretraining_evidence`) and put it next to their numbers and the paper's.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import platform
import subprocess
from importlib import metadata
from typing import Any

import torch

from .catalogue import default_root
from .env import cpu_model

# distributions whose versions a result depends on (import names differ: mmsegmentation is `mmseg`)
PACKAGES = ("torch", "torchvision", "timm", "mmengine", "mmcv", "mmpretrain", "mmsegmentation", "mmdet", "numpy")
# entries of a resolved config that say where and how a run was launched, not what it computes
RUN_KEYS = ("work_dir", "launcher", "load_from", "resume", "experiment_name", "log_level", "randomness")


def config_hash(cfg: Any) -> str:
    """The first 12 hex digits of the SHA-256 of a resolved config without :data:`RUN_KEYS` (keys sorted, classes
    by their repr): two runs of the same computation share it, whatever their work dirs; a seed differs."""
    data = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)
    kept = {k: v for k, v in data.items() if k not in RUN_KEYS}
    kept["seed"] = (data.get("randomness") or {}).get("seed")
    text = json.dumps(kept, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def git_commit(root: str | os.PathLike | None = None) -> str | None:
    """``HEAD`` of the checkout at ``root`` (default: :func:`mim_zoo.engine.catalogue.default_root`), with
    ``+dirty`` when tracked files differ from it; ``None`` outside a git checkout."""
    root = str(root or default_root())
    try:
        head = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if head.returncode:
            return None
        status = subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return head.stdout.strip() + ("+dirty" if status.stdout.strip() else "")


def package_versions() -> dict[str, str | None]:
    """Python, CUDA (of the torch build) and every distribution of :data:`PACKAGES` (``None``: not installed)."""
    versions: dict[str, str | None] = {"python": platform.python_version(), "cuda": torch.version.cuda}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    from ..version import __version__

    versions["mim_zoo"] = __version__
    return versions


def device_info(device: torch.device | None = None, world_size: int | None = None) -> dict[str, Any]:
    """``{"type", "name", "count"}``: the device type, its name (the GPU's, else the CPU model) and the number of
    processes (one device each) of the run; on CPU also its torch threads."""
    from mmengine.dist import get_world_size

    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    info: dict[str, Any] = {"type": device.type, "count": world_size or get_world_size()}
    if device.type == "cuda":
        info["name"] = torch.cuda.get_device_name(device)
    else:
        info.update(name=cpu_model(), threads=torch.get_num_threads())
    return info


def environment(cfg: Any = None, device: torch.device | None = None, root: str | os.PathLike | None = None,
                world_size: int | None = None) -> dict[str, Any]:
    """The evidence of a run that does not depend on its progress (module docstring); ``config_hash`` only with
    ``cfg``."""
    return {"config_hash": None if cfg is None else config_hash(cfg), "git_commit": git_commit(root),
            "packages": package_versions(), "device": device_info(device, world_size),
            "recorded": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def summarise_sessions(sessions: list[dict[str, Any]]) -> dict[str, Any]:
    """A run's speed over all its training sessions (a resumed run has several): images / seconds, the utilisation
    weighted by time, the summed wall time."""
    seconds = sum(s["seconds"] for s in sessions)
    images = sum(s["images"] for s in sessions)
    timed = [s for s in sessions if s.get("utilisation") is not None]
    util_seconds = sum(s["seconds"] for s in timed)
    utilisation = (sum(s["utilisation"] * s["seconds"] for s in timed) / util_seconds) if util_seconds else None
    return {"img_per_s": images / seconds if seconds else None, "utilisation": utilisation, "wall_s": seconds,
            "images": images}


def pretraining_evidence(checkpoint: dict) -> dict[str, Any] | None:
    """The evidence a pretraining checkpoint carries (``meta['evidence']``, :class:`RunEvidenceHook`), with its
    summary; ``None`` for a checkpoint written without the hook (older runs, converted official weights)."""
    record = (checkpoint.get("meta") or {}).get("evidence")
    if not record:
        return None
    return {**record, **summarise_sessions(record.get("sessions", []))}
