"""The stack mim_zoo is tested with, checked once at import (STYLE R26).

A version known to break fails with a message that names the fix; an untested but plausible one only warns.
``require_mmcv_ops()`` is called where a downstream (mmseg/mmdet) config is used: those import compiled ``mmcv.ops``.
"""

from __future__ import annotations

import importlib.metadata as metadata
import warnings

from packaging.version import Version

TESTED = {
    "torch": "2.14.1",
    "torchvision": "0.29.1",
    "timm": "1.0.31",
    "mmengine": "0.10.7",
    "mmcv": "2.1.0",
    "mmpretrain": "1.2.0",
    "mmsegmentation": "1.2.2",
    "mmdet": "3.3.0",
}

INSTALL_HINT = "Install the tested stack with `bash tools/install.sh` (see DEVELOPERS.md)."


class StackError(ImportError):
    """The installed packages are known not to work with mim_zoo."""


def installed(name: str) -> Version | None:
    try:
        return Version(metadata.version(name))
    except metadata.PackageNotFoundError:
        return None


def _require(name: str, low: str, high: str, why: str) -> None:
    version = installed(name)
    if version is None:
        raise StackError(f"mim_zoo needs {name} (>= {low}, < {high}); it is not installed. {INSTALL_HINT}")
    if not Version(low) <= version < Version(high):
        raise StackError(f"mim_zoo needs {name} >= {low}, < {high} ({why}); found {version}. {INSTALL_HINT}")


def check_stack() -> None:
    """Fail on versions known to break; warn on versions outside the tested set."""
    _require("torch", "2.6", "3", "torch.serialization.add_safe_globals and SDPA")
    _require("timm", "1.0.9", "1.1", "forward_intermediates and the CLIP/DINO checkpoint filters of timm 1.0")
    _require("mmengine", "0.10.5", "0.11", "the Runner API and pure-Python configs of 0.10")
    for name in ("mmcv", "mmpretrain", "mmsegmentation", "mmdet"):
        if name == "mmcv" and installed("mmcv") is None and installed("mmcv-lite") is not None:
            continue  # mmcv-lite is enough for pretraining; require_mmcv_ops() guards downstream use
        version = installed(name)
        if name == "mmcv" and version is not None and version >= Version("2.2.0") and installed("mmpretrain"):
            raise StackError(
                f"mmcv {version} is installed, but mmpretrain 1.2 / mmseg 1.2 / mmdet 3.3 assert mmcv < 2.2.0. "
                f"Install mmcv 2.1.0 with compiled ops. {INSTALL_HINT}"
            )
        if version is not None and str(version) != TESTED[name]:
            warnings.warn(f"mim_zoo is tested with {name} {TESTED[name]}, found {version}", stacklevel=2)
    if installed("transformers") is not None and installed("pycocotools") is not None:
        warnings.warn(
            "transformers and pycocotools are both installed: `import mmpretrain` then loads its multimodal models, "
            "which fail with recent transformers. Uninstall transformers (mim_zoo does not use it).",
            stacklevel=2,
        )


def require_mmcv_ops(purpose: str = "downstream segmentation/detection") -> None:
    """Raise an actionable error when the compiled ``mmcv.ops`` that mmseg/mmdet import are missing."""
    try:
        import mmcv.ops  # noqa: F401
    except (ImportError, OSError) as err:
        raise StackError(
            f"{purpose} needs mmcv {TESTED['mmcv']} with compiled ops (mmseg and mmdet import mmcv.ops), but "
            f"`import mmcv.ops` failed: {err}. mmcv-lite is not enough and no mmcv wheel exists for this torch: "
            f"{INSTALL_HINT}"
        ) from err
