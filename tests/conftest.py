"""Shared fixtures: tiny encoders, configs and images. Tests run from the repository root (tools/test.sh)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

import mim_zoo  # noqa: F401  (registers every plugin)
from mim_zoo.core.algorithms.base import BaseMIM
from mim_zoo.engine.catalogue import load_catalogue
from mim_zoo.registry import MODELS

REPO = Path(__file__).resolve().parents[1]
os.chdir(REPO)  # configs name data paths relative to the repository root
CATALOGUE = load_catalogue(REPO)  # which algorithms, combos and configs there are (tests/test_catalogue.py)

TINY_VIT = dict(type="ViTEncoder", arch="vit_tiny_patch16_224", img_size=32, patch_size=4, embed_dim=64, depth=2,
                num_heads=4)


# Tests write only to temporary folders (tmp_path): a run left in the checkout (mmengine's work_dirs/<timestamp>/ of a
# Runner or strategy built without a work dir) fails the session. data/generated/ is the synthetic-data cache the tiny
# configs write by design (their data roots are relative to the checkout); caches of Python and pytest are ignored.
CACHES = {".git", ".venv", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"}
ALLOWED = ("data/generated/",)


def checkout_files() -> set[str]:
    """Every file of the checkout, relative to it, outside :data:`CACHES` and :data:`ALLOWED`."""
    files = set()
    for root, dirs, names in os.walk(REPO):
        rel = os.path.relpath(root, REPO)
        prefix = "" if rel == "." else rel + "/"
        dirs[:] = [d for d in dirs if d not in CACHES and not d.endswith(".egg-info")
                   and not (prefix + d + "/").startswith(ALLOWED)]
        files.update(prefix + name for name in names)
    return files


@pytest.fixture(scope="session", autouse=True)
def checkout_gains_no_files() -> None:
    before = checkout_files()
    yield
    gained = sorted(checkout_files() - before)
    assert not gained, (f"the tests wrote {len(gained)} file(s) into the checkout, e.g. {gained[:5]}: write to "
                        "tmp_path (give Runners and strategies a work_dir there)")


def registered_algorithms() -> list[str]:
    """The registry's algorithms: every BaseMIM subclass in MODELS (a project's too, once a config imported it).
    Tests that need configs ask the catalogue, whose algorithms are the package's of these (tests/test_catalogue.py)."""
    MODELS.import_from_location()
    return sorted(n for n, c in MODELS.module_dict.items() if isinstance(c, type) and issubclass(c, BaseMIM)
                  and c is not BaseMIM)


@pytest.fixture
def tiny_vit_cfg() -> dict:
    return dict(TINY_VIT)


@pytest.fixture
def images() -> torch.Tensor:
    """Four normalised 32x32 RGB images (seeded)."""
    return torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
