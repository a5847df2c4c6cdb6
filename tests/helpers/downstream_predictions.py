"""The tiny ADE20K and COCO runs of one pretraining checkpoint, then the trained models' predictions of the val
images through mmseg's and mmdet's own inference APIs (``init_model`` + ``inference_model``, ``init_detector`` +
``inference_detector``), in one process.

    python tests/helpers/downstream_predictions.py CHECKPOINT WORK_DIR

Trains with ``tools/benchmark.py CHECKPOINT --tiny --tasks ade20k,coco --work-dir WORK_DIR`` (seed 0) and writes
``WORK_DIR/<task>/predictions.pth``: per val image ``{name: tensor}`` (segmentation: logits; detection: boxes,
scores, labels, masks).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
TASKS = ("ade20k", "coco")
VAL_IMAGES = {"ade20k": "data/generated/toy_ade20k/images/validation", "coco": "data/generated/toy_coco/val2017"}


def predict(task: str, config: str, checkpoint: str, images: list[str]) -> list[dict[str, torch.Tensor]]:
    if task == "coco":
        from mmdet.apis import inference_detector, init_detector

        model = init_detector(config, checkpoint, device="cpu")
        return [{key: getattr(sample.pred_instances, key) for key in ("bboxes", "scores", "labels", "masks")}
                for sample in inference_detector(model, images)]
    from mmseg.apis import inference_model, init_model

    model = init_model(config, checkpoint, device="cpu")
    return [{"logits": sample.seg_logits.data} for sample in inference_model(model, images)]


def main(checkpoint: str, work_dir: str) -> None:
    spec = importlib.util.spec_from_file_location("benchmark_tool", REPO / "tools" / "benchmark.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    tool.main([checkpoint, "--tiny", "--tasks", ",".join(TASKS), "--work-dir", work_dir,
               "--cfg-options", "randomness.seed=0"])
    for task in TASKS:
        task_dir = Path(work_dir) / task
        (config,) = task_dir.glob("*_tiny_cpu.py")
        images = sorted(str(p) for p in (REPO / VAL_IMAGES[task]).glob("*.jpg"))
        torch.save(predict(task, str(config), str(task_dir / "iter_8.pth"), images), task_dir / "predictions.pth")


if __name__ == "__main__":
    main(*sys.argv[1:])
