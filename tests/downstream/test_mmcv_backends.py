"""The tiny ADE20K (mmseg UperNet) and COCO (mmdet Mask R-CNN) runs give the same results with the compiler-free
mmcv ops (mim_zoo.engine.mmcv_ops) as with compiled mmcv: the same losses at every iteration, the same trained
weights and metrics, and the same predictions through mmdet's and mmseg's own inference APIs.

Each backend runs in its own process (tests/helpers/mmcv_backend.py decides which file provides ``mmcv._ext``), so
the comparison holds whichever mmcv is installed; CI's other downstream tests run with the compiler-free one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.helpers.downstream_predictions import TASKS, VAL_IMAGES
from tests.helpers.mmcv_backend import BACKENDS, REPO, compiled_extension

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(compiled_extension() is None, reason="no compiled mmcv 2.1.0 to compare with: "
                                 "point MIM_ZOO_WHEEL_DIR at its wheel (CI does)")]


def run(backend: str, *args: str) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "tests/helpers/mmcv_backend.py", backend, *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{backend}: {' '.join(args)}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"


def losses(task_dir: Path) -> list[dict[str, float]]:
    """Every logged training step's loss terms (window 1: each iteration's own values)."""
    (scalars,) = task_dir.glob("*/vis_data/scalars.json")
    steps = [json.loads(line) for line in scalars.read_text().splitlines()]
    return [{k: v for k, v in step.items() if k.startswith("loss")} for step in steps if "loss" in step]


@pytest.fixture(scope="module")
def runs(tiny_checkpoint: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``{backend: work dir}`` of the tiny ADE20K and COCO runs of the tiny MAE checkpoint (seed 0) with the val
    images' predictions (tests/helpers/downstream_predictions.py)."""
    out = {}
    for backend in BACKENDS:
        out[backend] = tmp_path_factory.mktemp(f"tiny_{backend}")
        run(backend, "tests/helpers/downstream_predictions.py", tiny_checkpoint, str(out[backend]))
    return out


@pytest.mark.parametrize("task", TASKS)
def test_training_is_the_same_with_either_backend(runs, task):
    free, compiled = (runs[backend] / task for backend in BACKENDS)
    free_losses, compiled_losses = losses(free), losses(compiled)
    assert len(free_losses) == 8 and free_losses[0].keys() == compiled_losses[0].keys()
    for step, (a, b) in enumerate(zip(free_losses, compiled_losses, strict=True)):
        for term in a:
            assert a[term] == pytest.approx(b[term], rel=1e-5, abs=1e-6), (step, term)
    free_weights = torch.load(free / "iter_8.pth", map_location="cpu")["state_dict"]
    compiled_weights = torch.load(compiled / "iter_8.pth", map_location="cpu")["state_dict"]
    assert free_weights.keys() == compiled_weights.keys()
    for name, weight in free_weights.items():
        torch.testing.assert_close(weight, compiled_weights[name], rtol=1e-5, atol=1e-6, msg=name)
    free_metrics = json.loads((free / "metrics.json").read_text())["metrics"]
    assert free_metrics == pytest.approx(json.loads((compiled / "metrics.json").read_text())["metrics"], abs=1e-6)


@pytest.mark.parametrize("task", TASKS)
def test_predictions_through_openmmlab_apis_are_the_same_with_either_backend(runs, task):
    free, compiled = (torch.load(runs[b] / task / "predictions.pth", weights_only=False) for b in BACKENDS)
    assert len(free) == len(compiled) == len(list((REPO / VAL_IMAGES[task]).glob("*.jpg"))) > 0
    for a, b in zip(free, compiled, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            if key == "scores":  # detections: the same boxes kept, in the same order
                assert len(a[key]) > 0
            torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5, msg=key)
