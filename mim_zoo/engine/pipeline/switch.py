"""``pipeline_impl``: which input pipeline a pretraining config trains with, chosen after ``--cfg-options``.

The ImageNet config (``configs/_base_/datasets/imagenet_pretrain.py``) lists every implementation as data, each a
``dict(pipeline=[...], collate_fn=..., data_preprocessor=<class>)`` under ``pipelines``, and names the default in
``pipeline_impl``. :func:`apply_pipeline_impl` (called by ``mim_zoo.engine.config.prepare_config``, i.e. by
``tools/train.py`` after the overrides) installs the chosen one into ``train_dataloader`` and the model's data
preprocessor, so ``--cfg-options pipeline_impl=mmpretrain`` switches all three together; a step is edited in
``pipelines.<impl>.pipeline``. It also resolves the loader's worker options (:func:`resolve_workers`).
"""

from __future__ import annotations

import copy
import inspect
import os

import torch
from mmengine.config import Config
from mmengine.registry import TRANSFORMS

WORKERS_CAP = 16


def apply_pipeline_impl(cfg: Config) -> None:
    """Install ``cfg.pipelines[cfg.pipeline_impl]`` (nothing for configs without ``pipeline_impl``), then give each
    step that reads images its config key (:func:`locate_steps`)."""
    impl = cfg.get("pipeline_impl")
    if impl is not None:
        if impl == "nvjpeg" and not torch.cuda.is_available():
            raise ValueError("pipeline_impl='nvjpeg' decodes the JPEGs on a CUDA GPU with nvjpeg, and this machine "
                             "has none; use pipeline_impl='fast' (the CPU pipeline with the same output distribution)")
        select_pipeline(cfg, impl)
    locate_steps(cfg)


def pipeline_key(cfg: Config) -> str:
    """The config key ``--cfg-options`` edits the training pipeline at: ``pipelines.<impl>.pipeline`` for a config
    with a ``pipeline_impl`` switch (:func:`select_pipeline` refuses direct edits), else
    ``train_dataloader.dataset.pipeline``."""
    impl = cfg.get("pipeline_impl")
    return f"pipelines.{impl}.pipeline" if impl is not None else "train_dataloader.dataset.pipeline"


def locate_steps(cfg: Config) -> None:
    """Tell each step of the training pipeline that takes a ``config_key`` (the steps that read images:
    ``CheckedLoadImage``, ``DecodeRandomResizedCrop``) its key, so that an unreadable file's error names the
    override that skips such files (``--cfg-options pipelines.fast.pipeline.0.on_corrupt=skip``). ``train_pipeline``
    gets the same keys while it equals the dataset's pipeline, so that a prepared config (the copy the Runner saves
    in the work dir) passes :func:`select_pipeline` again."""
    pipeline = ((cfg.get("train_dataloader") or {}).get("dataset") or {}).get("pipeline") or []
    twins = [pipeline] + ([cfg.train_pipeline] if cfg.get("train_pipeline") == pipeline else [])
    key = pipeline_key(cfg)
    for index, step in enumerate(pipeline):
        kind = step.get("type") if isinstance(step, dict) else None
        cls = TRANSFORMS.get(kind) if isinstance(kind, str) else kind
        if isinstance(cls, type) and "config_key" in inspect.signature(cls).parameters:
            for steps in twins:
                steps[index].setdefault("config_key", f"{key}.{index}")


def select_pipeline(cfg: Config, impl: str) -> None:
    """Install ``cfg.pipelines[impl]``: the dataset's pipeline (and ``train_pipeline``, which names it), the loader's
    collate function, the type of the model's data preprocessor (its arguments stay); resolve the worker options.

    Raises:
        ValueError: ``impl`` is not listed, or ``train_dataloader.dataset.pipeline`` was edited directly (it no longer
            equals ``train_pipeline``, which the config file set it to): that edit would be lost, so it is refused
            with the key to edit instead, ``pipelines.<impl>.pipeline``.
    """
    choices = cfg.get("pipelines") or {}
    if impl not in choices:
        raise ValueError(f"pipeline_impl={impl!r} is not one of the config's pipelines: {', '.join(choices)}")
    loader = cfg.train_dataloader
    if "train_pipeline" in cfg and loader.dataset.pipeline != cfg.train_pipeline:
        raise ValueError(f"train_dataloader.dataset.pipeline was changed (by --cfg-options?), but this config picks "
                         f"its pipeline with pipeline_impl={impl!r}: change pipelines.{impl}.pipeline instead")
    choice = choices[impl]
    cfg.train_pipeline = copy.deepcopy(choice.pipeline)
    loader.dataset.pipeline = copy.deepcopy(choice.pipeline)
    loader.collate_fn = copy.deepcopy(choice.collate_fn)
    if cfg.get("model", {}).get("data_preprocessor") is not None:
        cfg.model.data_preprocessor.type = choice.data_preprocessor
    resolve_workers(loader)


def resolve_workers(loader: dict) -> None:
    """``num_workers = "auto"`` -> :func:`default_workers`; with no workers, drop ``persistent_workers`` and
    ``prefetch_factor``, which torch's DataLoader refuses then (so ``--cfg-options train_dataloader.num_workers=0``
    works, e.g. to debug in one process)."""
    if loader.get("num_workers") == "auto":
        loader["num_workers"] = default_workers()
    if loader.get("num_workers") == 0:
        loader.pop("persistent_workers", None)
        loader.pop("prefetch_factor", None)


def default_workers(cap: int = WORKERS_CAP) -> int:
    """Data workers per training process: the cores this process may run on, shared with the other processes
    ``torchrun`` started on this machine (``LOCAL_WORLD_SIZE``; Slurm tasks have their own cores already), less one
    for the process itself, between 1 and ``cap``."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return max(1, min(cap, cores // local - 1))
