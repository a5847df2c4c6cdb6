"""Checks before the first iteration: the batch and image size the algorithm can take, and checkpoints that fit."""

from __future__ import annotations

from typing import Any

import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from ...core.algorithms.base import BaseMIM
from ...core.checkpoints.read import describe_state_dict_mismatch
from ...core.contracts import EncoderProtocol
from ..registry import HOOKS
from ..reliability import RunAborted, rng_isolated


def _unwrap(model: Any) -> Any:
    return model.module if is_model_wrapper(model) else model


def _per_process_batches(dataloader: Any, world_size: int) -> set[int]:
    """Every batch size one process will see: the full one, plus the last partial one without ``drop_last``."""
    batch = dataloader.batch_size
    sizes = {batch}
    if not dataloader.drop_last:
        per_process = -(-len(dataloader.dataset) // world_size)  # DefaultSampler pads to equal shares
        if per_process % batch:
            sizes.add(per_process % batch)
    return sizes


@HOOKS.register_module()
class PreflightHook(Hook):
    """Check, before the first iteration, what would otherwise fail in it (or worse, train wrongly).

    For a mim_zoo algorithm (a ``BaseMIM``; other models pass unchecked):

    * ``model.check_batch_size(n)`` (e.g. MixMAE: ``n`` must be even) for every per-process batch size the loader
      yields, including a last partial batch when ``drop_last=False``;
    * one training sample (drawn without touching the training random streams, collated and preprocessed as in
      training) against the encoder's ``check_input`` (``EncoderProtocol``: the image size the encoder was built
      for).
    """

    priority = "VERY_HIGH"

    def before_train(self, runner: Any) -> None:
        model = _unwrap(runner.model)
        if not isinstance(model, BaseMIM):
            return
        loader = runner.train_dataloader
        self._check_batch_sizes(model, loader, runner.world_size)
        if len(loader.dataset):
            self._check_image_size(model, loader)

    @staticmethod
    def _check_batch_sizes(model: BaseMIM, loader: Any, world: int) -> None:
        for size in sorted(_per_process_batches(loader, world)):
            try:
                model.check_batch_size(size)
            except ValueError as err:
                raise RunAborted(f"{type(model).__name__} cannot train on a per-process batch of {size} "
                                 f"({world} process(es), train_dataloader.batch_size={loader.batch_size}, "
                                 f"drop_last={loader.drop_last}): {err}. Set train_dataloader.batch_size to a size it "
                                 "takes, with drop_last=True so that no smaller last batch is drawn") from err

    @staticmethod
    def _check_image_size(model: BaseMIM, loader: Any) -> None:
        with rng_isolated(), torch.no_grad():  # one sample as the model receives it (pipelines may decode late)
            batch = model.data_preprocessor(loader.collate_fn([loader.dataset[0]]), False)["inputs"]
        sample = (batch[0] if isinstance(batch, (list, tuple)) else batch)[0]
        encoder: EncoderProtocol = model.encoder
        try:
            encoder.check_input(torch.zeros(1, *sample.shape))
        except ValueError as err:
            patch = encoder.patch_size
            hint = (f" (an encoder's image side must be a multiple of its patch size, {patch})"
                    if any(side % patch for side in sample.shape[-2:]) else "")
            raise RunAborted(f"the training pipeline yields {tuple(sample.shape)} images, which the encoder "
                             f"cannot take: {err}{hint}") from err


class CheckpointMismatchError(RunAborted):
    """A checkpoint's weights do not fit the model being trained."""


@HOOKS.register_module()
class CheckpointCompatHook(Hook):
    """Refuse a ``load_from`` / ``--resume`` checkpoint whose weights do not fit the model.

    mmengine loads ``load_from`` non-strictly, so a checkpoint of another algorithm or size only logs warnings and
    trains from a half-random model. This hook raises instead, listing the mismatched keys.

    Args:
        allow_missing: model key prefixes the checkpoint may lack (e.g. ``("decoder.",)`` to start a new decoder on
            a pretrained encoder).
    """

    priority = "VERY_HIGH"

    def __init__(self, allow_missing: tuple[str, ...] = ()) -> None:
        self.allow_missing = tuple(allow_missing)

    def after_load_checkpoint(self, runner: Any, checkpoint: dict) -> None:
        model_state = _unwrap(runner.model).state_dict()
        given = {k.removeprefix("module."): v for k, v in checkpoint.get("state_dict", checkpoint).items()}
        expected = {k: v for k, v in model_state.items() if k in given or not k.startswith(self.allow_missing)}
        problem = describe_state_dict_mismatch(expected, given)
        if problem:
            path = runner.cfg.get("load_from") or "the checkpoint"
            run = checkpoint.get("meta", {}).get("experiment_name")
            origin = f" (written by run {run!r})" if run else ""
            raise CheckpointMismatchError(
                f"{path}{origin} does not fit {type(_unwrap(runner.model)).__name__} of this config: {problem}. "
                "Is it from another algorithm or model size? Load a checkpoint written with this config; an "
                "official or exported file needs converting first (mim_zoo.converters).")
