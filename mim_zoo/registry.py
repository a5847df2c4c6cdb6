"""The plugin seams of mim_zoo: three registries, children of mmengine's, in the ``mim_zoo`` scope.

* ``MODELS``: algorithms (MAE, BootMAE, MR-MAE, MixMAE), encoder adapters and decoders.
* ``MASK_GENERATORS``: callables ``(batch_size, grid_size, *, device, generator) -> BoolTensor[B, L]``.
* ``TARGET_GENERATORS``: no-grad ``nn.Module`` s mapping images to per-patch targets ``[B, L, D]``.

Everything else (optimizers, schedulers, hooks, datasets, transforms, metrics) uses mmengine's and mmpretrain's
registries; ``HOOKS`` here is only the ``mim_zoo`` child of mmengine's so configs may name our hooks by string.

Each registry imports the modules that register into it (:data:`PLUGIN_MODULES`) on its first lookup, through
mmengine's ``Registry(locations=...)`` (``get``, ``build``, ``in``) and on reading ``module_dict``; ``import mim_zoo``
itself stays light, so that ``mmcv._ext`` (:mod:`mim_zoo.engine.mmcv_ops`) can import it while ``mmcv.ops`` is
being imported. Building an unknown name raises :class:`UnknownPluginError`, listing the registered names and the
closest matches.
"""

from __future__ import annotations

import difflib
from typing import Any

import mmengine.registry as mmengine_registry
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import TASK_UTILS as MMENGINE_TASK_UTILS
from mmengine.registry import Registry


class UnknownPluginError(KeyError):
    """A config names a plugin type that is not registered."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return str(self.args[0])


def describe_unknown(registry: Registry, name: str) -> str:
    """The message for an unknown ``name``: what is registered and what is close."""
    names = sorted(registry.module_dict)
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


# The modules that register mim_zoo's plugins (algorithms, encoders, mask and target generators, hooks).
PLUGIN_MODULES = ["mim_zoo.algorithms", "mim_zoo.encoders", "mim_zoo.masking", "mim_zoo.targets", "mim_zoo.hooks",
                  "mim_zoo.reliability", "mim_zoo.validation", "mim_zoo.visualization"]


class PluginRegistry(Registry):
    """A registry whose ``module_dict`` is complete when read: it imports :data:`PLUGIN_MODULES` first, as mmengine's
    ``get`` and ``build`` do, so listing the registered plugins needs no prior import of them."""

    @property
    def module_dict(self) -> dict:
        self.import_from_location()
        return self._module_dict


def _registry(name: str, parent: Registry, **kwargs: Any) -> Registry:
    return PluginRegistry(name, parent=parent, scope="mim_zoo", locations=PLUGIN_MODULES, **kwargs)


MODELS = _registry("model", MMENGINE_MODELS, build_func=build_with_suggestions)
MASK_GENERATORS = _registry("mask generator", MMENGINE_TASK_UTILS, build_func=build_with_suggestions)
# mmengine allows one "mim_zoo" child per root registry, so target generators hang below our MODELS.
TARGET_GENERATORS = _registry("target generator", MODELS, build_func=build_with_suggestions)
HOOKS = _registry("hook", MMENGINE_HOOKS)

# With ``default_scope = "mim_zoo"`` the Runner looks for a "mim_zoo" child in every mmengine registry; these
# empty children fall back to mmengine's own entries (optimizers, schedulers, loops, ...).
_RUNNER_REGISTRIES = {
    name: Registry(name.lower(), parent=getattr(mmengine_registry, name), scope="mim_zoo")
    for name in ("DATASETS", "DATA_SAMPLERS", "TRANSFORMS", "OPTIMIZERS", "OPTIM_WRAPPERS",
                 "OPTIM_WRAPPER_CONSTRUCTORS", "PARAM_SCHEDULERS", "METRICS", "EVALUATOR", "LOOPS", "LOG_PROCESSORS",
                 "VISUALIZERS", "VISBACKENDS", "MODEL_WRAPPERS", "WEIGHT_INITIALIZERS", "FUNCTIONS")
}


def build(registry: Registry, cfg_or_obj: Any, **default_args: Any) -> Any:
    """Return ``cfg_or_obj`` if it is already built, else build it from ``registry`` (R9: objects or configs)."""
    if isinstance(cfg_or_obj, dict):
        return registry.build(cfg_or_obj, default_args=default_args or None)
    return cfg_or_obj
