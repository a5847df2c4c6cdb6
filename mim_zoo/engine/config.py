"""What ``tools/train.py`` does to a config before mmengine's Runner builds it.

Kept out of the tool so that tests, benchmarks and notebooks prepare configs exactly as the command line does:
:func:`load_config` reads a config and applies overrides, after which a pretraining config's ``recipe`` is resolved
(:mod:`mim_zoo.engine.recipe`: batch, lr, schedule and loop from the recipe and the launched world size);
:func:`prepare_config` resolves it again if the config was changed since (idempotent otherwise), applies the
command-line switches, writes the synthetic data a config asks for and checks what can be checked before building.
"""

from __future__ import annotations

import os
import os.path as osp
import warnings
from collections.abc import Callable, Mapping
from importlib import import_module
from typing import Any

import torch
from mmengine.config import Config
from mmengine.logging import print_log
from mmengine.registry import DATASETS, DefaultScope
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
from .env import check_run_environment
from .recipe import launched_world_size, resolve_recipe
from .reliability import checkpoint_problem, find_resume_checkpoint


def load_config(path: str | os.PathLike, cfg_options: Mapping[str, Any] | None = None) -> Config:
    """``Config.fromfile(path)`` with ``cfg_options`` merged (as ``--cfg-options``) and the recipe resolved for them."""
    cfg = Config.fromfile(str(path))
    if cfg_options:
        cfg.merge_from_dict(dict(cfg_options))
    resolve_recipe(cfg, overrides=cfg_options)
    return cfg


def prepare_config(cfg: Config, amp: bool = False, resume: str | None = None) -> Config:
    """Resolve the recipe, apply the command-line switches and check what can be checked before building.

    Args:
        cfg: a loaded config (modified in place and returned); with overrides applied through :func:`load_config`,
            so that the recipe can tell an override from the config's own values.
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
    recipe = resolve_recipe(cfg)
    check_runner_types(cfg, pipeline_key(cfg))
    make_synthetic_data(cfg)
    _check_data_root(cfg)
    resolve_dataset_indices(cfg)
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
    if recipe is None:
        _check_batch_size(cfg)
    check_run_environment(cfg)  # what the run asks of this machine's device: fails or warns with the fix
    check_model_builds(cfg)  # a refused value names its key, before the Runner writes its log
    if cfg.get("work_dir"):
        create_work_dir(cfg.work_dir)
    if recipe is not None and int(os.environ.get("RANK", 0)) == 0:  # a run that starts: what its recipe resolved to
        print_log(recipe.summary(), logger="current")
    return cfg


def make_synthetic_data(cfg: Config) -> None:
    """Write the synthetic files a config asks for, before anything reads them.

    ``synthetic_data = [dict(type=<function>, **kwargs), ...]``: functions of :mod:`mim_zoo.synthetic` (the embedded
    shapes, the toy ADE20K/COCO sets, random teacher files), named by object in pure-Python configs or by dotted path
    in text configs. Each generator is idempotent: files it wrote with the same arguments are kept.
    """
    for spec in cfg.get("synthetic_data") or []:
        make, kwargs = _function_spec(spec, "synthetic_data entries")
        make(**kwargs)


def resolve_dataset_indices(cfg: Config) -> None:
    """Replace ``train_dataloader.dataset.indices = dict(type=<function>, **kwargs)`` by the indices it computes.

    The function gets the dataset's labels (``gt_label`` of every sample, in the dataset's order) and the class
    names: ``fn(labels, class_names=..., **kwargs) -> list[int]``, e.g.
    :func:`mim_zoo.engine.subsets.class_balanced_indices`. An int or a list is mmengine's own ``indices``, kept.
    """
    dataset_cfg = (cfg.get("train_dataloader") or {}).get("dataset") or {}
    spec = dataset_cfg.get("indices")
    if not isinstance(spec, Mapping):
        return
    select, kwargs = _function_spec(spec, "train_dataloader.dataset.indices")
    with DefaultScope.overwrite_default_scope(cfg.get("default_scope")):
        dataset = DATASETS.build({**dataset_cfg, "indices": None, "pipeline": [], "lazy_init": False})
    try:
        labels = [int(dataset.get_data_info(i)["gt_label"]) for i in range(len(dataset))]
    except KeyError as err:
        raise ValueError(f"train_dataloader.dataset.indices={spec.get('type')!r} needs labelled samples (class "
                         f"folders); {dataset_cfg.get('data_root')!r} has none: give an int or None") from err
    dataset_cfg.indices = select(labels, class_names=list(dataset.metainfo.get("classes") or []) or None, **kwargs)


def _function_spec(spec: Mapping[str, Any], what: str) -> tuple[Callable, dict[str, Any]]:
    """``dict(type=<function or dotted path>, **kwargs)`` -> (function, kwargs)."""
    kwargs = dict(spec)
    function = kwargs.pop("type", None)
    if isinstance(function, str) and "." in function:
        module, _, name = function.rpartition(".")
        function = getattr(import_module(module), name)
    if not callable(function):
        raise ValueError(f"{what} are dict(type=<function>, **kwargs); got type={function!r}")
    return function, kwargs


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
    """For a config without a recipe (the downstream benchmark configs, text-style with ``batch_size = num_gpus *
    batch_per_gpu``): warn when the launched world size does not give the batch its lr was computed for."""
    intended = cfg.get("batch_size")
    per_gpu = cfg.get("train_dataloader", {}).get("batch_size")
    if not intended or not per_gpu:
        return
    world = launched_world_size()
    if world * per_gpu != intended:
        warnings.warn(
            f"the config computes its learning rate for a total batch of {intended} "
            f"({cfg.get('num_gpus')} GPUs x {cfg.get('batch_per_gpu')}), but this run has {world} process(es) x "
            f"{per_gpu} = {world * per_gpu}. Set num_gpus / batch_per_gpu in the config, or pass "
            "--cfg-options optim_wrapper.optimizer.lr=<lr for your batch>.",
            stacklevel=2,
        )
