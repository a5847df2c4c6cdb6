"""What ``tools/train.py`` does to a config before mmengine's Runner builds it.

Kept out of the tool so that tests and notebooks prepare configs exactly as the command line does.
"""

from __future__ import annotations

import os
import os.path as osp
import warnings
from importlib import import_module

import torch
from mmengine.config import Config
from mmengine.utils import import_modules_from_strings

from .config_checks import (
    check_config_types,
    check_dataset_root,
    check_model_builds,
    check_runner_types,
    check_strategy,
    create_work_dir,
    drop_disabled_hooks,
)
from .reliability import checkpoint_problem, find_resume_checkpoint


def prepare_config(cfg: Config, amp: bool = False, resume: str | None = None) -> Config:
    """Apply the command-line switches and check what can be checked before building.

    Args:
        cfg: a loaded config (modified in place and returned).
        amp: switch to mmengine's ``AmpOptimWrapper`` (CUDA only).
        resume: ``"auto"`` (latest checkpoint of the work dir), a checkpoint path, or ``None``.
    """
    if cfg.get("custom_imports"):  # mmengine imports them only for text configs; pure-Python ones need this
        import_modules_from_strings(**cfg.custom_imports)
    check_config_types(cfg)  # after custom_imports: they may register the types
    check_strategy(cfg)
    drop_disabled_hooks(cfg)
    from .pipeline import apply_pipeline_impl, pipeline_key  # imports mmpretrain's transforms: after the cheap checks

    apply_pipeline_impl(cfg)  # pipeline_impl: the input pipeline, its collate function and data preprocessor
    check_runner_types(cfg, pipeline_key(cfg))
    make_synthetic_data(cfg)
    _check_data_root(cfg)
    if amp:
        if not torch.cuda.is_available():
            raise ValueError("--amp needs a CUDA device; on CPU train in fp32 (drop --amp)")
        cfg.optim_wrapper.type = "AmpOptimWrapper"
        cfg.optim_wrapper.setdefault("loss_scale", "dynamic")
    if resume is not None:
        cfg.resume = True
        if resume != "auto":
            problem = checkpoint_problem(resume)
            if problem:
                error = FileNotFoundError if not osp.exists(resume) else ValueError
                raise error(f"--resume {resume}: {problem}. Pass a complete checkpoint, or --resume without a path "
                            "to take the newest complete one of the work dir")
            cfg.load_from = resume
        else:  # last_checkpoint if complete, else the newest complete checkpoint; None: nothing saved yet
            cfg.load_from = find_resume_checkpoint(cfg.work_dir)
            cfg.resume = cfg.load_from is not None
    if not torch.cuda.is_available():
        _adapt_to_cpu(cfg)
    _check_batch_size(cfg)
    check_model_builds(cfg)  # a refused value names its key, before the Runner writes its log
    if cfg.get("work_dir"):
        create_work_dir(cfg.work_dir)
    return cfg


def make_synthetic_data(cfg: Config) -> None:
    """Write the synthetic files a config asks for, before anything reads them.

    ``synthetic_data = [dict(type=<function>, **kwargs), ...]``: functions of :mod:`mim_zoo.synthetic` (the embedded
    shapes, the toy ADE20K/COCO sets, random teacher files), named by object in pure-Python configs or by dotted path
    in text configs. Each generator is idempotent: files it wrote with the same arguments are kept.
    """
    for spec in cfg.get("synthetic_data") or []:
        kwargs = dict(spec)
        make = kwargs.pop("type", None)
        if isinstance(make, str) and "." in make:
            module, _, name = make.rpartition(".")
            make = getattr(import_module(module), name)
        if not callable(make):
            raise ValueError(f"synthetic_data entries are dict(type=<function>, **kwargs); got type={make!r}")
        make(**kwargs)


def _adapt_to_cpu(cfg: Config) -> None:
    """Multi-process training without CUDA (tests, debugging): gloo, and DDP without device ids."""
    if cfg.get("env_cfg", {}).get("dist_cfg", {}).get("backend") == "nccl":
        cfg.env_cfg.dist_cfg.backend = "gloo"
    if cfg.get("launcher", "none") != "none" and cfg.get("model_wrapper_cfg") is None and not cfg.get("strategy"):
        # mmengine's default wrapper passes device_ids=[LOCAL_RANK], which torch's DDP rejects for CPU modules
        cfg.model_wrapper_cfg = dict(type="MMDistributedDataParallel", device_ids=None, broadcast_buffers=False,
                                     find_unused_parameters=cfg.get("find_unused_parameters", False))


def _check_data_root(cfg: Config) -> None:
    check_dataset_root(cfg.get("train_dataloader", {}).get("dataset", {}))


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
