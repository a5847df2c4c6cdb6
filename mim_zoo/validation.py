"""Bad input gets a clear error naming the problem and the fix, before hours of compute are spent on it.

* :func:`check_config_types`: unknown ``model`` / hook types list the registered names (mmengine's own message does
  not), called by :func:`mim_zoo.runtime.prepare_config`.
* :func:`check_image_folder`: a missing or mis-laid data root explains the expected layout and what was found.
* :class:`CheckedLoadImage` / :class:`UnreadableImages`: an unreadable or corrupt image names the file; optionally
  skips and counts such files.
* :class:`PreflightHook`: before the first iteration, checks the per-process batch against the algorithm's
  preconditions (``model.check_batch_size(n)``, e.g. MixMAE's even batch) and the image size against the encoder.
* :class:`CheckpointCompatHook` / :func:`describe_state_dict_mismatch`: a checkpoint of another algorithm or size
  fails with the mismatched keys instead of mmengine's silent non-strict load.
"""

from __future__ import annotations

import contextlib
import importlib.util
import multiprocessing
import os
import os.path as osp
from collections.abc import Mapping
from typing import Any

import torch
from mmcv.transforms import LoadImageFromFile
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.registry import Registry
from torch import Tensor

from .registry import HOOKS, MODELS, UnknownPluginError, describe_unknown
from .reliability import RunAborted, rng_isolated

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
LAYOUT = "DATA_ROOT/{split}/<class>/<image>.JPEG (ImageNet's folder layout: one sub-folder per class)"


# --- plugin names -------------------------------------------------------------------------------------------------
def _all_names(registry: Registry) -> list[str]:
    names: set[str] = set()
    while registry is not None:
        names |= set(registry.module_dict)
        registry = registry.parent
    return sorted(names)


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
        raise UnknownPluginError(describe_unknown(MODELS, model_type))
    for hook in cfg.get("custom_hooks") or []:
        hook_type = hook.get("type") if isinstance(hook, dict) else None
        if isinstance(hook_type, str) and HOOKS.get(hook_type) is None:
            raise UnknownPluginError(f"custom_hooks: {hook_type!r} is not a registered hook. "
                                     f"Registered: {', '.join(_all_names(HOOKS))}.")


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
        flat = " It holds images directly; move them into one sub-folder per class." if _has_images(folder) else ""
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


# --- unreadable images --------------------------------------------------------------------------------------------
class CorruptImageError(RunAborted):
    """A training image cannot be read or decoded."""


class UnreadableImages:
    """What a loading step does with a file it cannot read or decode: stop the run naming the file, or skip it.

    Shared by every step that reads training images (:class:`CheckedLoadImage`,
    :class:`mim_zoo.engine.pipeline.DecodeRandomResizedCrop`), so they fail and skip alike. With ``"skip"``,
    :meth:`handle` returns ``None``, so mmengine's dataset draws another sample (its ``max_refetch`` retry), and logs
    each skipped file with the running count of this process and its data workers (a counter in shared memory under
    the ``fork`` start method that ``default_runtime`` sets). More than ``max_skipped`` unreadable files abort the
    run: the data is then broken, not noisy.

    Args:
        step: the pipeline step's name, for the message (``"CheckedLoadImage"``).
        on_corrupt: ``"raise"`` (default) or ``"skip"``.
        max_skipped: most files skipped before the run aborts; ``None`` = no limit.
    """

    def __init__(self, step: str, on_corrupt: str = "raise", max_skipped: int | None = 100) -> None:
        if on_corrupt not in ("raise", "skip"):
            raise ValueError(f"{step} on_corrupt must be 'raise' or 'skip', got {on_corrupt!r}")
        self.step, self.on_corrupt, self.max_skipped = step, on_corrupt, max_skipped
        self._skipped: Any = multiprocessing.Value("q", 0)

    @property
    def num_skipped(self) -> int:
        """Files skipped so far by this process and the data workers it forked."""
        return int(self._skipped.value)

    def __getstate__(self) -> dict:  # pickled for spawned workers: a shared counter cannot travel; count locally
        state = dict(self.__dict__)
        state["_skipped"] = _LocalCounter(self.num_skipped)
        return state

    def handle(self, path: str | None, err: Exception) -> None:
        """Raise :class:`CorruptImageError` naming ``path``, or (``"skip"``) count it, log it and return ``None``."""
        reason = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
        if self.on_corrupt == "raise":
            raise CorruptImageError(
                f"cannot read training image {path!r} ({reason}). Replace or delete the file, or skip unreadable "
                f"images with on_corrupt='skip' in the {self.step} step of train_pipeline") from err
        with self._skipped.get_lock():
            self._skipped.value += 1
            count = self._skipped.value
        if self.max_skipped is not None and count > self.max_skipped:
            raise CorruptImageError(f"more than {self.max_skipped} unreadable training images (the last: {path!r}, "
                                    f"{reason}): the dataset looks broken") from err
        print_log(f"skipped unreadable image {path!r} ({reason}); {count} skipped so far", logger="current", level=30)
        return None


