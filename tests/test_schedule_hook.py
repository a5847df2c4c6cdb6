"""MIMScheduleHook (mim_zoo/engine/hooks/schedule.py) through a real Runner: the EMA steps once per optimizer
update, also under gradient accumulation (``optim_wrapper.accumulative_counts``), as BootMAE's official loop does."""

from __future__ import annotations

import pytest
import torch
from mmengine.hooks import Hook
from mmengine.optim import OptimWrapperDict

from mim_zoo.engine.hooks.schedule import optimizer_stepped
from mim_zoo.engine.reliability import RunAborted

from .helpers.training import build_runner, single_thread

CONFIG = "configs/combos/mae_momentum/tiny_cpu.py"  # MAE regressing a MomentumTarget's features
MOMENTUM = 0.5  # a constant, large enough that each EMA step shows


class WeightRecorder(Hook):
    """Snapshots of the online encoder and the momentum encoder before training and after every iteration (after
    ``MIMScheduleHook``, which has the higher priority)."""

    priority = "LOW"

    def __init__(self) -> None:
        self.online: list[dict[str, torch.Tensor]] = []
        self.ema: list[dict[str, torch.Tensor]] = []

    def _snapshot(self, runner) -> None:
        model = runner.model
        self.online.append({k: v.clone() for k, v in model.encoder.state_dict().items()})
        self.ema.append({k: v.clone() for k, v in model.target.ema.state_dict().items()})

    def before_train(self, runner) -> None:
        self._snapshot(runner)

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        self._snapshot(runner)


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(v, b[k]) for k, v in a.items())


@pytest.mark.parametrize("accumulation", [1, 2])
def test_ema_steps_once_per_optimizer_update(accumulation, tmp_path):
    recorder = WeightRecorder()
    options = {"train_cfg.max_epochs": 1, "train_dataloader.dataset.indices": 4 * 16, "param_scheduler": [],
               "optim_wrapper.optimizer.lr": 1e-3, "optim_wrapper.accumulative_counts": accumulation,
               "custom_hooks": [dict(type="MIMScheduleHook", momentum=dict(type="constant", value=MOMENTUM))],
               "default_hooks.checkpoint": None, "default_hooks.reconstruction_vis": None}
    runner = build_runner(CONFIG, str(tmp_path), options)
    runner.register_hook(recorder)
    with single_thread():
        runner.train()
    online, ema = recorder.online, recorder.ema
    assert len(online) == 5  # before training, then after each of the 4 iterations
    assert same(ema[0], online[0])  # the momentum encoder starts as a copy of the online one
    updates = [it for it in range(1, 5) if it % accumulation == 0]  # iterations that stepped the optimizer
    last_update = 0
    for it in range(1, 5):
        if it in updates:  # the encoder moved; the EMA moved towards it, once, from its value at the last update
            assert not same(online[it], online[it - 1]), f"iteration {it} stepped the optimizer"
            for key, value in ema[it].items():
                expected = MOMENTUM * ema[last_update][key] + (1 - MOMENTUM) * online[it][key]
                torch.testing.assert_close(value, expected, rtol=0, atol=1e-6, msg=f"EMA of {key} at iteration {it}")
            last_update = it
        else:  # a gradient-accumulation iteration: neither the encoder nor its EMA may move
            assert same(online[it], online[it - 1]), f"iteration {it} moved the encoder without an optimizer step"
            assert same(ema[it], ema[it - 1]), f"iteration {it} moved the EMA without an optimizer step"


def test_a_wrapper_whose_steps_it_cannot_read_is_refused():
    assert optimizer_stepped(OptimWrapperDict()) is False  # no wrapper in the dict, no step
    with pytest.raises(RunAborted, match="cannot tell the optimizer steps of a object"):
        optimizer_stepped(object())
