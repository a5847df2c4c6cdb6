"""Pictures during training: reconstructions of fixed images and the loss curve, every few epochs."""

from __future__ import annotations

import os.path as osp
from typing import Any

import numpy as np
from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from ..registry import HOOKS
from ..reliability import rng_isolated
from ..visualization import plot_loss_curve, render_grid, visualize_batch


def _due(runner: Any, interval: int) -> bool:
    epoch = runner.epoch + 1
    return epoch % interval == 0 or epoch == runner.max_epochs


@HOOKS.register_module()
class ReconstructionVisHook(Hook):
    """Every ``interval`` epochs (and after the last), draw reconstructions of fixed training images.

    The same images (spread over the training set; rows labelled with their file names), crops and masks every time,
    the columns explained in a caption (the algorithm's ``reconstruction_notes``), drawn under a fixed seed without
    touching the training random streams (so resume stays bit-exact). Writes
    ``WORK_DIR/<out_dir>/reconstruction_epoch_N.png`` and sends the picture to the visualizer (TensorBoard). Rank 0
    only; skipped under FSDP, whose shards rank 0 cannot run alone.

    Args:
        interval: epochs between pictures.
        num_images: images (rows); keep it even for algorithms that pair samples (MixMAE).
        seed: seed of the crops and masks.
        out_dir: folder under the work dir.
    """

    priority = "LOW"

    def __init__(self, interval: int = 1, num_images: int = 4, seed: int = 0, out_dir: str = "vis") -> None:
        self.interval, self.num_images, self.seed, self.out_dir = interval, num_images, seed, out_dir

    def after_train_epoch(self, runner: Any) -> None:
        if not is_main_process() or not _due(runner, self.interval):
            return
        if is_model_wrapper(runner.model) and "FullyShard" in type(runner.model).__name__:
            return
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        dataset = runner.train_dataloader.dataset
        with rng_isolated(self.seed):
            picks = np.linspace(0, len(dataset) - 1, min(self.num_images, len(dataset))).round().astype(int)
            samples = [dataset[int(i)] for i in picks]  # spread over the dataset (its classes, for ImageNet)
            batch = runner.train_dataloader.collate_fn(samples)  # the training collate, e.g. default_collate
            images = model.data_preprocessor(batch, False)["inputs"]
            images = images[0] if isinstance(images, (list, tuple)) else images
            panels = visualize_batch(model, images, self.seed)
        names = [osp.basename(s["data_samples"].metainfo.get("img_path") or f"sample {i}")
                 for s, i in zip(samples, picks, strict=True)]
        out_file = osp.join(runner.work_dir, self.out_dir, f"reconstruction_epoch_{runner.epoch + 1}.png")
        rgb = render_grid(panels, out_file, title=f"{type(model).__name__}, epoch {runner.epoch + 1} (training images)",
                          row_labels=names, notes=model.reconstruction_notes)
        runner.visualizer.add_image("reconstruction", rgb, step=runner.epoch + 1)
        runner.logger.info(f"reconstructions written to {out_file}")


@HOOKS.register_module()
class LossCurveHook(Hook):
    """Every ``interval`` epochs (and after the last), plot the logged losses to ``WORK_DIR/<out_file>``."""

    priority = "LOWEST"  # after LoggerHook has written the epoch's scalars

    def __init__(self, interval: int = 1, out_file: str = "vis/loss_curve.png") -> None:
        self.interval, self.out_file = interval, out_file

    def after_train_epoch(self, runner: Any) -> None:
        if is_main_process() and _due(runner, self.interval):
            model = runner.model.module if is_model_wrapper(runner.model) else runner.model
            plot_loss_curve(runner.work_dir, osp.join(runner.work_dir, self.out_file),
                            title=f"{type(model).__name__} training loss ({osp.basename(runner.work_dir)})")
