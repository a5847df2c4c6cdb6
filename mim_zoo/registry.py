"""mim_zoo's registries, where mmengine looks for them (it imports ``<default_scope>.registry``).

The plugin seams are in :mod:`mim_zoo.core.registry`; the engine's children of mmengine's registries (hooks,
transforms, the Runner's) in :mod:`mim_zoo.engine.registry`.
"""

from .core.registry import (
    ENCODER_INITS,
    MASK_GENERATORS,
    MODELS,
    TARGET_GENERATORS,
    ConfigEntryError,
    InvalidValueError,
    UnknownArgumentError,
    UnknownPluginError,
    build,
    build_with_suggestions,
    config_entry,
    describe_unknown,
    registered_names,
)
from .engine.registry import HOOKS, TRANSFORMS

__all__ = ["ENCODER_INITS", "HOOKS", "MASK_GENERATORS", "MODELS", "TARGET_GENERATORS", "TRANSFORMS",
           "ConfigEntryError", "InvalidValueError", "UnknownArgumentError", "UnknownPluginError", "build",
           "build_with_suggestions", "config_entry", "describe_unknown", "registered_names"]
