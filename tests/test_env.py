"""The stack check at import, the one pin file that setup.cfg, tools/install.sh and mim_zoo.engine.env share, and the
detection of which mmcv ops a run gets."""

import dataclasses
import email
import importlib.util
import shutil
import subprocess
import sys
import warnings
import zipfile
from importlib import resources
from pathlib import Path

import pytest
from mmengine.config import Config
from packaging.requirements import Requirement
from packaging.version import Version

from mim_zoo.engine import env

REPO = Path(__file__).resolve().parents[1]


def test_the_installed_stack_passes():
    env.check_stack()
    env.require_mmcv_ops()


def wheel_requirements(tmp_path: Path) -> list[Requirement]:
    """The Requires-Dist (without extras) of the mim_zoo wheel setup.cfg builds, and the wheel holds the pin file.
    Built from a copy of the sources, so that no build/ folder is left in the checkout."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    for name in ("requirements", "mim_zoo"):
        shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path), str(source)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("mim_zoo-*.whl")
    assert not (REPO / "build").exists()
    with zipfile.ZipFile(wheel) as archive:
        assert "mim_zoo/requirements.txt" in archive.namelist()  # package data: env reads it when installed
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        metadata = email.message_from_bytes(archive.read(name))
    return [r for r in map(Requirement, metadata.get_all("Requires-Dist")) if "extra" not in str(r.marker)]


def test_setup_cfg_install_sh_and_env_read_the_same_pins(tmp_path):
    pins = env.stack_pins()
    assert Path(str(resources.files("mim_zoo").joinpath("requirements.txt"))) == REPO / "mim_zoo" / "requirements.txt"
    assert wheel_requirements(tmp_path) == [pin.requirement for pin in pins.values()]
    printed = subprocess.run(["bash", str(REPO / "tools/install.sh"), "--print-pins"], capture_output=True, text=True,
                             check=True).stdout.splitlines()
    assert printed == [pin.install_line for pin in pins.values()]
    assert {"torch", "torchvision", "timm", "mmengine", *env.OPENMMLAB} <= set(env.TESTED)
    for pin in pins.values():  # each tested version inside its own range
        assert pin.tested is None or pin.requirement.specifier.contains(pin.tested), pin.text


def test_install_sh_installed_the_tested_versions():
    for name, tested in env.TESTED.items():
        assert env.installed(name).public == tested, name


def test_versions_outside_the_ranges_fail_with_the_fix(monkeypatch):
    real = env.installed

    def fake(version_of: dict):
        return lambda name: Version(version_of[name]) if name in version_of else real(name)

    monkeypatch.setattr(env, "installed", fake({"timm": "0.3.2"}))
    with pytest.raises(env.StackError, match=r"timm >= 1.0.9, < 1.1 \(forward_intermediates.*found 0.3.2.*install.sh"):
        env.check_stack()
    monkeypatch.setattr(env, "installed", fake({"mmcv": "2.2.0"}))
    with pytest.raises(env.StackError, match="assert mmcv < 2.2.0"):
        env.check_stack()
    monkeypatch.setattr(env, "installed", fake({"mmdet": "3.3.1"}))
    with pytest.warns(UserWarning, match="tested with mmdet 3.3.0, found 3.3.1"):
        env.check_stack()


def test_missing_ops_name_the_fix(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_ops(name, *args, **kwargs):
        if name == "mmcv.ops":
            raise ImportError("libmmcv_ops.so: cannot open shared object file")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ops)
    with pytest.raises(env.StackError, match="mmcv-lite is not enough"):
        env.require_mmcv_ops()


def test_the_mmcv_ops_backend_is_where_mmcv_ext_comes_from():
    origin = importlib.util.find_spec("mmcv._ext").origin
    assert env.mmcv_ops_backend() == ("torchvision" if origin.endswith("_ext.py") else "compiled")


def test_compiled_ops_asked_for_but_missing_name_the_install(monkeypatch):
    monkeypatch.setenv("MIM_ZOO_MMCV_OPS", "compiled")
    monkeypatch.setattr(env, "mmcv_ops_backend", lambda: "torchvision")
    with pytest.raises(env.StackError, match="MIM_ZOO_MMCV_OPS=compiled asks for compiled .*"
                                             "MIM_ZOO_MMCV_OPS=compiled bash tools/install.sh"):
        env.require_mmcv_ops()
    monkeypatch.setattr(env, "mmcv_ops_backend", lambda: "compiled")
    env.require_mmcv_ops()


@pytest.mark.parametrize("backend", ["compiled", "torchvision"])
def test_a_cuda_run_with_ops_without_cuda_kernels_is_told_the_fix(monkeypatch, backend):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(env, "mmcv_ops_backend", lambda: backend)
    monkeypatch.setattr(env, "mmcv_ops_have_cuda_kernels", lambda: False)
    fix = "MIM_ZOO_MMCV_OPS=compiled bash tools/install.sh" if backend == "compiled" else "torchvision built with CUDA"
    with pytest.warns(UserWarning, match=f"nms and roi_align on CUDA tensors.*no CUDA kernel.*{fix}"):
        env.require_mmcv_ops("COCO detection with mmdet", on_cuda_tensors=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        env.require_mmcv_ops("ADE20K segmentation with mmseg")  # UperNet calls no mmcv op


def test_the_downstream_runner_checks_the_ops_of_mmseg_and_mmdet_configs(monkeypatch, tmp_path):
    from mim_zoo.engine.benchmark import task_config

    monkeypatch.setenv("MIM_ZOO_MMCV_OPS", "compiled")
    monkeypatch.setattr(env, "mmcv_ops_backend", lambda: "torchvision")
    for config in ("coco/det_mask-rcnn_vitdet_tiny_cpu.py", "ade20k/seg_upernet_vit_tiny_cpu.py"):
        with pytest.raises(env.StackError, match="MIM_ZOO_MMCV_OPS=compiled asks for compiled"):
            task_config(REPO / "configs/benchmarks" / config, "pretrained.pth", str(tmp_path))


# --- what a run needs of its device (check_run_environment, called by prepare_config) ------------------------------
H200 = env.DeviceSupport("cuda", "NVIDIA H200 (compute capability 9.0)", native_bf16=True, native_fp16=True,
                         compiler="/usr/bin/cc")
V100 = env.DeviceSupport("cuda", "Tesla V100 (compute capability 7.0)", native_bf16=False, native_fp16=True,
                         compiler="/usr/bin/cc")
AVX512_BF16 = env.DeviceSupport("cpu", "Xeon (avx512_bf16)", native_bf16=True, native_fp16=False, compiler="/bin/g++")
AVX2 = env.DeviceSupport("cpu", "Xeon (avx2)", native_bf16=False, native_fp16=False, compiler="/usr/bin/g++")


def needs_of(**cfg) -> env.RunNeeds:
    return env.run_needs(Config(cfg))


def test_run_needs_reads_amp_teacher_dtype_compile_and_the_ops_scope():
    import torch

    assert needs_of(optim_wrapper=dict(type="OptimWrapper")) == env.RunNeeds()
    assert needs_of(optim_wrapper=dict(type="AmpOptimWrapper")).autocast == "float16"  # mmengine's CUDA default
    amp_bf16 = dict(type="mmengine.optim.AmpOptimWrapper", dtype=torch.bfloat16)
    assert needs_of(optim_wrapper=amp_bf16).autocast == "bfloat16"
    assert needs_of(strategy=dict(type="DeepSpeedStrategy", bf16=dict(enabled=True))).autocast == "bfloat16"
    assert needs_of(model=dict(type="MRMAE", teacher_dtype="bfloat16")).teacher_dtype == "bfloat16"
    assert needs_of(compile=True).compile and needs_of(compile=dict(mode="max-autotune")).compile
    assert needs_of(default_scope="mmdet").mmcv_ops == "call" and needs_of(default_scope="mmseg").mmcv_ops == "import"
    assert needs_of(default_scope="mim_zoo").mmcv_ops is None


def test_bf16_autocast_without_native_bf16_fails_with_the_fix():
    errors, warns = env.diagnose(env.RunNeeds(autocast="bfloat16"), V100)
    assert len(errors) == 1 and not warns
    assert "Tesla V100" in errors[0] and "no native bf16" in errors[0] and "drop optim_wrapper.dtype" in errors[0]
    assert env.diagnose(env.RunNeeds(autocast="bfloat16"), H200) == ([], [])
    assert env.diagnose(env.RunNeeds(autocast="float16"), V100) == ([], [])  # fp16 + loss scaling is the fix


def test_mixed_precision_on_the_cpu_fails_with_the_fix():
    (error,), _ = env.diagnose(env.RunNeeds(autocast="float16"), AVX512_BF16)
    assert "needs a CUDA device" in error and "drop --amp" in error


def test_bf16_teachers_warn_on_a_cpu_that_emulates_bf16_only():
    needs = env.RunNeeds(teacher_dtype="bfloat16")
    (error_free, (warning,)) = env.diagnose(needs, AVX2)
    assert error_free == [] and "3.7x slower with AVX2 only" in warning and "model.teacher_dtype=None" in warning
    assert env.diagnose(needs, AVX512_BF16) == ([], [])
    assert env.diagnose(needs, H200) == ([], [])
    assert env.diagnose(env.RunNeeds(teacher_dtype="float16"), AVX512_BF16)[1]  # no AVX-512 FP16 either
    assert env.diagnose(needs, dataclasses.replace(AVX2, native_bf16=None)) == ([], [])  # unknown: no claim


def test_compile_without_a_compiler_fails_with_the_fix():
    (error,), _ = env.diagnose(env.RunNeeds(compile=True), dataclasses.replace(H200, compiler=None))
    assert "Triton's launcher" in error and "compile=False" in error
    (error,), _ = env.diagnose(env.RunNeeds(compile=True), dataclasses.replace(AVX2, compiler=None))
    assert "Inductor" in error


def test_this_machines_device_support_matches_torch():
    import torch

    device = env.device_support("cpu")
    flags = env.cpu_flags()
    if flags is not None:
        assert device.native_bf16 == bool(flags & {"avx512_bf16", "amx_bf16"} or "bf16" in flags)
        if "avx512_bf16" in flags:  # torch's own probe agrees where it exists
            assert torch.cpu._is_avx512_bf16_supported()
    if torch.cuda.is_available():
        major, _ = torch.cuda.get_device_capability()
        assert env.device_support().native_bf16 == (major >= 8) == torch.cuda.is_bf16_supported(
            including_emulation=False)


def test_a_compiler_named_by_the_environment_must_exist(monkeypatch):
    monkeypatch.setenv("CXX", "/nonexistent/g++")
    assert env.device_support("cpu").compiler is None
    monkeypatch.setenv("CXX", sys.executable)  # any executable file stands for one
    assert env.device_support("cpu").compiler == sys.executable


def test_prepare_config_checks_the_run_environment(monkeypatch):
    from mim_zoo.engine.config import prepare_config

    cfg = Config.fromfile(str(REPO / "configs/mrmae/tiny_cpu.py"))
    cfg.model.teacher_dtype = "bfloat16"
    monkeypatch.setattr(env, "device_support", lambda kind=None: AVX2)
    with pytest.warns(UserWarning, match="no native bfloat16"):
        prepare_config(cfg)
    cfg.compile = True
    monkeypatch.setattr(env, "device_support", lambda kind=None: dataclasses.replace(AVX2, compiler=None))
    with pytest.raises(env.RunEnvironmentError, match="needs a C/C.. compiler"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepare_config(cfg)


def test_a_detector_on_cuda_with_ops_without_cuda_kernels_fails_at_start(monkeypatch):
    cfg = Config.fromfile(str(REPO / "configs/benchmarks/coco/det_mask-rcnn_vitdet_tiny_cpu.py"))
    monkeypatch.setattr(env, "device_support", lambda kind=None: H200)
    monkeypatch.setattr(env, "mmcv_ops_backend", lambda: "compiled")
    monkeypatch.setattr(env, "mmcv_ops_have_cuda_kernels", lambda: False)
    with pytest.raises(env.RunEnvironmentError, match="no CUDA kernel.*default `bash tools/install.sh`"):
        env.check_run_environment(cfg)
    monkeypatch.setattr(env, "mmcv_ops_have_cuda_kernels", lambda: True)
    assert env.check_run_environment(cfg) is H200
    seg = Config.fromfile(str(REPO / "configs/benchmarks/ade20k/seg_upernet_vit_tiny_cpu.py"))
    monkeypatch.setattr(env, "mmcv_ops_have_cuda_kernels", lambda: False)
    assert env.check_run_environment(seg) is H200  # UperNet imports mmcv.ops but calls none of them
