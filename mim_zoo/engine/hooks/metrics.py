"""Record the metrics of every evaluation to a JSON file (the downstream benchmark runner reads it)."""

from __future__ import annotations

import json
import os
import os.path as osp
from typing import Any

from mmengine.dist import is_main_process
from mmengine.hooks import Hook

from ..registry import HOOKS


@HOOKS.register_module()
class RecordMetricsHook(Hook):
    """Write the metrics of every evaluation to ``out_file`` (JSON, main process); the last one stays."""

    priority = "LOWEST"

    def __init__(self, out_file: str) -> None:
        self.out_file = out_file

    def _write(self, runner: Any, metrics: dict | None, phase: str) -> None:
        if not metrics or not is_main_process():
            return
        record = dict(phase=phase, epoch=runner.epoch, iter=runner.iter,
                      metrics={k: float(v) for k, v in metrics.items() if _is_number(v)})
        os.makedirs(osp.dirname(osp.abspath(self.out_file)), exist_ok=True)
        with open(self.out_file, "w") as f:
            json.dump(record, f, indent=2)

    def after_val_epoch(self, runner: Any, metrics: dict | None = None) -> None:
        self._write(runner, metrics, "val")

    def after_test_epoch(self, runner: Any, metrics: dict | None = None) -> None:
        self._write(runner, metrics, "test")


def _is_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True
