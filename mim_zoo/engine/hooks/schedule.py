"""mmengine hooks that hand schedule values to the model (STYLE R16: schedules live outside the model)."""

from __future__ import annotations

import math
from typing import Any

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.runner import EpochBasedTrainLoop

from ...core.schedules import evaluate
from ..registry import HOOKS


def unwrap(model: Any) -> Any:
    return model.module if is_model_wrapper(model) else model


def training_progress(runner: Any) -> tuple[int, int]:
    """``(epoch, max_epochs)`` for epoch-based loops; for iteration-based loops, epochs of the train dataloader."""
    if isinstance(runner.train_loop, EpochBasedTrainLoop):
        return runner.epoch, runner.max_epochs
    iters_per_epoch = max(len(runner.train_dataloader), 1)
    return runner.iter // iters_per_epoch, math.ceil(runner.max_iters / iters_per_epoch)


@HOOKS.register_module()
class MIMScheduleHook(Hook):
    """Evaluates pure schedules of ``(epoch, max_epochs)`` and passes the values to the algorithm.

    * ``loss_weights``: ``{name: schedule}``, set with ``model.set_loss_weights(**values)`` before every iteration;
    * ``momentum``: a schedule for EMA targets; ``model.momentum_update(m)`` runs after every optimizer step.

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

    def after_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: Any = None) -> None:
        if self.momentum is not None:
            epoch, max_epochs = training_progress(runner)
            unwrap(runner.model).momentum_update(evaluate(self.momentum, epoch, max_epochs))
