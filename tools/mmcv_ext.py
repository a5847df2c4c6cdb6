"""``mmcv/_ext.py`` of the compiler-free mmcv that ``tools/install.sh`` builds (copied into mmcv's sdist before the
wheel is built, so it is in the wheel's RECORD and leaves with ``pip uninstall mmcv``).

mmcv's ops import ``mmcv._ext`` through ``mmcv.utils.ext_loader.load_ext`` and assert the functions they call; this
module is that extension, supplied by :mod:`mim_zoo.engine.mmcv_ops` (torchvision's kernels for the ops mim_zoo's
configs reach, an error naming the op and the way to compiled ops for every other one). Installing mmcv with
compiled ops (``MIM_ZOO_MMCV_OPS=compiled bash tools/install.sh``) replaces this file by the compiled extension.
"""

try:
    from mim_zoo.engine.mmcv_ops import *  # noqa: F403
    from mim_zoo.engine.mmcv_ops import __all__  # noqa: F401
except ModuleNotFoundError as err:
    if err.name not in ("mim_zoo", "mim_zoo.engine", "mim_zoo.engine.mmcv_ops"):
        raise
    raise ImportError(
        "this mmcv was built by mim_zoo's tools/install.sh without compiled ops: its ops (mmcv._ext) come from "
        "mim_zoo.engine.mmcv_ops, and mim_zoo is not importable. Install mim_zoo, or mmcv with compiled ops "
        "(MIM_ZOO_MMCV_OPS=compiled bash tools/install.sh)."
    ) from err
