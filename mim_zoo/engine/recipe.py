"""A pretraining config's recipe, resolved after the overrides and from the launched world size.

A pretraining config states its recipe once::

    recipe = dict(num_gpus=8, batch_per_gpu=512, base_lr=1.5e-4, lr_scaling="linear",
                  epochs=800, warmup_epochs=40, full_warmup_from=800, min_lr=0.0)

and :func:`resolve_recipe` derives the training setup from it once the command line's ``--cfg-options`` are
applied and the number of launched processes is known (:func:`mim_zoo.engine.config.load_config` and
``prepare_config`` call it, so ``tools/train.py``, the tests and ``benchmarks/`` all do):

* ``train_dataloader.batch_size = batch_per_gpu``;
* total batch = processes launched (``WORLD_SIZE``, else ``SLURM_NTASKS``, else 1) x ``batch_per_gpu`` x
  ``optim_wrapper.accumulative_counts``;
* ``optim_wrapper.optimizer.lr = base_lr * total / 256`` (``lr_scaling="linear"``, the rule of facebookresearch/mae
  ``main_pretrain.py``, LightDXY/BootMAE and Sense-X/MixMIM), or ``base_lr`` whatever the batch (``"none"``);
* warm-up: ``warmup_epochs`` for a run of at least ``full_warmup_from`` epochs; a shorter run warms up for the same
  fraction of its length, ``warmup_epochs * epochs / full_warmup_from`` (MAE's 40 of 800 -> 0.5 of 10);
* ``param_scheduler``: one :class:`~mim_zoo.engine.schedulers.WarmupCosineLR`, linear from 0 over the warm-up, then a
  half-cycle cosine to the absolute ``min_lr`` at the last epoch, per iteration;
* ``train_cfg.max_epochs = epochs``;
* ``resolved_recipe``: what was derived, with the one-line :meth:`ResolvedRecipe.summary` (saved with the config).

``num_gpus`` records the official launch; the run's batch follows the processes actually launched, and the summary
names both when they differ. An entry the overrides (or code) set explicitly stands for its recipe key:
``train_cfg.max_epochs=N`` is ``recipe.epochs=N`` (the schedule follows), ``train_dataloader.batch_size=B`` is
``recipe.batch_per_gpu=B`` (the lr follows), ``optim_wrapper.optimizer.lr=X`` is the lr itself, not scaled with the
batch, and a ``param_scheduler`` (``None`` included) is used as given. Setting such an entry and its recipe key to
different values is an error naming both. An entry equal to what an earlier resolution derived (a config saved beside
a run) is derived again, so a saved config follows new overrides too.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from mmengine.config import Config, ConfigDict

RECIPE_KEYS = ("num_gpus", "batch_per_gpu", "base_lr", "lr_scaling", "epochs", "warmup_epochs", "full_warmup_from",
               "min_lr")
LR_SCALINGS = ("linear", "none")
LR_REFERENCE_BATCH = 256  # lr = base_lr * total batch / 256 (Goyal et al. 2017, as MAE's --blr)
SCHEDULER = "mim_zoo.engine.schedulers.WarmupCosineLR"  # a dotted path: the saved config names it the same way
SCHEDULE_KEYS = ("warmup_epochs", "full_warmup_from", "min_lr")  # recipe keys that only shape the derived schedule
_MISSING = object()


@dataclass(frozen=True)
class ResolvedRecipe:
    """What :func:`resolve_recipe` derived for one launch."""

    world_size: int
    batch_per_gpu: int
    accumulative_counts: int
    lr: float
    lr_rule: str  # how the lr came about, e.g. "1.5e-4 x 2048/256 = 1.2e-3"
    epochs: int | None  # None: an iteration-based train_cfg given explicitly
    warmup_epochs: float | None  # None: param_scheduler given explicitly
    warmup_rule: str  # "" or how a short run's warm-up was scaled, "(40 x 10/800)"
    min_lr: float | None
    stated_launch: tuple[int, int]  # the recipe's own (num_gpus, batch_per_gpu), as the config states them

    @property
    def total_batch(self) -> int:
        return self.world_size * self.batch_per_gpu * self.accumulative_counts

    @property
    def official_batch(self) -> str:
        """``"8 x 512 = 4096"``: the batch the recipe was stated for."""
        gpus, per_gpu = self.stated_launch
        return f"{gpus} x {per_gpu} = {gpus * per_gpu}"

    def summary(self) -> str:
        """``recipe: 4 processes x 512 x 1 = batch 2048 (recipe: 8 x 512 = 4096); lr 1.5e-4 x 2048/256 = 1.2e-3;
        800 epochs, 40 warm-up, cosine to 0``."""
        processes = "process" if self.world_size == 1 else "processes"
        batch = f"{self.world_size} {processes} x {self.batch_per_gpu} x {self.accumulative_counts} = batch " \
                f"{self.total_batch}"
        if self.stated_launch[0] * self.stated_launch[1] != self.total_batch:
            batch += f" (recipe: {self.official_batch})"
        if self.epochs is None:
            schedule = "train_cfg and param_scheduler as given"
        elif self.warmup_epochs is None:
            schedule = f"{self.epochs} epochs, param_scheduler as given"
        else:
            warmup = f"{_num(self.warmup_epochs)} warm-up" + (f" {self.warmup_rule}" if self.warmup_rule else "")
            schedule = f"{self.epochs} epochs, {warmup}, cosine to {_num(self.min_lr)}"
        return f"recipe: {batch}; lr {self.lr_rule}; {schedule}"

    def record(self) -> dict[str, Any]:
        """Plain values for ``cfg.resolved_recipe`` (dumped beside the run; read back by the next resolution)."""
        return {**asdict(self), "total_batch": self.total_batch, "official_batch": self.official_batch,
                "summary": self.summary()}


def resolve_recipe(cfg: Config, overrides: Mapping[str, Any] | None = None,
                   world_size: int | None = None) -> ResolvedRecipe | None:
    """Derive batch, lr, schedule and loop of ``cfg`` (in place) from ``cfg.recipe``; ``None`` without a recipe.

    Args:
        cfg: a config with the overrides already applied.
        overrides: the overrides that were applied (``--cfg-options`` as a dict of dotted keys, or nested), so that an
            entry and its recipe key set together can be told apart from a config's own values.
        world_size: processes of the run; default: :func:`launched_world_size`.
    """
    if cfg.get("recipe") is None:
        return None
    if (cfg.get("auto_scale_lr") or {}).get("enable"):
        raise ValueError("auto_scale_lr.enable would scale the recipe's lr a second time; the recipe scales it "
                         "already (recipe.lr_scaling), so drop auto_scale_lr")
    recipe = _recipe_dict(cfg.recipe)
    set_keys = set(_dotted_keys(overrides or {}))
    previous = cfg.get("resolved_recipe") or {}
    stated = _stated_launch(recipe, set_keys, previous)
    _fold(cfg, "train_cfg.max_epochs", "epochs", recipe, set_keys, previous)
    _fold(cfg, "train_dataloader.batch_size", "batch_per_gpu", recipe, set_keys, previous)
    _fold_lr(cfg, recipe, set_keys, previous)
    check_recipe(recipe)
    given_schedule = _given_schedule(cfg, set_keys, previous)
    if cfg.get("train_cfg") is None:
        cfg.train_cfg = dict(type="EpochBasedTrainLoop")
    by_epoch = "max_iters" not in cfg.train_cfg
    if not by_epoch and not given_schedule:
        raise ValueError("train_cfg is iteration-based (max_iters) but the recipe's schedule is in epochs: give "
                         "param_scheduler as well (or param_scheduler=None)")
    resolved = _derive(recipe, world_size or launched_world_size(), _accumulation(cfg), by_epoch, given_schedule,
                       stated)
    if given_schedule is False and resolved.min_lr >= resolved.lr:
        raise ValueError(f"recipe.min_lr={_num(resolved.min_lr)} is not below this run's lr {_num(resolved.lr)} "
                         f"({resolved.lr_rule}): the cosine would raise the lr; lower recipe.min_lr")
    _write(cfg, recipe, resolved)
    return resolved


def check_recipe(recipe: Mapping[str, Any]) -> None:
    """One clear error for a recipe with missing, unknown or out-of-range keys."""
    unknown = sorted(set(recipe) - set(RECIPE_KEYS))
    if unknown:
        hints = {k: difflib.get_close_matches(k, RECIPE_KEYS, n=1) for k in unknown}
        named = ", ".join(f"{k!r}" + (f" (did you mean {h[0]!r}?)" if h else "") for k, h in hints.items())
        raise ValueError(f"recipe has unknown key(s) {named}; a recipe has {', '.join(RECIPE_KEYS)}")
    missing = [k for k in RECIPE_KEYS if k not in recipe]
    if missing:
        raise ValueError(f"recipe lacks {', '.join(missing)} (a recipe states {', '.join(RECIPE_KEYS)})")
    for key in ("num_gpus", "batch_per_gpu", "epochs"):
        if not isinstance(recipe[key], int) or isinstance(recipe[key], bool) or recipe[key] < 1:
            raise ValueError(f"recipe.{key} must be a positive integer, got {recipe[key]!r}")
    if recipe["lr_scaling"] not in LR_SCALINGS:
        raise ValueError(f"recipe.lr_scaling must be one of {LR_SCALINGS}, got {recipe['lr_scaling']!r}")
    if not recipe["base_lr"] > 0 or recipe["min_lr"] < 0:
        raise ValueError(f"recipe needs base_lr > 0 and min_lr >= 0, got {recipe['base_lr']} and {recipe['min_lr']}")
    if not 0 <= recipe["warmup_epochs"] < recipe["full_warmup_from"]:
        raise ValueError(f"recipe needs 0 <= warmup_epochs < full_warmup_from, got {recipe['warmup_epochs']} and "
                         f"{recipe['full_warmup_from']}")


def launched_world_size() -> int:
    """Processes of this launch: ``WORLD_SIZE`` (torchrun), else ``SLURM_NTASKS`` (srun), else 1."""
    return int(os.environ.get("WORLD_SIZE") or os.environ.get("SLURM_NTASKS") or 1)


def warmup_length(epochs: int, warmup_epochs: float, full_warmup_from: float) -> float:
    """The warm-up of an ``epochs``-long run: all of it from ``full_warmup_from`` epochs on, else the same fraction."""
    return warmup_epochs * min(1.0, epochs / full_warmup_from)


def schedule(epochs: int, warmup: float, min_lr: float) -> list[dict[str, Any]]:
    """The derived ``param_scheduler``: warm-up and cosine over ``epochs``, evaluated per iteration."""
    return [dict(type=SCHEDULER, warmup=warmup, eta_min=min_lr, begin=0, end=epochs, by_epoch=True,
                 convert_to_iter_based=True)]


# --- helpers --------------------------------------------------------------------------------------------------------
def _derive(recipe: dict, world: int, accumulation: int, by_epoch: bool, given_schedule: bool,
            stated: tuple[int, int]) -> ResolvedRecipe:
    total = world * recipe["batch_per_gpu"] * accumulation
    if recipe["lr_scaling"] == "linear":
        lr = recipe["base_lr"] * total / LR_REFERENCE_BATCH
        lr_rule = f"{_num(recipe['base_lr'])} x {total}/{LR_REFERENCE_BATCH} = {_num(lr)}"
    else:
        lr, lr_rule = recipe["base_lr"], f"{_num(recipe['base_lr'])} (lr_scaling 'none': not scaled with the batch)"
    epochs, warmup, warmup_rule, min_lr = recipe["epochs"] if by_epoch else None, None, "", None
    if by_epoch and not given_schedule:
        warmup, min_lr = warmup_length(epochs, recipe["warmup_epochs"], recipe["full_warmup_from"]), recipe["min_lr"]
        if epochs < recipe["full_warmup_from"]:
            warmup_rule = f"({_num(recipe['warmup_epochs'])} x {epochs}/{_num(recipe['full_warmup_from'])})"
    return ResolvedRecipe(world_size=world, batch_per_gpu=recipe["batch_per_gpu"], accumulative_counts=accumulation,
                          lr=lr, lr_rule=lr_rule, epochs=epochs, warmup_epochs=warmup, warmup_rule=warmup_rule,
                          min_lr=min_lr, stated_launch=stated)


def _write(cfg: Config, recipe: dict, resolved: ResolvedRecipe) -> None:
    """Set the derived entries in place (assigning built objects back would make the config undumpable)."""
    cfg.recipe = recipe
    cfg.train_dataloader.batch_size = resolved.batch_per_gpu
    cfg.optim_wrapper.optimizer.lr = resolved.lr
    if resolved.warmup_epochs is not None:
        cfg.param_scheduler = schedule(resolved.epochs, resolved.warmup_epochs, resolved.min_lr)
    if resolved.epochs is not None:
        cfg.train_cfg.max_epochs = resolved.epochs
    cfg.resolved_recipe = resolved.record()


def _stated_launch(recipe: dict, set_keys: set[str], previous: Mapping) -> tuple[int, int]:
    """The recipe's own launch, before an alias (``train_dataloader.batch_size``) folds into it: kept from an earlier
    resolution of the same config unless these overrides set the recipe's launch keys."""
    if previous.get("stated_launch") and not set_keys & {"recipe", "recipe.num_gpus", "recipe.batch_per_gpu"}:
        return tuple(previous["stated_launch"])
    return recipe.get("num_gpus"), recipe.get("batch_per_gpu")


