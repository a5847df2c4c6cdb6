"""The stack mim_zoo is tested with, checked once at import (STYLE R26), and which mmcv ops a run will get.

The versions live in one file, ``mim_zoo/requirements.txt`` (read here through importlib.resources; setup.cfg and
tools/install.sh read the same file): each line a range and, where one is tested, ``# tested <version>``. A version
outside its range fails with a message that names the fix; an untested OpenMMLab version only warns.

``require_mmcv_ops()`` is called where a downstream (mmseg/mmdet) config is used: those import ``mmcv.ops``, whose
kernels are compiled mmcv's or, by default, mim_zoo's on torchvision (:mod:`mim_zoo.engine.mmcv_ops`).

``check_run_environment(cfg)`` is called once per run, by ``prepare_config``: what the prepared config asks of the
device it starts on (mixed precision, bf16, MR-MAE's teacher dtype, ``torch.compile``, mmcv ops with CUDA kernels),
failing or warning with the fix. torch is imported inside the functions: ``import mim_zoo`` runs this module.
"""

from __future__ import annotations

import importlib.metadata as metadata
import importlib.util
import os
import re
import shutil
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

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


# --- what a run needs of the machine it starts on (prepare_config calls check_run_environment) ------------------
#: mmseg configs import mmcv.ops; mmdet's Mask R-CNN also calls its nms and roi_align on the model's device.
MMCV_OPS_SCOPES = {"mmseg": "import", "mmdet": "call"}
#: MR-MAE's teachers under bf16 autocast, against fp32 (MRMAE vitb_400e, teachers only, measured here on two CPUs).
BF16_TEACHERS_MEASURED = "1.34x faster with AVX-512 BF16, 3.7x slower with AVX2 only"


class RunEnvironmentError(ValueError):
    """The run asks for something the machine it starts on cannot do; the message names the fix."""


@dataclass(frozen=True)
class DeviceSupport:
    """What the device a run lands on does natively (``None``: could not tell).

    Attributes:
        kind: ``"cuda"`` or ``"cpu"``: where mmengine's Runner puts the model (CUDA whenever it is available).
        name: e.g. ``"NVIDIA H200 (compute capability 9.0)"`` or ``"Intel Xeon ... (avx512_bf16 amx_bf16)"``.
        native_bf16: bf16 matrix arithmetic in hardware (CUDA: compute capability >= 8.0, as
            ``torch.cuda.is_bf16_supported(including_emulation=False)``; CPU: AVX-512 BF16 or AMX-BF16 on x86, the
            BF16 extension on Arm); without it bf16 is emulated, slower than fp32.
        native_fp16: fp16 arithmetic in hardware (CUDA: always; CPU: AVX-512 FP16 or AMX-FP16, Arm FP16).
        compiler: the C/C++ compiler ``torch.compile`` needs here (Triton's launcher on CUDA, Inductor's C++ on
            CPU), ``None`` if there is none.
    """

    kind: str
    name: str
    native_bf16: bool | None
    native_fp16: bool | None
    compiler: str | None


@dataclass(frozen=True)
class RunNeeds:
    """What a prepared config asks of its device (:func:`run_needs`).

    Attributes:
        autocast: the mixed-precision dtype of the optimizer wrapper or strategy (``"float16"``, ``"bfloat16"``),
            ``None`` without AMP.
        teacher_dtype: MR-MAE's ``model.teacher_dtype`` (``"bfloat16"``, ``"float16"``, ...) or ``None``.
        compile: ``compile`` is set (mmengine's ``torch.compile`` of the model).
        mmcv_ops: ``"import"`` (an mmseg config), ``"call"`` (mmdet: nms and roi_align run on the model's device)
            or ``None``.
    """

    autocast: str | None = None
    teacher_dtype: str | None = None
    compile: bool = False
    mmcv_ops: str | None = None


