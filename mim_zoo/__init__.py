"""mim_zoo: a modular comparison toolkit for masked image modeling on OpenMMLab.

``import mim_zoo`` checks the installed stack (:mod:`mim_zoo.env`) and applies the compatibility fixes for modern
torch (:mod:`mim_zoo.compat`); nothing more. The registries import the plugin modules on their first lookup
(:data:`mim_zoo.registry.PLUGIN_MODULES`), so this import pulls in no mmcv op, mmdet, mmseg or mmpretrain: the
compiler-free ``mmcv._ext`` imports :mod:`mim_zoo.engine.mmcv_ops` while ``mmcv.ops`` is being imported.
"""

from .env import check_stack

check_stack()

from . import compat  # noqa: E402

compat.apply()

from .registry import HOOKS, MASK_GENERATORS, MODELS, TARGET_GENERATORS  # noqa: E402
from .version import __version__  # noqa: E402

__all__ = ["MODELS", "MASK_GENERATORS", "TARGET_GENERATORS", "HOOKS", "__version__"]