def _fold(cfg: Config, path: str, key: str, recipe: dict, set_keys: set[str], previous: Mapping) -> None:
    """An explicit ``path`` (e.g. ``train_cfg.max_epochs``) becomes ``recipe[key]``; both set differently: error."""
    value = _explicit(cfg, path, set_keys, previous.get(key, _MISSING))
    if value is _MISSING:
        return
    if f"recipe.{key}" in set_keys and recipe[key] != value:
        raise ValueError(f"conflicting overrides: recipe.{key}={recipe[key]} and {path}={value}; set one of them "
                         f"({path} is derived from recipe.{key})")
    recipe[key] = value


def _fold_lr(cfg: Config, recipe: dict, set_keys: set[str], previous: Mapping) -> None:
    """An explicit ``optim_wrapper.optimizer.lr`` is the lr itself: ``base_lr=lr, lr_scaling="none"``."""
    path = "optim_wrapper.optimizer.lr"
    lr = _explicit(cfg, path, set_keys, previous.get("lr", _MISSING))
    if lr is _MISSING:
        return
    clash = [f"recipe.{k}={recipe[k]}" for k in ("base_lr", "lr_scaling") if f"recipe.{k}" in set_keys]
    if clash:
        raise ValueError(f"conflicting overrides: {' and '.join(clash)} and {path}={lr}; set the lr either way, "
                         f"not both")
    recipe.update(base_lr=float(lr), lr_scaling="none")


