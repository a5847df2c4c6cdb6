"""Online representation monitors: what the encoder's features are worth while it pretrains.

Every ``interval`` epochs (and before the first and after the last) :class:`RepresentationMonitorHook` extracts the
frozen encoder's pooled features (:func:`mim_zoo.engine.probes.pool`, eval mode, ``no_grad``, bf16 autocast where
the device runs it natively) of a labelled *bank* and a held-out labelled *query* split and logs

* ``monitor/knn_top1``: weighted k-NN top-1 of the queries against the bank (k = 20, cosine, ``exp(sim / 0.07)``;
  DINO's and solo-learn's online monitor, :func:`mim_zoo.engine.probes.knn_classify`);
* ``monitor/rankme``: RankMe of the bank features (Garrido et al. 2023; :func:`mim_zoo.engine.probes.rankme`), the
  effective rank, between 1 and the feature width;
* ``monitor/feature_std``: the per-dimension std of the L2-normalised features times ``sqrt(D)`` (SimSiam's collapse
  check; 0 = collapsed, about 1 = spread);
* ``monitor/seconds`` and ``monitor/epoch_fraction``: what the monitor cost, in seconds and as a fraction of the
  training epoch just timed (the epoch's iterations and the hooks before this one).

to the console and log file (one line), to the JSON log beside the training scalars (``vis_data/<time>.json``) and
to TensorBoard, through mmengine's visualizer; the scalars also go to the message hub. The evaluation runs under
:func:`mim_zoo.engine.reliability.rng_isolated`, so a monitored run trains exactly as an unmonitored one, and a
resumed run as an uninterrupted one. In a distributed run every rank extracts its share of each split (a
non-shuffling ``DefaultSampler``) and the features are all-gathered; under FSDP the hook steps aside (rank 0 cannot
run a sharded encoder alone).

Configs state the labelled splits next to their training data, as ``monitors = dict(enabled=..., interval=...,
bank=dict(dataset=..., batch_size=..., per_class=N), query=dict(...))`` (``configs/_base_/datasets/``): on in the
ImageNet configs, off in the tiny ones, whose runs take seconds. :func:`configure_monitors` (``tools/train.py``;
``--monitors`` switches them on for any config) turns that entry into ``default_hooks.monitors``.

Measured cost (2026-12-02, one thread, on 2 cores shared with other jobs, so the fractions are rough): the tiny MAE
config (``tools/train.py configs/mae/tiny_cpu.py --monitors``; 128 training images per epoch against 2,500 monitored)
logged 4.8-5.4 s per evaluation, 2.5-3.5 epochs; on the whole 2,000-image train split
(``--cfg-options train_dataloader.dataset.indices=None``) 2.4 and 4.3 s, 20% and 52% of an epoch. The ImageNet
configs evaluate 133,000 images forward-only every 10 epochs of 1.28M forward + backward; that cost has not been
measured here (the log line states it for every run).
"""

from __future__ import annotations

import time
from typing import Any

import torch
from mmengine.dist import all_gather, get_world_size
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from torch import Tensor

from ..flops import bf16_supported
from ..labelled import labelled_batches, labelled_loader
from ..probes import KNN_K, KNN_TEMPERATURE, frozen, knn_accuracy, normalised_std, pool, rankme
from ..registry import HOOKS
from ..reliability import rng_isolated

PRECISIONS = ("auto", "bf16", "fp32")


def configure_monitors(cfg: Any, enable: bool = False) -> None:
    """Install the config's ``monitors`` entry as ``default_hooks.monitors`` when it is enabled (or ``enable``).

    ``monitors = dict(enabled=bool, interval=int, bank=..., query=..., **hook arguments)``; a config without one
    cannot be monitored (there is no labelled split to measure on), which ``enable`` reports as an error.
    """
    spec = cfg.get("monitors")
    if not spec:
        if enable:
            raise ValueError("--monitors: the config states no labelled split for the monitors (a `monitors = dict("
                             "bank=..., query=...)` entry, as configs/_base_/datasets/shapes_tiny.py does)")
        return
    settings = {k: v for k, v in spec.items() if k != "enabled"}
    if enable or spec.get("enabled", False):
        cfg.setdefault("default_hooks", {})["monitors"] = dict(type="mim_zoo.RepresentationMonitorHook", **settings)


