"""The stack mim_zoo is tested with, checked once at import (STYLE R26), and which mmcv ops a run will get.

The versions live in one file, ``mim_zoo/requirements.txt`` (read here through importlib.resources; setup.cfg and
tools/install.sh read the same file): each line a range and, where one is tested, ``# tested <version>``. A version
outside its range fails with a message that names the fix; an untested OpenMMLab version only warns.

``require_mmcv_ops()`` is called where a downstream (mmseg/mmdet) config is used: those import ``mmcv.ops``, whose
kernels are compiled mmcv's or, by default, mim_zoo's on torchvision (:mod:`mim_zoo.engine.mmcv_ops`).
"""

from __future__ import annotations

import importlib.metadata as metadata
import importlib.util
import os
import re
import warnings
from dataclasses import dataclass
from functools import cache
from importlib import resources

from packaging.requirements import Requirement
from packaging.version import Version

INSTALL_HINT = "Install the tested stack with `bash tools/install.sh` (see DEVELOPERS.md)."
COMPILED_OPS_INSTALL = "MIM_ZOO_MMCV_OPS=compiled bash tools/install.sh"
REQUIRED = ("torch", "timm", "mmengine")  # `import mim_zoo` and pretraining need these
OPENMMLAB = ("mmcv", "mmpretrain", "mmsegmentation", "mmdet")  # checked when installed; an untested version warns


class StackError(ImportError):
    """The installed packages are known not to work with mim_zoo."""


@dataclass(frozen=True)
class Pin:
    """One line of ``mim_zoo/requirements.txt``."""

    text: str  # the requirement as written, e.g. "timm>=1.0.9,<1.1"
    tested: str | None  # the tested version, if the line names one
    why: str  # the rest of the line's comment

    @property
    def requirement(self) -> Requirement:
        return Requirement(self.text)

    @property
    def name(self) -> str:
        return self.requirement.name

    @property
    def range_text(self) -> str:
        """``">= 1.0.9, < 1.1"``, in the file's order."""
        specs = self.text[len(self.name):].split(",")
        return ", ".join(re.sub(r"^\s*([<>=!~]+)\s*", r"\1 ", spec) for spec in specs if spec.strip())

    @property
    def install_line(self) -> str:
        """What tools/install.sh installs: ``name==tested``, else the range as written."""
        return f"{self.name}=={self.tested}" if self.tested else self.text


_LINE = re.compile(r"^(?P<requirement>[^#]+?)\s*(?:#\s*(?:tested\s+(?P<tested>[^\s:]+):?)?\s*(?P<why>.*))?$")


@cache
def stack_pins() -> dict[str, Pin]:
    """``{package: Pin}`` of ``mim_zoo/requirements.txt``, in the file's order."""
    pins = {}
    for line in resources.files("mim_zoo").joinpath("requirements.txt").read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _LINE.match(line.strip())
        pin = Pin(match["requirement"], match["tested"], match["why"] or "")
        pins[pin.name] = pin
    return pins


TESTED = {name: pin.tested for name, pin in stack_pins().items() if pin.tested}


def installed(name: str) -> Version | None:
    try:
        return Version(metadata.version(name))
    except metadata.PackageNotFoundError:
        return None


def _require_in_range(pin: Pin, version: Version | None) -> None:
    if version is None:
        raise StackError(f"mim_zoo needs {pin.name} {pin.range_text}; it is not installed. {INSTALL_HINT}")
    if not pin.requirement.specifier.contains(version, prereleases=True):
        why = f" ({pin.why})" if pin.why else ""
        raise StackError(f"mim_zoo needs {pin.name} {pin.range_text}{why}; found {version}. {INSTALL_HINT}")


