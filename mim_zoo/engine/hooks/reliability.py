"""Runs that survive faults and lose nothing: exact resume, atomic checkpoints, a stop on non-finite losses.

mmengine 0.10.7 already checkpoints the model (EMA copies included), the optimizer, the parameter schedulers and the
loop counters; loss-weight ramps and momenta are recomputed from those counters
(``mim_zoo.engine.hooks.MIMScheduleHook``) and the data order is a function of ``(seed, epoch)`` (``DefaultSampler`` +
``DistSamplerSeedHook``). What it does not do, and this module adds:

* :class:`RNGStateHook` saves the python / numpy / torch / CUDA random states of *every* rank in each checkpoint and
  restores them on resume, so masks, augmentation and drop-path continue exactly: a killed and resumed run ends
  with bit-identical weights (``tests/test_resume.py``).
* :class:`AtomicCheckpointHook` writes each checkpoint to a temporary file in the same directory and renames it into
  place (:func:`write_atomic`), updates ``last_checkpoint`` the same way and deletes old checkpoints only *after* the
  new one is complete: a kill at any moment leaves a complete latest checkpoint.
* :func:`find_resume_checkpoint` (``tools/train.py --resume``) follows ``last_checkpoint`` and, should it be missing
  or broken, falls back to the newest checkpoint file that loads.
* :class:`NonFiniteLossHook` stops at the first NaN/Inf loss, naming the iteration and the last good checkpoint, and
  refuses to write a checkpoint whose weights are not finite.

Limits (documented, not hidden): resume is bit-exact for epoch-based loops (every mim_zoo pretraining config). With
``IterBasedTrainLoop`` mmengine replays the consumed batches through the pipeline after the states are restored, so
the data order is exact but later augmentation draws are not. Data workers with ``persistent_workers=True`` keep
their own random streams, which no checkpoint holds; use ``num_workers=0`` or non-persistent workers (seeded from the
restored main-process state by torch) where bit-exact augmentation matters.
"""

from __future__ import annotations

import math
import os.path as osp
from collections import deque
from typing import Any

import torch
from mmengine.dist import all_gather_object, get_rank, get_world_size, is_main_process
from mmengine.hooks import CheckpointHook, Hook
from mmengine.runner import IterBasedTrainLoop

from ..registry import HOOKS
from ..reliability import NonFiniteLossError, capture_rng_state, restore_rng_state, write_atomic

# --- random states --------------------------------------------------------------------------------------------


def _checkpoint_hooks(runner: Any) -> list[CheckpointHook]:
    return [hook for hook in runner.hooks if isinstance(hook, CheckpointHook)]