def cpu_flags() -> frozenset[str] | None:
    """The processor's feature flags from ``/proc/cpuinfo`` (x86 ``flags``, Arm ``Features``); ``None`` elsewhere."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return None


def _cpu_native(flags: frozenset[str] | None, x86: set[str], arm: set[str], torch_probe: str) -> bool | None:
    """Any of the ``x86`` flags, or all of the ``arm`` ones; without /proc/cpuinfo, torch's private probe."""
    if flags is not None:
        return bool(flags & x86) or (bool(arm) and arm <= flags)
    import torch

    probe = getattr(torch.cpu, torch_probe, None)
    return bool(probe()) if probe is not None else None


def _c_compiler(kind: str) -> str | None:
    """Triton (CUDA) builds its launcher with ``$CC`` or cc/gcc/clang; Inductor (CPU) its kernels with ``$CXX`` or
    g++/clang++ (torch._inductor.cpp_builder)."""
    variable, names = ("CC", ("cc", "gcc", "clang")) if kind == "cuda" else ("CXX", ("g++", "clang++", "c++"))
    if os.environ.get(variable):
        return shutil.which(os.environ[variable])
    return next((path for path in map(shutil.which, names) if path), None)


def device_support(kind: str | None = None) -> DeviceSupport:
    """:class:`DeviceSupport` of the device a run gets here (``kind``: ``"cuda"`` or ``"cpu"``, default the
    Runner's choice)."""
    import torch

    kind = kind or ("cuda" if torch.cuda.is_available() else "cpu")
    if kind == "cuda":
        major, minor = torch.cuda.get_device_capability()
        name = f"{torch.cuda.get_device_name()} (compute capability {major}.{minor})"
        return DeviceSupport("cuda", name, native_bf16=major >= 8, native_fp16=True, compiler=_c_compiler("cuda"))
    flags = cpu_flags()
    bf16 = _cpu_native(flags, {"avx512_bf16", "amx_bf16"}, {"bf16"}, "_is_avx512_bf16_supported")
    fp16 = _cpu_native(flags, {"avx512_fp16", "amx_fp16"}, {"fphp", "asimdhp"}, "_is_avx512_fp16_supported")
    shown = sorted((flags or frozenset()) & {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "avx512_fp16",
                                               "amx_fp16", "bf16", "asimdhp"})
    name = f"{cpu_model()} ({' '.join(shown) or 'flags unknown'})"
    return DeviceSupport("cpu", name, native_bf16=bf16, native_fp16=fp16, compiler=_c_compiler("cpu"))


