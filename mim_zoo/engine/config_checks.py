"""Bad input gets a clear error naming the problem and the fix, before hours of compute are spent on it.

* :func:`check_config_types`: unknown ``model`` / hook types list the registered names (mmengine's own message does
  not), called by :func:`mim_zoo.engine.config.prepare_config`.
* :func:`check_runner_types`: so do unknown types the Runner builds (optimizer and its wrapper, schedulers, the
  training dataset, its sampler and pipeline steps), before the Runner writes its log.
* :func:`check_image_folder`: a missing or mis-laid data root explains the expected layout and what was found.
* :func:`check_model_builds`: the model builds, or the error names the config key it is about.
* :func:`create_work_dir`: the work dir is created only after every check passed, or the error says why it cannot be.

Checked elsewhere: unreadable images (:class:`mim_zoo.engine.transforms.CheckedLoadImage`), a last partial batch and
the image size the pipeline yields before the first iteration, and checkpoints that do not fit the model
(:mod:`mim_zoo.engine.hooks.preflight`).
"""

from __future__ import annotations

import copy
import difflib
import importlib.util
import os
import os.path as osp
from collections.abc import Mapping

import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope, Registry

from ..core.algorithms.base import BaseMIM
from ..core.registry import MODELS, UnknownPluginError, check_arguments, config_entry, describe_unknown
from .registry import HOOKS, RUNNER_REGISTRIES, TRANSFORMS
from .reliability import rng_isolated

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
LAYOUT = "DATA_ROOT/{split}/<class>/<image>.JPEG (ImageNet's folder layout: one sub-folder per class)"


# --- plugin names -------------------------------------------------------------------------------------------------
def _all_names(registry: Registry) -> list[str]:
    names: set[str] = set()
    while registry is not None:
        registry.import_from_location()
        names |= set(registry.module_dict)
        registry = registry.parent
    return sorted(names)


#: The entries mmengine's Runner builds by type, and the mim_zoo registry it looks each up in (default scope
#: ``mim_zoo``: the ``mim_zoo`` child, which falls back to mmengine's own entries).
RUNNER_TYPES = {"optim_wrapper": "OPTIM_WRAPPERS", "optim_wrapper.optimizer": "OPTIMIZERS",
                "train_dataloader.dataset": "DATASETS", "train_dataloader.sampler": "DATA_SAMPLERS"}


def check_runner_types(cfg: Config, pipeline_key: str = "train_dataloader.dataset.pipeline") -> None:
    """Fail with the registered names when a type the Runner builds is an unknown string (an optimizer, a scheduler,
    the training dataset, its sampler, a pipeline step), and with the accepted ones when the optimizer is given an
    argument it does not take, before the Runner writes its log. mmengine would stop
    there only after the work dir, its log and the environment report are written, and for an optimizer with a
    ``TypeError`` that names nothing (``None is not a callable object``).

    Args:
        pipeline_key: where ``--cfg-options`` edits the training pipeline (``pipelines.<impl>.pipeline`` for
            configs with a ``pipeline_impl`` switch), named for a pipeline step.
    """
    if cfg.get("default_scope", "mim_zoo") != "mim_zoo":
        return
    entries = [(key, RUNNER_REGISTRIES[name], _entry(cfg, key)) for key, name in RUNNER_TYPES.items()]
    schedulers = cfg.get("param_scheduler") or []
    entries += [(f"param_scheduler.{i}", RUNNER_REGISTRIES["PARAM_SCHEDULERS"], step)
                for i, step in enumerate(schedulers if isinstance(schedulers, list) else [schedulers])]
    pipeline = _entry(cfg, "train_dataloader.dataset.pipeline") or []
    entries += [(f"{pipeline_key}.{i}", TRANSFORMS, step) for i, step in enumerate(pipeline)]
    for key, registry, entry in entries:
        kind = entry.get("type") if isinstance(entry, Mapping) else None
        if isinstance(kind, str) and _lookup(registry, kind) is None:
            names = _all_names(registry)
            close = difflib.get_close_matches(kind, names, n=3, cutoff=0.5)
            hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise UnknownPluginError(f"{kind!r} is not in the {registry.name} registry.{hint} Registered: "
                                     f"{', '.join(names)}. A type of another toolbox takes its scope: "
                                     f"'mmpretrain.{kind}'.", f"{key}.type")
    optimizer = _entry(cfg, "optim_wrapper.optimizer")
    kind = optimizer.get("type") if isinstance(optimizer, Mapping) else None
    if kind is not None:  # an argument typo (lrr=...) would end in the Runner's TypeError, after its log
        optimizer_cls = _lookup(RUNNER_REGISTRIES["OPTIMIZERS"], kind) if isinstance(kind, str) else kind
        with config_entry("optim_wrapper.optimizer"):
            check_arguments(optimizer_cls, {k: v for k, v in optimizer.items() if k not in ("type", "params")})