def _given_schedule(cfg: Config, set_keys: set[str], previous: Mapping) -> bool:
    """Whether ``param_scheduler`` is given explicitly (then the recipe's schedule keys must not be overridden)."""
    derived_before = (schedule(previous["epochs"], previous["warmup_epochs"], previous["min_lr"])
                      if previous.get("warmup_epochs") is not None else _MISSING)
    given = _explicit(cfg, "param_scheduler", set_keys, derived_before)
    if given is _MISSING:
        return False
    if isinstance(given, Mapping) and given and all(str(k).isdigit() for k in given):
        # `--cfg-options param_scheduler.1.type=X` on a schedule the recipe derives: mmengine's merge makes a dict
        # {"1": {...}} of it (the list is not in the file), which no Runner can build
        index = next(iter(given))
        raise ValueError(f"param_scheduler.{index}: this config's param_scheduler is derived from its recipe (one "
                         f"WarmupCosineLR, mim_zoo/engine/recipe.py), so it has no entry {index} to override; change "
                         f"the schedule with recipe.epochs / recipe.warmup_epochs / recipe.min_lr, or state the whole "
                         f"param_scheduler list in a config that inherits this one")
    clash = [f"recipe.{k}" for k in SCHEDULE_KEYS if f"recipe.{k}" in set_keys]
    if clash:
        raise ValueError(f"conflicting overrides: param_scheduler is given explicitly, so {' and '.join(clash)} "
                         f"would change nothing; set one or the other")
    return True