@HOOKS.register_module()
class RepresentationMonitorHook(Hook):
    """k-NN accuracy, RankMe and feature spread of the frozen encoder during pretraining (module docstring).

    Args:
        bank: the labelled reference split, a dataloader config: ``dataset`` (a labelled dataset config, e.g.
            mmpretrain's ``ImageNet`` or ``CustomDataset`` with a resize / centre-crop pipeline ending in
            ``PackInputs``), ``batch_size``, ``num_workers``, and optionally ``per_class`` (a fixed, seeded,
            class-balanced subset of that many images per class).
        query: the held-out labelled split classified against the bank, same keys.
        interval: epochs between evaluations (the last epoch is always evaluated).
        at_start: evaluate the encoder at initialisation too (epoch 0; not after a resume).
        k, temperature: of the weighted k-NN.
        rank_samples: bank features RankMe and the spread are computed on (a fixed subset if the bank is larger).
        precision: ``"auto"`` (bf16 autocast where the device runs it natively, else fp32), ``"bf16"``, ``"fp32"``.
        seed: of the subsets and of the random streams inside the evaluation.
    """

    priority = "LOW"  # after the schedule hooks; before the RNG-state (85) and checkpoint hooks (VERY_LOW)

    def __init__(self, bank: dict, query: dict, interval: int = 10, at_start: bool = True, k: int = KNN_K,
                 temperature: float = KNN_TEMPERATURE, rank_samples: int = 25_600, precision: str = "auto",
                 seed: int = 0) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"RepresentationMonitorHook precision must be one of {PRECISIONS}, got {precision!r}")
        if not isinstance(interval, int) or interval < 1:
            raise ValueError(f"RepresentationMonitorHook interval must be a positive number of epochs, got "
                             f"{interval!r}")
        self.splits = {"bank": bank, "query": query}
        self.interval, self.at_start, self.k, self.temperature = interval, at_start, k, temperature
        self.rank_samples, self.precision, self.seed = rank_samples, precision, seed
        self.loaders: dict[str, Any] = {}
        self.epoch_start = self.epoch_seconds = 0.0
        self.history: list[dict[str, float]] = []

    # --- when ------------------------------------------------------------------------------------------------------
    def before_train(self, runner: Any) -> None:
        if self.at_start and runner.epoch == 0 and self._can_run(runner):
            self.evaluate(runner)

    def before_train_epoch(self, runner: Any) -> None:
        self.epoch_start = time.perf_counter()

    def after_train_epoch(self, runner: Any) -> None:
        self.epoch_seconds = time.perf_counter() - self.epoch_start
        epoch = runner.epoch + 1
        if (epoch % self.interval == 0 or epoch == runner.max_epochs) and self._can_run(runner):
            self.evaluate(runner, epoch)

    def _can_run(self, runner: Any) -> bool:
        if is_model_wrapper(runner.model) and "FullyShard" in type(runner.model).__name__:
            if not self.history:
                runner.logger.warning("monitors: skipped under FSDP (a sharded encoder cannot be run from a hook)")
                self.history.append({})
            return False
        return True

    # --- what ------------------------------------------------------------------------------------------------------
    def evaluate(self, runner: Any, epoch: int = 0) -> dict[str, float]:
        """Extract both splits, compute the metrics, log them (module docstring); returns the metrics."""
        start = time.perf_counter()
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        with rng_isolated(self.seed):
            bank, bank_labels = self._features(runner, model, "bank")
            query, query_labels = self._features(runner, model, "query")
            spread = bank[torch.randperm(len(bank), device=bank.device)[: self.rank_samples]]
            metrics = {
                "knn_top1": knn_accuracy(bank, bank_labels, query, query_labels, self.k, self.temperature),
                "rankme": rankme(spread), "feature_std": normalised_std(spread),
            }
        metrics["seconds"] = time.perf_counter() - start
        if epoch and self.epoch_seconds:
            metrics["epoch_fraction"] = metrics["seconds"] / self.epoch_seconds
        self._log(runner, epoch, metrics, bank, query)
        self.history.append(dict(epoch=epoch, **metrics))
        return metrics

    def _dtype(self, device: torch.device) -> torch.dtype | None:
        use_bf16 = self.precision == "bf16" or (self.precision == "auto" and bf16_supported(device))
        return torch.bfloat16 if use_bf16 else None

    def _features(self, runner: Any, model: Any, split: str) -> tuple[Tensor, Tensor]:
        """``[N, D]`` pooled features and ``[N]`` labels of one split, in dataset order, gathered from every rank."""
        loader = self.loaders.get(split) or labelled_loader(self.splits[split], self.seed)
        self.loaders[split] = loader
        encoder, device = model.encoder, next(model.parameters()).device
        labels: list[Tensor] = []
        with frozen(encoder, self._dtype(device)):
            feats = [pool(encoder, encoder(images)) for images in labelled_batches(loader, model.data_preprocessor,
                                                                                   labels)]
        return _gather(torch.cat(feats), len(loader.dataset)), _gather(torch.cat(labels), len(loader.dataset))

    def _log(self, runner: Any, epoch: int, metrics: dict[str, float], bank: Tensor, query: Tensor) -> None:
        cost = f"{metrics['seconds']:.1f} s" + (f" = {metrics['epoch_fraction']:.1%} of an epoch"
                                                 if "epoch_fraction" in metrics else "")
        runner.logger.info(
            f"monitor, epoch {epoch}: k-NN top-1 {metrics['knn_top1']:.2%} (k={self.k}, {len(bank)} bank / "
            f"{len(query)} query images), RankMe {metrics['rankme']:.1f} of {bank.shape[1]} dims, feature std "
            f"{metrics['feature_std']:.2f} (0 = collapsed, 1 = spread); {cost}")
        scalars = {f"monitor/{k}": v for k, v in metrics.items()}
        for name, value in scalars.items():
            runner.message_hub.update_scalar(name, value)
        runner.visualizer.add_scalars(scalars, step=runner.iter, file_path=f"{runner.timestamp}.json")


def _gather(part: Tensor, size: int) -> Tensor:
    """Every rank's rows of a split back in dataset order (:func:`interleave` of the all-gathered parts)."""
    return part[:size] if get_world_size() == 1 else interleave(all_gather(part), size)


def interleave(parts: list[Tensor], size: int) -> Tensor:
    """The ranks' shares of a ``DefaultSampler(shuffle=False)`` split (rank ``r`` of ``W`` holds rows ``r, r + W,
    ...``, padded to equal counts from the start) -> the ``size`` rows in dataset order: ``W x [n, ...] -> [size,
    ...]``."""
    return torch.stack(parts, dim=1).reshape(-1, *parts[0].shape[1:])[:size]
