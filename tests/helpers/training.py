"""Shared helpers of the reliability tests: the tiny configs, real training runs as subprocesses, checkpoints."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import os.path as osp
import subprocess
import sys
from collections.abc import Iterator

import torch
from mmengine.config import Config
from mmengine.runner import Runner

import mim_zoo  # noqa: F401  (the compatibility fixes: checkpoints load with weights_only=True)
from mim_zoo.engine.catalogue import load_catalogue
from mim_zoo.engine.config import load_config, prepare_config
from mim_zoo.engine.probes import intra_op_threads

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TRAIN = osp.join(REPO, "tools", "train.py")
TRAIN_WITH_FAULTS = osp.join(REPO, "tests", "helpers", "train_with_faults.py")


def tiny_configs(combos: bool = False) -> list[str]:
    """Every algorithm's tiny CPU config in the catalogue (relative to the repository root); with ``combos`` also
    every combo's."""
    catalogue = load_catalogue(REPO)
    return [osp.relpath(p, REPO) for p in catalogue.configs(scale="tiny", combos=combos)]


def subprocess_env() -> dict[str, str]:
    """One intra-op thread: fast on a shared 2-core machine, and the same thread count in every run."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def run_python(args: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    """``python ARGS`` from the repository root; stdout and stderr together in ``.stdout``."""
    return subprocess.run([sys.executable, *args], cwd=REPO, env=subprocess_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout)


def short_schedule(config: str, iters_per_epoch: int = 2, epochs: int = 3) -> list[str]:
    """``--cfg-options`` for a run of ``epochs`` x ``iters_per_epoch`` iterations of ``config``'s own batch."""
    batch = Config.fromfile(osp.join(REPO, config)).recipe.batch_per_gpu
    return [f"train_dataloader.dataset.indices={iters_per_epoch * batch}", f"train_cfg.max_epochs={epochs}",
            "default_hooks.logger.interval=1"]


def load_checkpoint(path: str) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def assert_same_training_state(expected: dict, actual: dict) -> None:
    """Bit-identical weights (EMA copies included), optimizer state and scheduler state, same loop counters."""
    assert expected["meta"]["epoch"] == actual["meta"]["epoch"]
    assert expected["meta"]["iter"] == actual["meta"]["iter"]
    assert expected["state_dict"].keys() == actual["state_dict"].keys()
    differing = [k for k, v in expected["state_dict"].items() if not torch.equal(v, actual["state_dict"][k])]
    assert not differing, f"weights differ from the uninterrupted run: {differing[:5]} ({len(differing)} tensors)"
    exp_opt, act_opt = expected["optimizer"]["state"], actual["optimizer"]["state"]
    assert exp_opt.keys() == act_opt.keys()
    for index, state in exp_opt.items():
        for name, value in state.items():
            other = act_opt[index][name]
            same = torch.equal(value, other) if torch.is_tensor(value) else value == other
            assert same, f"optimizer state {index}.{name} differs from the uninterrupted run"
    assert expected["param_schedulers"] == actual["param_schedulers"]


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """In-process training with one intra-op thread (as :func:`subprocess_env`), restored afterwards."""
    with intra_op_threads(1):
        yield


def build_runner(config: str, work_dir: str, options: dict | None = None, launcher: str = "none") -> Runner:
    """A Runner for ``config`` prepared exactly as ``tools/train.py`` prepares it."""
    cfg = load_config(osp.join(REPO, config), options)
    cfg.work_dir, cfg.launcher = work_dir, launcher
    prepare_config(cfg)
    return Runner.from_cfg(cfg)


def train_cli(args: list[str]) -> str:
    """Run ``tools/train.py``'s ``main(args)`` in this process; return its error message ("" if it finished)."""
    spec = importlib.util.spec_from_file_location("mim_zoo_train_tool", TRAIN)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    with single_thread():
        try:
            tool.main(args)
        except SystemExit as exit_:
            return str(exit_.code)
    return ""