class CheckedLoadImage(LoadImageFromFile):
    """mmcv's ``LoadImageFromFile`` that names the file it cannot read, and can skip such files and count them
    (:class:`UnreadableImages`). Note: OpenCV (mmcv's default decoder) decodes a truncated JPEG partially without an
    error; ``imdecode_backend="pillow"`` rejects it.

    Args:
        on_corrupt: ``"raise"`` (default) or ``"skip"``.
        max_skipped: most files skipped before the run aborts; ``None`` = no limit.
        **kwargs: ``LoadImageFromFile`` arguments.
    """

    def __init__(self, on_corrupt: str = "raise", max_skipped: int | None = 100, **kwargs: Any) -> None:
        self.unreadable = UnreadableImages(type(self).__name__, on_corrupt, max_skipped)
        super().__init__(**kwargs)

    @property
    def num_skipped(self) -> int:
        """Files skipped so far by this process and the data workers it forked."""
        return self.unreadable.num_skipped

    def transform(self, results: dict) -> dict | None:
        try:
            return super().transform(results)
        except Exception as err:  # noqa: BLE001 - any read/decode failure of this file
            return self.unreadable.handle(results.get("img_path"), err)


class _LocalCounter:
    """The part of ``multiprocessing.Value`` that :class:`UnreadableImages` uses, for spawned workers."""

    def __init__(self, value: int = 0) -> None:
        self.value = value

    def get_lock(self) -> contextlib.nullcontext:
        return contextlib.nullcontext()


# --- preflight -------------------------------------------------------------------------------------------------
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

    * ``model.check_batch_size(n)`` (an optional method of the algorithm, e.g. MixMAE: ``n`` must be even) for every
      per-process batch size the loader yields, including a last partial batch when ``drop_last=False``;
    * one training sample (drawn without touching the training random streams, collated and preprocessed as in
      training) against the encoder's ``check_input`` (image size the encoder was built for).
    """

    priority = "VERY_HIGH"

    def before_train(self, runner: Any) -> None:
        model = _unwrap(runner.model)
        loader = runner.train_dataloader
        world = runner.world_size
        check = getattr(model, "check_batch_size", None)
        if check is not None:
            for size in sorted(_per_process_batches(loader, world)):
                try:
                    check(size)
                except ValueError as err:
                    raise RunAborted(f"{type(model).__name__} cannot train on a per-process batch of {size} "
                                     f"({world} process(es), train_dataloader.batch_size={loader.batch_size}, "
                                     f"drop_last={loader.drop_last}): {err}") from err
        encoder = getattr(model, "encoder", None)
        if encoder is not None and hasattr(encoder, "check_input") and len(loader.dataset):
            with rng_isolated(), torch.no_grad():  # one sample as the model receives it (pipelines may decode late)
                batch = model.data_preprocessor(loader.collate_fn([loader.dataset[0]]), False)["inputs"]
            sample = (batch[0] if isinstance(batch, (list, tuple)) else batch)[0]
            try:
                encoder.check_input(torch.zeros(1, *sample.shape))
            except ValueError as err:
                patch = getattr(encoder, "patch_size", None)
                hint = (f" (an encoder's image side must be a multiple of its patch size, {patch})"
                        if patch and any(side % patch for side in sample.shape[-2:]) else "")
                raise RunAborted(f"the training pipeline yields {tuple(sample.shape)} images, which the encoder "
                                 f"cannot take: {err}{hint}") from err


# --- checkpoints of another algorithm or size --------------------------------------------------------------------
class CheckpointMismatchError(RunAborted):
    """A checkpoint's weights do not fit the model being trained."""


def describe_state_dict_mismatch(expected: Mapping[str, Tensor], given: Mapping[str, Tensor],
                                 limit: int = 6) -> str | None:
    """Missing, unexpected and shape-mismatched keys of ``given`` against ``expected``; ``None`` if they fit."""
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    shapes = sorted(k for k in set(expected) & set(given)
                    if tuple(expected[k].shape) != tuple(given[k].shape))
    if not (missing or unexpected or shapes):
        return None

    def show(keys: list[str]) -> str:
        return ", ".join(keys[:limit]) + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")

    lines = []
    if shapes:
        lines.append("shape mismatch (checkpoint vs model): " + show(
            [f"{k} {list(given[k].shape)} vs {list(expected[k].shape)}" for k in shapes]))
    if missing:
        lines.append(f"missing in the checkpoint: {show(missing)}")
    if unexpected:
        lines.append(f"not in the model: {show(unexpected)}")
    return "; ".join(lines)


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