@HOOKS.register_module()
class RNGStateHook(Hook):
    """Save the random states of every rank in each checkpoint; restore them when a run resumes.

    The states are captured on all ranks just before the checkpoint hook saves (this hook's priority, 85, sits
    between every other end-of-iteration/epoch hook and ``CheckpointHook`` at 90) and gathered to rank 0, which writes
    them under ``checkpoint["rng_state"] = {"world_size": W, "ranks": [state_0, ..., state_W-1]}``. On resume each
    rank restores its own state at the end of ``before_train``, i.e. exactly where the uninterrupted run stood after
    that save. A run restarted with another world size, or from a checkpoint without states, warns and keeps the
    seeds of its ``randomness`` config.
    """

    priority = 85

    def __init__(self) -> None:
        self._snapshot: list[dict] | None = None
        self._loaded: dict | None = None

    def _collect(self) -> None:
        state = capture_rng_state()
        self._snapshot = all_gather_object(state) if get_world_size() > 1 else [state]

    def _iter_checkpoint_due(self, runner: Any) -> bool:
        """Whether an iteration-based ``CheckpointHook`` saves at the end of this iteration (its own rule)."""
        return any(
            not hook.by_epoch and (hook.every_n_train_iters(runner, hook.interval, hook.save_begin)
                                   or (hook.save_last and hook.is_last_train_iter(runner)))
            for hook in _checkpoint_hooks(runner)
        )

    def after_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: Any = None) -> None:
        if self._iter_checkpoint_due(runner):
            self._collect()

    def after_train_epoch(self, runner: Any) -> None:
        self._collect()  # once per epoch: cheap even when it is a collective

    def before_save_checkpoint(self, runner: Any, checkpoint: dict) -> None:
        ranks = self._snapshot if self._snapshot is not None else [capture_rng_state()]
        if len(ranks) != get_world_size():  # a save outside the train loop (e.g. best-of-val): rank 0 only
            return
        checkpoint["rng_state"] = {"world_size": len(ranks), "ranks": ranks}
        self._snapshot = None

    def after_load_checkpoint(self, runner: Any, checkpoint: dict) -> None:
        meta = checkpoint.get("meta", {})
        self._loaded = {"rng_state": checkpoint.get("rng_state"), "iter": meta.get("iter"), "epoch": meta.get("epoch")}

    def before_train(self, runner: Any) -> None:
        loaded, self._loaded = self._loaded, None
        resumed = loaded is not None and runner.iter > 0 and runner.iter == loaded["iter"]
        if not resumed:
            return  # a fresh run, or weights loaded with load_from: keep the configured seeds
        saved = loaded["rng_state"]
        if saved is None:
            runner.logger.warning("the resumed checkpoint holds no random states (written without RNGStateHook): "
                                  "training continues from it but not bit-exactly")
        elif saved["world_size"] != get_world_size():
            runner.logger.warning(f"the checkpoint holds the random states of {saved['world_size']} processes, this "
                                  f"run has {get_world_size()}: keeping the configured seeds (not bit-exact)")
        else:
            restore_rng_state(saved["ranks"][get_rank()])
            runner.logger.info(f"restored the random states of {saved['world_size']} process(es) "
                               f"(epoch {loaded['epoch']}, iteration {loaded['iter']})")
        if isinstance(runner.train_loop, IterBasedTrainLoop):
            runner.logger.warning("IterBasedTrainLoop replays the consumed batches after the random states are "
                                  "restored: data order is exact, later augmentation draws are not")
        if getattr(runner.train_dataloader, "persistent_workers", False):
            runner.logger.warning("persistent data workers keep random streams no checkpoint holds: augmentation "
                                  "after this resume differs from an uninterrupted run")


# --- atomic checkpoints ------------------------------------------------------------------------------------------


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """mmengine's ``CheckpointHook`` with crash-safe writes.

    Upstream behaviour (mmengine 0.10.7 ``CheckpointHook._save_checkpoint_with_step``): it deletes the oldest kept
    checkpoint *before* writing the new one, writes the new file in place (``open(path, "wb")``: a kill leaves a
    truncated file) and rewrites ``last_checkpoint`` in place. Here the order is: write the checkpoint atomically,
    point ``last_checkpoint`` at it atomically, and only then delete what ``max_keep_ckpts`` no longer keeps. All
    other arguments and behaviour are mmengine's.

    Args:
        backend_args: mmengine file-backend arguments; by default (local ``out_dir``) the atomic local backend.
        **kwargs: ``CheckpointHook`` arguments (``interval``, ``max_keep_ckpts``, ``save_last``, ...).
    """

    def __init__(self, *args: Any, backend_args: dict | None = None, **kwargs: Any) -> None:
        remote = "://" in str(kwargs.get("out_dir") or "")  # e.g. s3:// or petrel://: that backend's own writes
        if backend_args is None and not remote and kwargs.get("file_client_args") is None:
            backend_args = {"backend": "atomic_local"}
        super().__init__(*args, backend_args=backend_args, **kwargs)

    def _save_checkpoint_with_step(self, runner: Any, step: int, meta: dict) -> None:
        dropped: list[int] = []
        if self.max_keep_ckpts > 0:  # decide what to keep now (the checkpoint records it), delete after the save
            kept = list(self.keep_ckpt_ids)
            if not kept or kept[-1] != step:
                kept.append(step)
            dropped, kept = kept[: -self.max_keep_ckpts], kept[-self.max_keep_ckpts :]
            self.keep_ckpt_ids = deque(kept, self.max_keep_ckpts)
            runner.message_hub.update_info("keep_ckpt_ids", kept)
        filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir, filename)
        runner.message_hub.update_info("last_ckpt", self.last_ckpt)
        runner.save_checkpoint(self.out_dir, filename, self.file_client_args, save_optimizer=self.save_optimizer,
                               save_param_scheduler=self.save_param_scheduler, meta=meta, by_epoch=self.by_epoch,
                               backend_args=self.backend_args, **self.args)
        if not is_main_process():
            return
        write_atomic(osp.join(runner.work_dir, "last_checkpoint"), str(self.last_ckpt).encode())
        for old in dropped:
            path = self.file_backend.join_path(self.out_dir, self.filename_tmpl.format(old))
            if self.file_backend.isfile(path):
                self.file_backend.remove(path)
            elif self.file_backend.isdir(path):  # DeepSpeed checkpoints are directories
                self.file_backend.rmtree(path)


