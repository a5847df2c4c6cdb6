"""The import-time stack check: known-bad versions fail with the fix, the tested stack passes."""

import pytest
from packaging.version import Version

from mim_zoo.engine import env


def test_the_installed_stack_passes():
    env.check_stack()
    env.require_mmcv_ops()


def test_known_bad_versions_fail_with_the_fix(monkeypatch):
    real = env.installed

    def fake(version_of: dict):
        return lambda name: Version(version_of[name]) if name in version_of else real(name)

    monkeypatch.setattr(env, "installed", fake({"timm": "0.3.2"}))
    with pytest.raises(env.StackError, match=r"timm >= 1.0.9, < 1.1 .*found 0.3.2.*tools/install.sh"):
        env.check_stack()
    monkeypatch.setattr(env, "installed", fake({"mmcv": "2.2.0"}))
    with pytest.raises(env.StackError, match="assert mmcv < 2.2.0"):
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
