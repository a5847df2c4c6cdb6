"""mmengine hooks that hand schedule values to the model (STYLE R16: schedules live outside the model)."""

from __future__ import annotations

import math
from typing import Any

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.optim import OptimWrapper, OptimWrapperDict
from mmengine.runner import EpochBasedTrainLoop

from ...core.schedules import evaluate
from ..registry import HOOKS
from ..reliability import RunAborted


def unwrap(model: Any) -> Any:
    return model.module if is_model_wrapper(model) else model


def training_progress(runner: Any) -> tuple[int, int]:
    """``(epoch, max_epochs)`` for epoch-based loops; for iteration-based loops, epochs of the train dataloader."""
    if isinstance(runner.train_loop, EpochBasedTrainLoop):
        return runner.epoch, runner.max_epochs
    iters_per_epoch = max(len(runner.train_dataloader), 1)
    return runner.iter // iters_per_epoch, math.ceil(runner.max_iters / iters_per_epoch)


def optimizer_stepped(optim_wrapper: Any) -> bool:
    """Whether the last ``update_params`` of ``optim_wrapper`` stepped the optimizer.

    Under gradient accumulation (``optim_wrapper.accumulative_counts = k``) mmengine's ``OptimWrapper`` steps on
    every k-th backward and on the last iteration (``should_update``); read after ``update_params``, the same test
    says whether this iteration stepped. An ``OptimWrapperDict`` stepped when any of its wrappers did. A step that
    AMP's loss scaler skips (non-finite gradients) still counts, as in the official loop, whose EMA update follows
    the accumulation boundary alone.
    """
    if isinstance(optim_wrapper, OptimWrapperDict):
        return any(optimizer_stepped(wrapper) for wrapper in optim_wrapper.values())
    if isinstance(optim_wrapper, OptimWrapper):
        return optim_wrapper.should_update()
    raise RunAborted(
        f"MIMScheduleHook cannot tell the optimizer steps of a {type(optim_wrapper).__name__} (EMA updates follow "
        "them); train momentum targets with mmengine's OptimWrapper / AmpOptimWrapper"
    )


@HOOKS.register_module()
class MIMScheduleHook(Hook):
    """Evaluates pure schedules of ``(epoch, max_epochs)`` and passes the values to the algorithm.

    * ``loss_weights``: ``{name: schedule}``, set with ``model.set_loss_weights(**values)`` before every iteration;
    * ``momentum``: a schedule for EMA targets; ``model.momentum_update(m)`` runs after every optimizer step, so
      once per ``accumulative_counts`` iterations under gradient accumulation, as the official BootMAE loop does
      (LightDXY/BootMAE@d604b18 ``run_pretraining.py:484-487``: ``model_ema.update`` only when
      ``(data_iter_step + 1) % update_freq == 0``).

    Values follow from the loop's counters alone, so a resumed run recomputes exactly what it had.

    Args:
        momentum: schedule config for the EMA momentum (e.g. BootMAE's piecewise-linear 0.999 -> 0.99999).
        loss_weights: schedule configs per loss weight (e.g. ``{"feature": dict(type="linear_warmup")}``).
    """

    priority = "NORMAL"

    def __init__(self, momentum: dict | None = None, loss_weights: dict[str, dict] | None = None) -> None:
        self.momentum = momentum
        self.loss_weights = loss_weights or {}

    def before_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None) -> None:
        if self.loss_weights:
            epoch, max_epochs = training_progress(runner)
            values = {name: evaluate(cfg, epoch, max_epochs) for name, cfg in self.loss_weights.items()}
            unwrap(runner.model).set_loss_weights(**values)

    def before_train(self, runner: Any) -> None:
        if self.momentum is not None:
            optimizer_stepped(runner.optim_wrapper)  # an optimizer wrapper it cannot read fails before training

    def after_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: Any = None) -> None:
        if self.momentum is not None and optimizer_stepped(runner.optim_wrapper):
            epoch, max_epochs = training_progress(runner)
            unwrap(runner.model).momentum_update(evaluate(self.momentum, epoch, max_epochs))