def _explicit(cfg: Config, path: str, set_keys: set[str], derived_before: Any) -> Any:
    """The value at ``path`` if set explicitly: by the overrides, or present and not what was derived before."""
    value = _get(cfg, path)
    if value is _MISSING or path in set_keys:
        return value
    if derived_before is not _MISSING and _plain(value) == _plain(derived_before):
        return _MISSING
    return value


def _accumulation(cfg: Config) -> int:
    counts = (cfg.get("optim_wrapper") or {}).get("accumulative_counts", 1)
    if not isinstance(counts, int) or counts < 1:
        raise ValueError(f"optim_wrapper.accumulative_counts must be a positive integer, got {counts!r}")
    return counts


def _recipe_dict(recipe: Any) -> dict[str, Any]:
    if not isinstance(recipe, Mapping):
        raise ValueError(f"recipe must be a dict of {', '.join(RECIPE_KEYS)}; got {type(recipe).__name__}")
    return dict(recipe)


def _get(cfg: Config, path: str) -> Any:
    node: Any = cfg
    for part in path.split("."):
        if not isinstance(node, (Mapping, Config)) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _dotted_keys(overrides: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    """Every dotted key an override sets, parents included: ``{"recipe": {"epochs": 1}}`` -> recipe, recipe.epochs."""
    for key, value in overrides.items():
        path = f"{prefix}{key}"
        parts = path.split(".")
        yield from (".".join(parts[:i]) for i in range(1, len(parts) + 1))
        if isinstance(value, Mapping):
            yield from _dotted_keys(value, f"{path}.")


def _plain(value: Any) -> Any:
    """Comparable plain values: dicts and lists recursively, types by name (a saved config names them by path)."""
    if isinstance(value, (dict, ConfigDict)):
        return {k: (_type_name(v) if k == "type" else _plain(v)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _type_name(value: Any) -> str:
    return value.rsplit(".", 1)[-1] if isinstance(value, str) else getattr(value, "__name__", str(value))


def _num(x: float) -> str:
    """Short numbers for the summary: 1.5e-4, 1.2e-3, 0.5, 40, 0."""
    if x == 0:
        return "0"
    if 1e-2 <= abs(x) < 1e4:
        return f"{x:.4g}"
    mantissa, exponent = f"{x:.3e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
