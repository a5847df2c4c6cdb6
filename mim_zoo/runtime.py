"""What ``tools/train.py`` does to a config before mmengine's Runner builds it.

Kept out of the tool so that tests and notebooks prepare configs exactly as the command line does.
"""

from __future__ import annotations

import os
import os.path as osp
import warnings

import torch
from mmengine.config import Config
from mmengine.utils import import_modules_from_strings

from .datasets import make_shapes_dataset
from .teachers import generate_teachers

IMAGENET_LAYOUT = "DATA_ROOT/train/<class>/<image>.JPEG (ImageNet's folder layout; one folder per class)"


def prepare_config(cfg: Config, amp: bool = False, resume: str | None = None) -> Config:
    """Apply the command-line switches and check what can be checked before building.

    Args:
        cfg: a loaded config (modified in place and returned).
        amp: switch to mmengine's ``AmpOptimWrapper`` (CUDA only).
        resume: ``"auto"`` (latest checkpoint of the work dir), a checkpoint path, or ``None``.
    """
    if cfg.get("custom_imports"):  # mmengine imports them only for text configs; pure-Python ones need this
        import_modules_from_strings(**cfg.custom_imports)
    if cfg.get("generate_shapes"):
        make_shapes_dataset(**cfg.generate_shapes)
    if cfg.get("generate_teachers"):  # tiny random teachers in the real on-disk layouts, for smoke runs only
        generate_teachers(cfg.generate_teachers)
    _check_data_root(cfg)
    if amp:
        if not torch.cuda.is_available():
            raise ValueError("--amp needs a CUDA device; on CPU train in fp32 (drop --amp)")
        cfg.optim_wrapper.type = "AmpOptimWrapper"
        cfg.optim_wrapper.setdefault("loss_scale", "dynamic")
    if resume is not None:
        cfg.resume = True
        if resume != "auto":
            if not osp.isfile(resume):
                raise FileNotFoundError(f"--resume: checkpoint {resume!r} does not exist")
            cfg.load_from = resume
        else:
            cfg.load_from = None  # the Runner finds WORK_DIR/last_checkpoint
    if not torch.cuda.is_available() and cfg.get("env_cfg", {}).get("dist_cfg", {}).get("backend") == "nccl":
        cfg.env_cfg.dist_cfg.backend = "gloo"
    _check_batch_size(cfg)
    return cfg


def _check_data_root(cfg: Config) -> None:
    dataset = cfg.get("train_dataloader", {}).get("dataset", {})
    root = dataset.get("data_root")
    if not root:
        return
    prefix = dataset.get("data_prefix") or dataset.get("split") or ""
    prefix = prefix.get("img_path", "") if isinstance(prefix, dict) else prefix
    folder = osp.join(root, prefix)
    if not osp.isdir(folder):
        raise FileNotFoundError(
            f"training data not found: {folder!r} is not a directory. Expected {IMAGENET_LAYOUT.replace('DATA_ROOT', root.rstrip('/'))}; "
            "point the config at it with --cfg-options train_dataloader.dataset.data_root=/path/to/imagenet"
        )


def _check_batch_size(cfg: Config) -> None:
    """Warn when the launched world size does not give the batch the learning rate was computed for."""
    intended = cfg.get("batch_size")
    per_gpu = cfg.get("train_dataloader", {}).get("batch_size")
    if not intended or not per_gpu:
        return
    world = int(os.environ.get("WORLD_SIZE", os.environ.get("SLURM_NTASKS", 1)))
    if world * per_gpu != intended:
        warnings.warn(
            f"the config computes its learning rate for a total batch of {intended} "
            f"({cfg.get('num_gpus')} GPUs x {cfg.get('batch_per_gpu')}), but this run has {world} process(es) x "
            f"{per_gpu} = {world * per_gpu}. Set num_gpus / batch_per_gpu in the config, or pass "
            "--cfg-options optim_wrapper.optimizer.lr=<lr for your batch>.",
            stacklevel=2,
        )
