"""Choose which file provides ``mmcv._ext`` in a process, whichever mmcv is installed: the compiler-free one
(``tools/mmcv_ext.py`` -> :mod:`mim_zoo.engine.mmcv_ops`) or compiled mmcv's extension (from the installed mmcv when
it is compiled, else from the cached wheel ``mmcv-2.1.0-cp311-cp311-linux_*.whl`` in ``MIM_ZOO_WHEEL_DIR`` or
install.sh's wheel cache, the way CI provides it).

    python tests/helpers/mmcv_backend.py torchvision|compiled SCRIPT [ARGS...]   # run SCRIPT with that backend

A finder placed first on ``sys.meta_path`` answers the import of ``mmcv._ext`` with the chosen file, exactly as the
installed ``mmcv/_ext.py`` or ``mmcv/_ext.*.so`` would; nothing else changes. ``load_compiled_reference()`` loads
the compiled extension under another name, beside whatever ``mmcv._ext`` is, to compare kernels in one process.
"""

from __future__ import annotations

import glob
import hashlib
import importlib.machinery
import importlib.util
import os
import runpy
import sys
import tempfile
import zipfile
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]
SHIM = REPO / "tools" / "mmcv_ext.py"
EXT_SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]  # ".cpython-311-x86_64-linux-gnu.so"
BACKENDS = ("torchvision", "compiled")


def _wheel_dirs() -> list[str]:
    cache = os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "mim_zoo", "wheels")
    return [d for d in os.environ.get("MIM_ZOO_WHEEL_DIR", "").split(":") if d] + [cache]


def compiled_extension() -> Path | None:
    """The compiled ``_ext`` of mmcv 2.1.0: the installed one if mmcv is compiled, else extracted from a cached
    wheel (into the temporary directory, once per wheel); ``None`` when there is neither."""
    installed = importlib.util.find_spec("mmcv._ext")
    if installed is not None and installed.origin and installed.origin.endswith(".so"):
        return Path(installed.origin)
    for wheel_dir in _wheel_dirs():
        for wheel in sorted(glob.glob(os.path.join(wheel_dir, "mmcv-2.1.0-cp311-cp311-linux_*.whl"))):
            member = f"mmcv/_ext{EXT_SUFFIX}"
            with zipfile.ZipFile(wheel) as archive:
                if member not in archive.namelist():
                    continue
                stat = os.stat(wheel)
                key = hashlib.sha1(f"{os.path.abspath(wheel)}:{stat.st_size}:{stat.st_mtime}".encode()).hexdigest()
                target = Path(tempfile.gettempdir()) / f"mim_zoo_mmcv_ext_{key[:16]}{EXT_SUFFIX}"
                if not target.is_file():
                    partial = target.with_name(f"{target.name}.{os.getpid()}.part")
                    with archive.open(member) as src, open(partial, "wb") as dst:
                        dst.write(src.read())
                    os.replace(partial, target)
                return target
    return None


def load_compiled_reference() -> ModuleType | None:
    """Compiled mmcv's ``_ext`` as the module ``mim_zoo_mmcv_reference._ext`` (after ``import torch``), or ``None``
    when no compiled extension is available or it does not load against this torch."""
    import torch  # noqa: F401  (the extension links against libtorch)

    path = compiled_extension()
    if path is None:
        return None
    installed = importlib.util.find_spec("mmcv._ext")
    if installed is not None and installed.origin == str(path):
        return importlib.import_module("mmcv._ext")  # one shared object is not initialised twice under two names
    name = "mim_zoo_mmcv_reference._ext"  # the last component must be "_ext": it names the PyInit function
    spec = importlib.util.spec_from_file_location(name, path)
    try:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    except ImportError:  # built for another torch
        return None
    return module


class _ExtFinder:
    """Answers ``import mmcv._ext`` with ``path`` (a ``.py`` shim or a compiled ``.so``)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def find_spec(self, fullname: str, path: object = None, target: object = None):
        if fullname != "mmcv._ext":
            return None
        return importlib.util.spec_from_file_location(fullname, self.path)


def use_backend(backend: str) -> None:
    """Make the next ``import mmcv._ext`` (mmcv.ops imports it) load ``backend``'s file."""
    if backend not in BACKENDS:
        raise SystemExit(f"backend must be one of {BACKENDS}, got {backend!r}")
    if "mmcv._ext" in sys.modules:
        raise RuntimeError("mmcv._ext is already imported; choose the backend before importing mmcv.ops")
    path = SHIM if backend == "torchvision" else compiled_extension()
    if path is None:
        raise SystemExit("no compiled mmcv 2.1.0 extension: install one or point MIM_ZOO_WHEEL_DIR at its wheel")
    sys.meta_path.insert(0, _ExtFinder(path))


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        raise SystemExit(__doc__)
    use_backend(argv[0])
    script = argv[1]
    sys.argv = argv[1:]
    sys.path[0] = os.path.dirname(os.path.abspath(script))  # as `python SCRIPT` would have it
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
