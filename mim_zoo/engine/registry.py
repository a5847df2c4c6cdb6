"""The engine's ``mim_zoo`` children of mmengine's registries.

``HOOKS`` holds mim_zoo's hooks so configs may name them by string (its plugins: :mod:`mim_zoo.engine.hooks`).
With ``default_scope = "mim_zoo"`` the Runner looks for a "mim_zoo" child in every mmengine registry; the
other children fall back to mmengine's own entries (optimizers, loops, transforms, ...); ``PARAM_SCHEDULERS`` adds
:class:`mim_zoo.engine.schedulers.WarmupCosineLR`.
"""

from __future__ import annotations

import mmengine.registry as mmengine_registry
from mmengine.registry import Registry

HOOKS = Registry("hook", parent=mmengine_registry.HOOKS, scope="mim_zoo", locations=["mim_zoo.engine.hooks"])
TRANSFORMS = Registry("transform", parent=mmengine_registry.TRANSFORMS, scope="mim_zoo",
                      locations=["mim_zoo.engine.transforms", "mim_zoo.engine.pipeline"])

_LOCATIONS = {"PARAM_SCHEDULERS": ["mim_zoo.engine.schedulers"]}  # the registries that hold mim_zoo entries
RUNNER_REGISTRIES = {
    name: Registry(name.lower(), parent=getattr(mmengine_registry, name), scope="mim_zoo",
                   locations=_LOCATIONS.get(name, []))
    for name in ("DATASETS", "DATA_SAMPLERS", "OPTIMIZERS", "OPTIM_WRAPPERS", "OPTIM_WRAPPER_CONSTRUCTORS",
                 "PARAM_SCHEDULERS", "METRICS", "EVALUATOR", "LOOPS", "LOG_PROCESSORS", "VISUALIZERS", "VISBACKENDS",
                 "MODEL_WRAPPERS", "WEIGHT_INITIALIZERS", "FUNCTIONS")
}