def _lookup(registry: Registry, name: str) -> type | None:
    """``registry.get(name)`` once every level's plugin modules are imported (``get`` imports only the first
    level's, and the Runner imports mmengine's before it builds)."""
    level = registry
    while level is not None:
        level.import_from_location()
        level = level.parent
    return registry.get(name)


def _entry(cfg: Config, key: str) -> object:
    """``cfg[a][b]...`` for ``key = "a.b..."``, ``None`` where a level is missing."""
    value: object = cfg
    for part in key.split("."):
        value = value.get(part) if isinstance(value, (Config, Mapping)) else None
    return value


def check_config_types(cfg: Config) -> None:
    """Fail with the registered names when ``model.type`` or a ``custom_hooks`` type is an unknown string.

    Nested plugins (encoder, masking, target, decoder) are built by :func:`mim_zoo.registry.build_with_suggestions`,
    which already lists them; these two are built by mmengine's Runner, whose error does not. Configs in another
    scope (downstream mmpretrain/mmseg/mmdet configs) are left to their own registries.
    """
    if cfg.get("default_scope", "mim_zoo") != "mim_zoo":
        return
    model_type = cfg.get("model", {}).get("type")
    if isinstance(model_type, str) and MODELS.get(model_type) is None:
        raise UnknownPluginError(describe_unknown(MODELS, model_type), "model.type")
    for index, hook in enumerate(cfg.get("custom_hooks") or []):
        hook_type = hook.get("type") if isinstance(hook, dict) else None
        if isinstance(hook_type, str) and HOOKS.get(hook_type) is None:
            raise UnknownPluginError(f"{hook_type!r} is not a registered hook. Registered: "
                                     f"{', '.join(_all_names(HOOKS))}.", f"custom_hooks.{index}.type")


def check_strategy(cfg: Config) -> None:
    """FSDP / DeepSpeed configs (``runner_type = FlexibleRunner``) need CUDA GPUs, and DeepSpeed its package."""
    strategy = cfg.get("strategy")
    if not strategy:
        return
    kind = strategy.get("type")
    name = getattr(kind, "__name__", str(kind))
    if "DeepSpeed" in name and importlib.util.find_spec("deepspeed") is None:
        raise ValueError(f"this config trains with {name}, but the deepspeed package is not installed: "
                         '`pip install "deepspeed>=0.13"`, or train the FSDP variant (<config>_fsdp.py)')
    if name in ("FSDPStrategy", "DeepSpeedStrategy") and not torch.cuda.is_available():
        raise ValueError(f"this config trains with {name}, which places its shards on CUDA GPUs, and this machine "
                         "has none; train the plain config it derives from (same recipe, no sharding)")


def drop_disabled_hooks(cfg: Config) -> None:
    """Remove ``default_hooks`` entries set to ``None`` that mmengine does not know (it asserts on them), so
    ``--cfg-options default_hooks.reconstruction_vis=None`` switches one of ours off."""
    mmengine_defaults = {"runtime_info", "timer", "sampler_seed", "logger", "param_scheduler", "checkpoint"}
    hooks = cfg.get("default_hooks") or {}
    for name in [n for n, h in hooks.items() if h is None and n not in mmengine_defaults]:
        hooks.pop(name)


# --- data layout ------------------------------------------------------------------------------------------------
def _has_images(folder: str, limit: int = 200) -> bool:
    with os.scandir(folder) as entries:
        for i, entry in enumerate(entries):
            if entry.is_file() and entry.name.lower().endswith(IMAGE_EXTENSIONS):
                return True
            if i >= limit:
                return False
    return False


def _subfolders(folder: str) -> list[str]:
    with os.scandir(folder) as entries:
        return sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))


def _listing(folder: str, limit: int = 6) -> str:
    names = sorted(os.listdir(folder))
    shown = ", ".join(names[:limit]) + (f", ... ({len(names)} entries)" if len(names) > limit else "")
    return shown or "nothing"


def check_image_folder(root: str, split: str = "train", class_folders: bool = True, num_probe: int = 3) -> None:
    """Check ``root/split`` exists and, with ``class_folders``, has ImageNet's layout (class folders holding
    images); explain what is wrong if not.

    Only the first ``num_probe`` class folders are opened, so the check costs milliseconds on ImageNet.

    Raises:
        FileNotFoundError: with the expected layout, what was found instead, and the config key to set.
    """
    root = root.rstrip("/") or "/"
    folder = osp.join(root, split) if split else root
    layout = LAYOUT.format(split=split or ".").replace("DATA_ROOT", root) if class_folders else folder
    fix = "Set --cfg-options train_dataloader.dataset.data_root=/path/to/your/data"
    if not osp.isdir(root):
        raise FileNotFoundError(f"training data not found: data root {root!r} does not exist. Expected {layout}. {fix}")
    if not osp.isdir(folder):
        hint = ""
        if class_folders and (_has_images(root) or any(_has_images(osp.join(root, d))
                                                       for d in _subfolders(root)[:num_probe])):
            hint = (f" {root!r} itself holds images or class folders: it looks like the {split!r} folder; point "
                    "data_root at its parent.")
        raise FileNotFoundError(f"training data not found: {folder!r} is not a directory (found in {root!r}: "
                                f"{_listing(root)}).{hint} Expected {layout}. {fix}")
    if class_folders:
        _check_class_folders(folder, layout, num_probe)