# --- non-finite losses ---------------------------------------------------------------------------------------------
def _scalar(value: Any) -> float:
    return value.detach().float().item() if torch.is_tensor(value) else float(value)


def _last_checkpoint_hint(runner: Any) -> str:
    """The checkpoint ``last_checkpoint`` points at: written only after a checkpoint is complete."""
    pointer = osp.join(runner.work_dir, "last_checkpoint")
    last = ""
    if osp.isfile(pointer):
        with open(pointer) as f:
            last = f.read().strip()
    if not last:
        return "No checkpoint has been saved in this work dir yet."
    return f"The last good checkpoint is {last}; continue from it with `tools/train.py CONFIG --resume {last}`."


@HOOKS.register_module()
class NonFiniteLossHook(Hook):
    """Stop at the first NaN/Inf loss, and never checkpoint non-finite weights.

    The check reads the loss mmengine already synchronised for logging (no extra device sync). The error names the
    iteration, the epoch, every loss term and the last good checkpoint; nothing is saved after the bad iteration.
    """

    priority = "ABOVE_NORMAL"  # before CheckpointHook (VERY_LOW) can save after a bad iteration

    def after_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: Any = None) -> None:
        if not outputs or "loss" not in outputs:
            return
        loss = _scalar(outputs["loss"])
        if math.isfinite(loss):
            return
        terms = ", ".join(f"{k}={_scalar(v):.4g}" for k, v in outputs.items() if "loss" in k)
        message = (f"non-finite loss ({loss}) at iteration {runner.iter + 1} (epoch {runner.epoch + 1}, batch "
                   f"{batch_idx + 1}); terms: {terms}. {_last_checkpoint_hint(runner)} Lower the learning rate, add "
                   "gradient clipping (optim_wrapper.clip_grad) or check the input data.")
        runner.logger.error(message)
        raise NonFiniteLossError(message)

    def before_save_checkpoint(self, runner: Any, checkpoint: dict) -> None:
        bad = [k for k, v in checkpoint.get("state_dict", {}).items()
               if torch.is_tensor(v) and v.is_floating_point() and not bool(torch.isfinite(v).all())]
        if bad:
            done = checkpoint.get("meta", {}).get("iter", runner.iter)
            message = (f"refusing to save a checkpoint with non-finite weights after iteration {done}: "
                       f"{', '.join(bad[:5])}{' ...' if len(bad) > 5 else ''} ({len(bad)} tensors). "
                       f"{_last_checkpoint_hint(runner)}")
            runner.logger.error(message)
            raise NonFiniteLossError(message)
