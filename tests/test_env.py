"""The stack check at import, the one pin file that setup.cfg, tools/install.sh and mim_zoo.engine.env share, and the
detection of which mmcv ops a run gets."""

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
    return [r for r in map(Requirement, metadata.get_all("Requires-Dist")) if r.marker is None]


def test_setup_cfg_install_sh_and_env_read_the_same_pins(tmp_path):
    pins = env.stack_pins()
    assert Path(str(resources.files("mim_zoo").joinpath("requirements.txt"))) == REPO / "mim_zoo" / "requirements.txt"
    assert wheel_requirements(tmp_path) == [pin.requirement for pin in pins.values()]
    printed = subprocess.run(["bash", str(REPO / "tools/install.sh"), "--print-pins"], capture_output=True, text=True,
                             check=True).stdout.split()
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