def _check_class_folders(folder: str, layout: str, num_probe: int) -> None:
    classes = _subfolders(folder)
    if not classes:
        flat = (f" It holds images directly: move them into sub-folders, one per class ({folder}/<class>/), or, for "
                f"pretraining, which uses no labels, into one folder of any name ({folder}/all/)."
                if _has_images(folder) else "")
        raise FileNotFoundError(f"training data: {folder!r} has no class sub-folders (found: {_listing(folder)})."
                                f"{flat} Expected {layout}.")
    empty = [c for c in classes[:num_probe] if not _has_images(osp.join(folder, c))]
    if len(empty) == min(num_probe, len(classes)):
        raise FileNotFoundError(f"training data: the class folders of {folder!r} hold no images with the extensions "
                                f"{', '.join(IMAGE_EXTENSIONS)} (e.g. {osp.join(folder, empty[0])!r} has: "
                                f"{_listing(osp.join(folder, empty[0]))}). Expected {layout}.")


def check_dataset_root(dataset: Mapping) -> None:
    """The data root of a train dataset config exists; for ImageNet-style datasets (mmpretrain ``ImageNet`` or a
    labelled ``CustomDataset``, without an annotation file) it also has the class-folder layout."""
    root = dataset.get("data_root")
    if not root:
        return
    prefix = dataset.get("data_prefix") or dataset.get("split") or ""
    prefix = prefix.get("img_path", "") if isinstance(prefix, Mapping) else prefix
    kind = dataset.get("type")
    name = getattr(kind, "__name__", str(kind)).split(".")[-1]
    by_class = name in ("ImageNet", "CustomDataset") and not dataset.get("ann_file") and dataset.get("with_label", True)
    check_image_folder(root, prefix, class_folders=by_class)


# --- the model, before anything is written -----------------------------------------------------------------------
def check_model_builds(cfg: Config) -> None:
    """Build ``cfg.model`` once and discard it, so that a value a plugin refuses (a mask ratio, a patch size that does
    not tile the image, a typo in an argument name, a missing teacher file) fails naming its config key
    (``model.masking.ratio: ...``) before mmengine's Runner creates the work dir, its log and ~200 lines of
    environment report; so does a per-process batch the algorithm cannot train on (``train_dataloader.batch_size:
    ...``, e.g. an odd one for MixMAE).

    The Runner seeds and then builds the model itself; this build draws from saved and restored random streams, so
    the run is the one it would have been without it. It costs one more construction of the model (CPU, seconds for
    ViT-L; mmpretrain's MixMIM cannot be built on the meta device). Configs of another scope (the downstream
    mmpretrain / mmseg / mmdet configs) are left to their toolboxes.
    """
    if cfg.get("default_scope", "mim_zoo") != "mim_zoo" or not isinstance(cfg.get("model"), Mapping):
        return
    with rng_isolated(), DefaultScope.overwrite_default_scope("mim_zoo"), config_entry("model"):
        model = MODELS.build(copy.deepcopy(cfg.model))
    batch = (cfg.get("train_dataloader") or {}).get("batch_size")
    if isinstance(model, BaseMIM) and isinstance(batch, int):  # the full batch; PreflightHook: a last partial one
        with config_entry("train_dataloader.batch_size"):
            model.check_batch_size(batch)


# --- the work dir -----------------------------------------------------------------------------------------------
def create_work_dir(work_dir: str) -> None:
    """Create the work dir (after every other check passed), or explain in one line why it cannot be.

    Raises:
        NotADirectoryError / PermissionError / OSError: naming the path and the fix (``--work-dir``).
    """
    fix = "choose another --work-dir"
    try:
        os.makedirs(work_dir, exist_ok=True)
    except FileExistsError as err:  # work_dir itself is a file
        raise NotADirectoryError(f"work dir {work_dir!r} is a file, not a directory; {fix}") from err
    except OSError as err:
        where = "" if err.filename in (None, work_dir) else f" ({err.filename!r})"
        raise type(err)(f"cannot create the work dir {work_dir!r}: {err.strerror}{where}; {fix}") from err
    if not os.access(work_dir, os.W_OK | os.X_OK):
        raise PermissionError(f"work dir {work_dir!r} is not writable by this user; {fix}")
