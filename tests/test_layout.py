"""The package's three tiers: imports only point down (core <- engine <- synthetic), read from the source (AST), so
that a lazy import inside a function counts as much as one at the top of a module.

    mim_zoo/core/       the model core: imports nothing of mim_zoo.engine or mim_zoo.synthetic
    mim_zoo/engine/     hooks, transforms, config preparation, ...: imports mim_zoo.core, never mim_zoo.synthetic
    mim_zoo/synthetic/  embedded data and random teachers: may import both
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mim_zoo"
FORBIDDEN = {"core": ("mim_zoo.engine", "mim_zoo.synthetic"), "engine": ("mim_zoo.synthetic",)}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """``(line, absolute module name)`` of every import in ``path``, relative ones resolved."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.append((node.lineno, name))
    return found


def test_relative_imports_resolve_to_their_absolute_names():
    """The resolution the tier check relies on, on a known module."""
    names = {name for _, name in imported_modules(PACKAGE / "core" / "encoders" / "mixmim.py")}
    assert {"mim_zoo.core.registry", "mim_zoo.core.tokens", "mim_zoo.core.encoders.window_attention"} <= names


@pytest.mark.parametrize("tier", sorted(FORBIDDEN))
def test_imports_only_point_down_the_tiers(tier: str):
    files = sorted((PACKAGE / tier).rglob("*.py"))
    assert files, tier
    upward = [f"{path.relative_to(PACKAGE.parent)}:{line} imports {name}"
              for path in files for line, name in imported_modules(path)
              if any(name == bad or name.startswith(bad + ".") for bad in FORBIDDEN[tier])]
    assert not upward, "\n".join(upward)
