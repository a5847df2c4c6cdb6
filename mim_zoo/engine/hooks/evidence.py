"""Record what a pretraining run was and how fast it ran, in every checkpoint (:mod:`mim_zoo.engine.evidence`)."""

from __future__ import annotations

import copy
import json
import os.path as osp
import time
from typing import Any

import torch
from mmengine.dist import get_world_size, is_main_process
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.optim import AmpOptimWrapper

from ..evidence import environment, summarise_sessions
from ..flops import flops_per_image, matmul_peak
from ..registry import HOOKS
from ..reliability import rng_isolated


@HOOKS.register_module()
class RunEvidenceHook(Hook):
    """Store the run's evidence in ``checkpoint['meta']['evidence']`` and ``WORK_DIR/evidence.json``.

    The record: :func:`mim_zoo.engine.evidence.environment` of the resolved config (config hash, git commit, package
    versions, device name and count) and one entry per training session (a resumed run appends one): epochs and
    iterations covered, images (all ranks), seconds from the first iteration to the end of the last (the hooks
    between included: what a user waits), images/s, matmul FLOPs per image of one training step
    (:func:`mim_zoo.engine.flops.flops_per_image` on a copy of the model and two images of the first batch: teachers
    and momentum encoders included), the device's measured matmul peak in the training dtype, and the utilisation
    ``img/s * FLOPs per image / (peak * devices)``.

    Measurements run on the main process under :func:`mim_zoo.engine.reliability.rng_isolated` (training draws
    exactly what it would without this hook) before the clock starts; under FSDP the FLOPs are not counted (a
    shard cannot run alone) and the utilisation is left out.

    Args:
        peak_sizes: matrix sizes of the matmul-peak measurement (default: 4096 and 8192 on a GPU, 1024 on a CPU).
    """

    priority = "VERY_LOW"

    def __init__(self, peak_sizes: tuple[int, ...] | None = None) -> None:
        self.peak_sizes = peak_sizes
        self.previous: list[dict[str, Any]] = []
        self.session: dict[str, Any] = {}
        self.env: dict[str, Any] = {}
        self.start: float | None = None

    def after_load_checkpoint(self, runner: Any, checkpoint: dict) -> None:
        if runner.cfg.get("resume"):  # a resumed run continues the record; a `load_from` initialisation does not
            self.previous = list(((checkpoint.get("meta") or {}).get("evidence") or {}).get("sessions", []))

    def before_train(self, runner: Any) -> None:
        self.env = environment(runner.cfg, device=self._device(runner), world_size=get_world_size())
        self.session = dict(start_epoch=runner.epoch, start_iter=runner.iter, images=0, seconds=0.0,
                            flops_per_image=None, peak_flops_per_s=None, dtype=self._dtype(runner))
        self.start = None

    def before_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None) -> None:
        if self.start is None:  # measured once, before the clock starts
            if is_main_process():
                self._measure(runner, data_batch)
            self.start = time.perf_counter()

    def after_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: Any = None) -> None:
        self.session["images"] += len(data_batch["data_samples"]) * get_world_size()
        self.session.update(end_epoch=runner.epoch + 1, end_iter=runner.iter + 1,
                            seconds=time.perf_counter() - self.start)

    def before_save_checkpoint(self, runner: Any, checkpoint: dict) -> None:
        checkpoint.setdefault("meta", {})["evidence"] = self.record()

    def after_train(self, runner: Any) -> None:
        if is_main_process():
            with open(osp.join(runner.work_dir, "evidence.json"), "w") as f:
                json.dump(self.record(), f, indent=1)

    def record(self) -> dict[str, Any]:
        """The environment and every session so far (this one up to now), with the summary over sessions."""
        session = dict(self.session)
        session["img_per_s"] = session["images"] / session["seconds"] if session.get("seconds") else None
        session["utilisation"] = self._utilisation(session)
        sessions = [*self.previous, session] if session else list(self.previous)
        return {**self.env, "sessions": sessions, **summarise_sessions(sessions)}

    # --- measurements ----------------------------------------------------------------------------------------------
    @staticmethod
    def _device(runner: Any) -> torch.device:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        return next(model.parameters()).device

    @staticmethod
    def _dtype(runner: Any) -> str:
        """``"bf16"`` under mixed precision (fp16 and bf16 share the matmul peak of the GPUs this targets), else
        ``"fp32"``."""
        return "bf16" if isinstance(runner.optim_wrapper, AmpOptimWrapper) else "fp32"

    def _measure(self, runner: Any, data_batch: Any) -> None:
        device = self._device(runner)
        sizes = self.peak_sizes or ((4096, 8192) if device.type == "cuda" else (1024,))
        with rng_isolated(0):
            self.session["peak_flops_per_s"] = matmul_peak(device, self.session["dtype"], sizes, reps=2)["flops_per_s"]
            if not (is_model_wrapper(runner.model) and "FullyShard" in type(runner.model).__name__):
                self.session["flops_per_image"] = self._count_flops(runner, data_batch)

    @staticmethod
    def _count_flops(runner: Any, data_batch: Any) -> float:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        twin = copy.deepcopy(model).train()
        inputs = twin.data_preprocessor(data_batch, False)["inputs"]
        images = (inputs[0] if isinstance(inputs, (list, tuple)) else inputs)[:2]  # two: MixMAE pairs images

        def loss(x: torch.Tensor) -> torch.Tensor:
            return sum(v for k, v in twin(x, mode="loss").items() if "loss" in k)  # mmengine's parse_losses rule

        return flops_per_image(loss, images)  # the copy is dropped on return

    def _utilisation(self, session: dict[str, Any]) -> float | None:
        needed = (session.get("img_per_s"), session.get("flops_per_image"), session.get("peak_flops_per_s"))
        if None in needed or not all(needed):
            return None
        img_per_s, flops, peak = needed
        return img_per_s * flops / (peak * self.env["device"]["count"])
