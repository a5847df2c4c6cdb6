"""The plugin seams of mim_zoo: three registries, children of mmengine's, in the ``mim_zoo`` scope.

* ``MODELS``: algorithms (MAE, BootMAE, MR-MAE, MixMAE), encoder adapters and decoders.
* ``MASK_GENERATORS``: ``(batch_size, grid_size, *, device, generator, **context) -> BoolTensor[B, L]``.
* ``TARGET_GENERATORS``: no-grad ``nn.Module`` s mapping images to per-patch targets ``[B, L, D]``.
* ``ENCODER_INITS``: each paper's initialisation of its encoder, applied by name by the encoder adapters.

What a plugin of each seam must provide is written as a ``typing.Protocol`` in :mod:`mim_zoo.core.contracts`.

Each registry names the modules that hold its plugins (mmengine's ``locations``): the first lookup or build imports
them, so every plugin of the package is registered by explicit import (STYLE R8) without ``import mim_zoo`` paying for
timm and mmpretrain. :func:`registered_names` lists a registry after importing its modules. Building an unknown name
raises :class:`UnknownPluginError`, listing the registered names and the closest matches. The engine's registries
(hooks, transforms, the Runner's) are in :mod:`mim_zoo.engine.registry`.
"""

from __future__ import annotations

import contextlib
import difflib
import inspect
import re
from collections.abc import Iterator
from typing import Any

from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import TASK_UTILS as MMENGINE_TASK_UTILS
from mmengine.registry import Registry


class ConfigEntryError(Exception):
    """An error about one entry of a config, named by its dotted key.

    A plugin raises it with the argument's name (``ratio``); each enclosing build adds the slot it builds
    (:func:`config_entry`: ``masking.ratio``, then ``model.masking.ratio``), so the message names the key that
    ``--cfg-options`` sets.

    Args:
        problem: what is wrong and how to fix it.
        key: the entry's dotted key below the object being built (``""``: the object itself).
    """

    def __init__(self, problem: str, key: str = "") -> None:
        super().__init__(problem, key)
        self.problem, self.key = problem, key

    def __str__(self) -> str:
        return f"{self.key}: {self.problem}" if self.key else self.problem


class InvalidValueError(ConfigEntryError, ValueError):
    """A config gives an argument a value the plugin cannot take."""


class UnknownArgumentError(ConfigEntryError, TypeError):
    """A config gives a plugin an argument it does not take."""


class UnknownPluginError(ConfigEntryError, KeyError):
    """A config names a plugin type that is not registered."""


@contextlib.contextmanager
def config_entry(key: str) -> Iterator[None]:
    """Name the config entry built inside the block in its errors: a :class:`ConfigEntryError` raised inside gets
    ``key`` prepended to its key; any other ``ValueError`` becomes an :class:`InvalidValueError` of ``key``, and a
    ``TypeError`` for an unexpected keyword argument an :class:`UnknownArgumentError` of ``key``."""
    try:
        yield
    except ConfigEntryError as err:
        err.key = f"{key}.{err.key}" if err.key else key
        raise
    except ValueError as err:
        raise InvalidValueError(str(err), key) from err
    except TypeError as err:  # a keyword the callee does not take (one that takes **kwargs and passes them on)
        unexpected = re.search(r"unexpected keyword argument '(\w+)'", str(err))
        if unexpected is None:
            raise
        raise UnknownArgumentError(str(err), f"{key}.{unexpected.group(1)}") from err


def describe_unknown(registry: Registry, name: str) -> str:
    """The message for an unknown ``name``: what is registered and what is close."""
    names = registered_names(registry)
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return (
        f"{name!r} is not a registered {registry.name} in mim_zoo.{hint} Registered: {', '.join(names)}. "
        "Plugins outside the package register through `custom_imports` in the config (see README, "
        "'Add your own MIM variant')."
    )


def build_with_suggestions(cfg: Any, registry: Registry, default_args: dict | None = None) -> Any:
    """Build ``cfg = dict(type=..., **kwargs)`` from ``registry``; an unknown type lists the registered names.

    ``type`` is a registered name or a class (pure-Python configs import the class). Unlike mmengine's
    ``build_from_cfg`` this never switches registries by default scope: a mask generator is looked up among mask
    generators, whatever ``default_scope`` the Runner set.
    """
    if not isinstance(cfg, dict) or "type" not in cfg:
        raise TypeError(f"a {registry.name} config must be a dict with a 'type' key, got {cfg!r}")
    args = dict(cfg)
    obj_type = args.pop("type")
    for key, value in (default_args or {}).items():
        args.setdefault(key, value)
    if isinstance(obj_type, str):
        obj_cls = registry.get(obj_type)
        if obj_cls is None:
            raise UnknownPluginError(describe_unknown(registry, obj_type), "type")
    elif callable(obj_type):
        obj_cls = obj_type
    else:
        raise TypeError(f"'type' of a {registry.name} config must be a name or a class, got {obj_type!r}")
    check_arguments(obj_cls, args)
    return obj_cls(**args)


def check_arguments(obj_cls: Any, args: dict) -> None:
    """Raise :class:`UnknownArgumentError` for an argument ``obj_cls`` does not take (a typo in a config key), with
    the arguments it takes and the closest one."""
    try:
        params = inspect.signature(obj_cls).parameters
    except (TypeError, ValueError):  # no signature to read (a builtin): the call itself reports
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    names = [n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    for arg in args:
        if arg not in names:
            close = difflib.get_close_matches(arg, names, n=1, cutoff=0.6)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise UnknownArgumentError(f"{getattr(obj_cls, '__name__', obj_cls)} takes no argument {arg!r}.{hint} "
                                       f"It takes: {', '.join(names)}.", arg)


def _registry(name: str, parent: Registry, locations: list[str]) -> Registry:
    return Registry(name, parent=parent, scope="mim_zoo", build_func=build_with_suggestions, locations=locations)


MODELS = _registry("model", MMENGINE_MODELS, ["mim_zoo.core.algorithms", "mim_zoo.core.encoders"])
MASK_GENERATORS = _registry("mask generator", MMENGINE_TASK_UTILS, ["mim_zoo.core.masking"])
# mmengine allows one "mim_zoo" child per root registry, so target generators hang below our MODELS.
TARGET_GENERATORS = _registry("target generator", MODELS, ["mim_zoo.core.targets"])
# Each paper's initialisation of its encoder, ``(canonical model) -> None``, registered by the algorithm's module
# (``"mae"`` in algorithms/mae.py) and applied by the encoder adapter that names it (``ViTEncoder(init="mae")``), so
# encoders never import algorithms. A root of its own: mmengine's WEIGHT_INITIALIZERS holds ``init_cfg`` classes.
ENCODER_INITS = Registry("encoder init", scope="mim_zoo", locations=["mim_zoo.core.algorithms"])


def registered_names(registry: Registry) -> list[str]:
    """Every name registered in ``registry`` (its plugin modules imported first), sorted."""
    registry.import_from_location()
    return sorted(registry.module_dict)


def build(registry: Registry, cfg_or_obj: Any, **default_args: Any) -> Any:
    """Return ``cfg_or_obj`` if it is already built, else build it from ``registry`` (R9: objects or configs)."""
    if isinstance(cfg_or_obj, dict):
        return registry.build(cfg_or_obj, default_args=default_args or None)
    return cfg_or_obj
