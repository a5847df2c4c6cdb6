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

import difflib
from typing import Any

from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import TASK_UTILS as MMENGINE_TASK_UTILS
from mmengine.registry import Registry


class UnknownPluginError(KeyError):
    """A config names a plugin type that is not registered."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return str(self.args[0])


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
            raise UnknownPluginError(describe_unknown(registry, obj_type))
    elif callable(obj_type):
        obj_cls = obj_type
    else:
        raise TypeError(f"'type' of a {registry.name} config must be a name or a class, got {obj_type!r}")
    return obj_cls(**args)


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
