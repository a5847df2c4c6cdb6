"""mim_zoo: a modular comparison toolkit for masked image modeling on OpenMMLab.

``import mim_zoo`` checks the installed stack (:mod:`mim_zoo.env`), applies the compatibility fixes for modern torch
(:mod:`mim_zoo.compat`) and registers every plugin by explicit import (STYLE R8).
"""

from .env import check_stack

check_stack()

from . import compat  # noqa: E402

compat.apply()

from . import algorithms, encoders, hooks, masking, reliability, targets, validation, visualization  # noqa: E402,F401
from .engine import pipeline  # noqa: E402,F401  (registers the input pipeline)
from .registry import HOOKS, MASK_GENERATORS, MODELS, TARGET_GENERATORS  # noqa: E402
from .version import __version__  # noqa: E402

__all__ = ["MODELS", "MASK_GENERATORS", "TARGET_GENERATORS", "HOOKS", "__version__"]