def cpu_model() -> str:
    """The processor's name (``/proc/cpuinfo``'s ``model name``, else ``platform.processor()``, else "unknown")."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown"


def _dtype_name(value: object) -> str | None:
    """``"bfloat16"`` for ``torch.bfloat16`` or ``"bfloat16"``; ``None`` stays ``None``."""
    return None if value is None else str(value).removeprefix("torch.")


def _type_name(value: object) -> str:
    return getattr(value, "__name__", str(value)).rsplit(".", 1)[-1]


def run_needs(cfg: Mapping) -> RunNeeds:
    """What the prepared config ``cfg`` (after ``--amp`` and ``--cfg-options``) asks of its device."""
    optim = cfg.get("optim_wrapper") or {}
    strategy = cfg.get("strategy") or {}
    autocast = None
    if _type_name(optim.get("type")) == "AmpOptimWrapper":
        autocast = _dtype_name(optim.get("dtype")) or "float16"  # mmengine's autocast: CUDA's default, fp16
    elif (strategy.get("bf16") or {}).get("enabled"):  # DeepSpeed
        autocast = "bfloat16"
    elif (strategy.get("fp16") or {}).get("enabled"):
        autocast = "float16"
    model = cfg.get("model") or {}
    teacher_dtype = model.get("teacher_dtype") if isinstance(model, Mapping) else None
    return RunNeeds(autocast=autocast, teacher_dtype=_dtype_name(teacher_dtype), compile=bool(cfg.get("compile")),
                    mmcv_ops=MMCV_OPS_SCOPES.get(cfg.get("default_scope")))


def diagnose(needs: RunNeeds, device: DeviceSupport) -> tuple[list[str], list[str]]:
    """``(errors, warnings)``: what ``needs`` asks that ``device`` cannot do, each message with its fix."""
    errors, warns = [], []
    if needs.autocast and device.kind != "cuda":
        errors.append(f"mixed precision ({needs.autocast} AmpOptimWrapper / --amp) needs a CUDA device, and this run "
                      "is on the CPU: train in fp32 (drop --amp; optim_wrapper.type=OptimWrapper)")
    elif needs.autocast == "bfloat16" and device.native_bf16 is False:
        errors.append(f"bf16 autocast (optim_wrapper.dtype=bfloat16) on {device.name}, which has no native bf16 "
                      "(compute capability < 8.0: emulated, far slower than fp16): drop optim_wrapper.dtype "
                      "(--amp alone trains in fp16 with loss scaling)")
    for dtype, native in (("bfloat16", device.native_bf16), ("float16", device.native_fp16)):
        if needs.teacher_dtype == dtype and native is False:
            measured = f" (measured: {BF16_TEACHERS_MEASURED})" if dtype == "bfloat16" else ""
            warns.append(f"MR-MAE's teachers run under {dtype} autocast (model.teacher_dtype={dtype!r}) on "
                         f"{device.name}, which has no native {dtype}: emulated, slower than fp32{measured}. Set "
                         "model.teacher_dtype=None (fp32 here) unless this device computes it natively")
    if needs.compile and device.compiler is None:
        tool = "Triton's launcher ($CC, cc, gcc or clang)" if device.kind == "cuda" else "Inductor ($CXX or g++)"
        errors.append(f"compile=True needs a C/C++ compiler for {tool}, and none is on PATH: install one (e.g. "
                      "`apt-get install g++`) or set compile=False")
    return errors, warns


def check_run_environment(cfg: Mapping) -> DeviceSupport:
    """Fail now, with the fix, on what ``cfg`` asks and this machine cannot do; warn on what it does slowly.

    Called once by ``mim_zoo.engine.config.prepare_config`` (so by ``tools/train.py`` and the downstream runner):
    mixed precision without CUDA or bf16 without native support (:func:`diagnose`), MR-MAE teachers in a dtype the
    device emulates, ``compile`` without a compiler, and mmseg/mmdet configs whose mmcv ops are missing or, for a
    detector on CUDA, have no CUDA kernel (compiled mmcv built without CUDA; the compiler-free ops run on
    torchvision's CUDA kernels). Returns what the device supports.

    Raises:
        RunEnvironmentError: the run cannot work here (a ``ValueError``: tools print it as one line).
    """
    device = device_support()
    errors, warns = diagnose(run_needs(cfg), device)
    scope_use = MMCV_OPS_SCOPES.get(cfg.get("default_scope"))
    if scope_use:
        try:
            require_mmcv_ops(f"this {cfg.get('default_scope')} config")
        except StackError as err:
            errors.append(str(err))
        else:
            if scope_use == "call" and device.kind == "cuda" and not mmcv_ops_have_cuda_kernels():
                errors.append(
                    f"mmdet's detectors call mmcv's nms and roi_align on CUDA tensors, but this mmcv's ops "
                    f"({mmcv_ops_backend()}) have no CUDA kernel: the run would stop at its first RoI. Reinstall with "
                    f"the default `bash tools/install.sh` (torchvision's CUDA kernels) or `{COMPILED_OPS_INSTALL}` "
                    "on this GPU machine, or run on the CPU (CUDA_VISIBLE_DEVICES='')")
    for message in warns:
        warnings.warn(message, stacklevel=2)
    if errors:
        raise RunEnvironmentError(" Also: ".join(errors))
    return device
