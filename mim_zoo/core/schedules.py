"""Schedules as pure functions of training progress (STYLE R16), evaluated by ``mim_zoo.engine.hooks.MIMScheduleHook``.

A schedule config is ``dict(type=<name in SCHEDULES>, **kwargs)``; :func:`evaluate` calls the function with the
current ``epoch`` and ``max_epochs``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any


def piecewise_linear(epoch: float, max_epochs: int, points: Sequence[Sequence[float]]) -> float:
    """Linear interpolation through ``points = [(epoch_0, v_0), (epoch_1, v_1), ...]``, constant outside.

    BootMAE's momentum (LightDXY/BootMAE ``utils.py:adjust_ema_momentum``, base model with
    ``--model_ema_dynamic``) is ``points=[(0, 0.999), (100, 0.9999), (400, 0.99999)]``; the large model (no
    ``_dynamic``) is ``[(0, 0.999), (100, 0.9999)]``.
    """
    pts = sorted((float(e), float(v)) for e, v in points)
    if not pts:
        raise ValueError("piecewise_linear needs at least one (epoch, value) point")
    if epoch <= pts[0][0]:
        return pts[0][1]
    for (e0, v0), (e1, v1) in itertools.pairwise(pts):
        if epoch <= e1:
            return v0 + (epoch - e0) / (e1 - e0) * (v1 - v0)
    return pts[-1][1]


def scaled_piecewise_linear(epoch: float, max_epochs: int, points: Sequence[Sequence[float]],
                            reference_epochs: int) -> float:
    """:func:`piecewise_linear` with the breakpoints stretched from ``reference_epochs`` to ``max_epochs``.

    Lets a short run (a tiny CPU config) follow the shape of an 800-epoch schedule.
    """
    scale = max_epochs / reference_epochs
    return piecewise_linear(epoch, max_epochs, [(e * scale, v) for e, v in points])


def linear_warmup(epoch: float, max_epochs: int, fraction: float = 0.25, final: float = 1.0) -> float:
    """``final * min((epoch + 1) / (fraction * max_epochs), 1)``.

    BootMAE's feature-loss weight (LightDXY/BootMAE ``run_pretraining.py``):
    ``min(4 * feature_weight * (epoch + 1) / epochs, feature_weight)``, i.e. ``fraction=0.25``.
    """
    return final * min((epoch + 1) / (fraction * max_epochs), 1.0)


def constant(epoch: float, max_epochs: int, value: float = 1.0) -> float:
    return value


SCHEDULES: dict[str, Callable[..., float]] = {
    "piecewise_linear": piecewise_linear,
    "scaled_piecewise_linear": scaled_piecewise_linear,
    "linear_warmup": linear_warmup,
    "constant": constant,
}


def evaluate(cfg: dict[str, Any], epoch: float, max_epochs: int) -> float:
    """Evaluate the schedule ``cfg = dict(type=name, **kwargs)`` at ``epoch`` of ``max_epochs``."""
    kwargs = dict(cfg)
    name = kwargs.pop("type")
    if name not in SCHEDULES:
        raise KeyError(f"unknown schedule {name!r}; available: {', '.join(sorted(SCHEDULES))}")
    return SCHEDULES[name](epoch, max_epochs, **kwargs)
