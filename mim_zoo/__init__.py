"""mim_zoo: a modular comparison toolkit for masked image modeling on OpenMMLab.

``import mim_zoo`` checks the installed stack (:mod:`mim_zoo.engine.env`) and applies the compatibility fixes for
modern torch (:mod:`mim_zoo.engine.compat`); it imports no plugin. The package has three tiers, imports pointing
down only: :mod:`mim_zoo.core` (the model core), :mod:`mim_zoo.engine` (what runs it) and :mod:`mim_zoo.synthetic`
(synthetic data and teachers for tests and the quickstart). Plugins register on the first lookup in their registry
(:mod:`mim_zoo.registry`). So this import pulls in no mmcv op, mmdet, mmseg or mmpretrain, as it must: the
compiler-free ``mmcv._ext`` imports :mod:`mim_zoo.engine.mmcv_ops` while ``mmcv.ops`` is being imported.
"""

from .engine.env import check_stack

check_stack()

from .engine import compat  # noqa: E402

compat.apply()

from .version import __version__  # noqa: E402

__all__ = ["__version__"]
