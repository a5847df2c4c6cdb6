"""Converters from official pretraining checkpoint layouts to mim_zoo state dicts.

A converter is a pure function ``official_state_dict -> mim_zoo_state_dict`` registered under the name of the
layout (``"mae"``, ``"bootmae"``, ...). ``tools/convert_checkpoint.py SRC DST --from NAME`` applies one and writes a
checkpoint that a config loads with ``load_from`` (to evaluate released weights or continue training them).
"""

from . import bootmae, mae, mixmim  # noqa: E402,F401  (explicit imports register the converters)
from .official import CONVERTERS, convert_state_dict, register_converter

__all__ = ["CONVERTERS", "convert_state_dict", "register_converter"]