def check_stack() -> None:
    """Fail on versions outside the ranges; warn on OpenMMLab versions outside the tested set."""
    pins = stack_pins()
    for name in REQUIRED:
        _require_in_range(pins[name], installed(name))
    for name in OPENMMLAB:
        version = installed(name)
        if version is None:  # mmcv-lite is enough for pretraining; require_mmcv_ops() guards downstream use
            continue
        _require_in_range(pins[name], version)
        if str(version) != pins[name].tested:
            warnings.warn(f"mim_zoo is tested with {name} {pins[name].tested}, found {version}", stacklevel=2)
    if installed("transformers") is not None and installed("pycocotools") is not None:
        warnings.warn(
            "transformers and pycocotools are both installed: `import mmpretrain` then loads its multimodal models, "
            "which fail with recent transformers. Uninstall transformers (mim_zoo does not use it).",
            stacklevel=2,
        )


def mmcv_ops_backend() -> str | None:
    """Where ``mmcv._ext`` comes from, without importing it: ``"compiled"`` (mmcv's C++/CUDA extension),
    ``"torchvision"`` (the ``mmcv/_ext.py`` of the compiler-free install: :mod:`mim_zoo.engine.mmcv_ops`) or
    ``None`` (no mmcv ops: mmcv-lite, or no mmcv)."""
    try:
        spec = importlib.util.find_spec("mmcv._ext")
    except ModuleNotFoundError:
        return None
    if spec is None or spec.origin is None:
        return None
    return "torchvision" if spec.origin.endswith(".py") else "compiled"


def mmcv_ops_have_cuda_kernels() -> bool:
    """Whether mmcv's ops can run on CUDA tensors: compiled with CUDA, or torchvision built with CUDA."""
    import torch

    if mmcv_ops_backend() == "compiled":
        from mmcv.ops import get_compiling_cuda_version

        return get_compiling_cuda_version() != "not available"
    import torchvision  # noqa: F401  (registers torch.ops.torchvision)

    return int(torch.ops.torchvision._cuda_version()) > 0


def require_mmcv_ops(purpose: str = "downstream segmentation/detection", on_cuda_tensors: bool = False) -> None:
    """Raise an actionable error when the ``mmcv.ops`` that mmseg/mmdet import are missing or are not what was
    asked for (``MIM_ZOO_MMCV_OPS=compiled`` in the environment); warn when ``on_cuda_tensors`` (the purpose calls
    mmcv's ops, as mmdet's Mask R-CNN does), CUDA is available and the ops have no CUDA kernel."""
    try:
        import mmcv.ops  # noqa: F401
    except (ImportError, OSError) as err:
        raise StackError(
            f"{purpose} needs mmcv {TESTED['mmcv']} with its ops (mmseg and mmdet import mmcv.ops), but "
            f"`import mmcv.ops` failed: {err}. mmcv-lite is not enough and no mmcv wheel exists for this torch: "
            f"{INSTALL_HINT}"
        ) from err
    backend = mmcv_ops_backend()
    if os.environ.get("MIM_ZOO_MMCV_OPS") == "compiled" and backend != "compiled":
        raise StackError(
            f"MIM_ZOO_MMCV_OPS=compiled asks for compiled mmcv ops, but mmcv's ops here are mim_zoo's compiler-free "
            f"ones (mmcv/_ext.py, on torchvision). Install compiled ones with `{COMPILED_OPS_INSTALL}`, or unset "
            f"MIM_ZOO_MMCV_OPS to run on these."
        )
    import torch

    if on_cuda_tensors and torch.cuda.is_available() and not mmcv_ops_have_cuda_kernels():
        fix = (f"reinstall on this GPU machine with `{COMPILED_OPS_INSTALL}` (compiles CUDA kernels for its GPU) or "
               "with the default `bash tools/install.sh` (torchvision's CUDA kernels)" if backend == "compiled" else
               "install a torchvision built with CUDA")
        warnings.warn(
            f"{purpose} calls mmcv's nms and roi_align on CUDA tensors, but this mmcv's ops ({backend}) have no CUDA "
            f"kernel: the run would stop at its first RoI. Fix: {fix}; or run on CPU (CUDA_VISIBLE_DEVICES='').",
            stacklevel=2,
        )
