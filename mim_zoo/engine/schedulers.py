"""The pretraining learning-rate schedule: linear warm-up from 0, then a half-cycle cosine to an absolute floor.

The curve of facebookresearch/mae ``util/lr_sched.py:adjust_learning_rate`` (copied by Sense-X/MixMIM
``util/lr_sched.py``), which the official loops evaluate before every iteration at the fractional epoch
``iteration / iterations_per_epoch``; LightDXY/BootMAE ``utils.py:cosine_scheduler`` tabulates the same curve per
iteration. :func:`warmup_cosine` is that closed form; :class:`WarmupCosineLR` runs it as an mmengine parameter
scheduler. Unlike mmengine's ``LinearLR`` + ``CosineAnnealingLR`` pair, the warm-up may end inside an epoch (a
10-epoch run of an 800-epoch recipe warms up for half an epoch; a pair converted to iterations would truncate a
warm-up shorter than one iteration to an empty, invalid scheduler), and every value comes from the formula, not from
a recursion over the previous one.
"""

from __future__ import annotations

import math

from mmengine.optim.scheduler.lr_scheduler import LRSchedulerMixin
from mmengine.optim.scheduler.param_scheduler import INF, OptimizerType, _ParamScheduler

from .registry import RUNNER_REGISTRIES

PARAM_SCHEDULERS = RUNNER_REGISTRIES["PARAM_SCHEDULERS"]


def warmup_cosine(step: float, total: float, warmup: float, peak: float, floor: float = 0.0) -> float:
    """The learning rate at ``step`` of ``total`` (any unit: iterations, or fractional epochs as in MAE).

    ``peak * step / warmup`` while ``step < warmup``, then
    ``floor + (peak - floor) * (1 + cos(pi * (step - warmup) / (total - warmup))) / 2``, and ``floor`` after ``total``.
    """
    if step < warmup:
        return peak * step / warmup
    progress = min((step - warmup) / (total - warmup), 1.0)
    return floor + (peak - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


@PARAM_SCHEDULERS.register_module()
class WarmupCosineLR(LRSchedulerMixin, _ParamScheduler):
    """:func:`warmup_cosine` over ``[begin, end)``: each parameter group from 0 to its initial lr, then to ``eta_min``.

    Args:
        optimizer: the optimizer (wrapper) whose groups' ``lr`` it sets.
        warmup: length of the warm-up, in the scheduler's steps (epochs with ``by_epoch=True``; with
            ``convert_to_iter_based=True`` mmengine converts epochs to iterations, fractions of an epoch included).
        eta_min: the absolute lr at ``end`` (MAE ``--min_lr``; BootMAE's 1e-4 is not scaled with the batch).
        begin, end: the steps the schedule spans; ``end`` is where the cosine reaches ``eta_min``.
    """

    def __init__(self, optimizer: OptimizerType, warmup: float, eta_min: float = 0.0, begin: int = 0,
                 end: int = INF, last_step: int = -1, by_epoch: bool = True, verbose: bool = False) -> None:
        if end == INF:
            raise ValueError("WarmupCosineLR needs a finite `end`: the step at which the cosine reaches eta_min")
        if not 0 <= warmup < end - begin:
            raise ValueError(f"WarmupCosineLR: warmup={warmup} must lie in [0, end - begin = {end - begin})")
        self.warmup = float(warmup)
        self.eta_min = float(eta_min)
        super().__init__(optimizer, begin=begin, end=end, last_step=last_step, by_epoch=by_epoch, verbose=verbose)

    @classmethod
    def build_iter_from_epoch(cls, *args, warmup: float, begin: int = 0, end: int = INF, by_epoch: bool = True,
                              epoch_length: int | None = None, **kwargs) -> WarmupCosineLR:
        """The same schedule in iterations: boundaries times the epoch length; the warm-up keeps its fraction."""
        if not by_epoch or not epoch_length:
            raise ValueError("convert_to_iter_based needs by_epoch=True and a train dataloader with a length")
        end = end if end == INF else int(end * epoch_length)
        return cls(*args, warmup=warmup * epoch_length, begin=int(begin * epoch_length), end=end, by_epoch=False,
                   **kwargs)

    def _get_value(self) -> list[float]:
        step, total = self.last_step - self.begin, self.end - self.begin
        return [warmup_cosine(step, total, self.warmup, base, self.eta_min) for base in self.base_values]
