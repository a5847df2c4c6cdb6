"""Run the downstream benchmarks of one pretraining checkpoint and collect one results row (``tools/benchmark.py``).

A *task* is one benchmark: ``linear`` and ``finetune`` (ImageNet-1k top-1, mmpretrain), ``ade20k`` (mIoU, mmseg),
``coco`` (box and mask AP, mmdet). :func:`recipe_config` picks the config of a task for the checkpoint's method
(the paper's recipe, or MAE's for every ViT with ``protocol="common"``; the CPU twins with ``tiny=True``);
:func:`run_task` trains it with mmengine's Runner and records the metrics of the final evaluation
(:class:`RecordMetricsHook`); :func:`update_results` merges them into ``results.json`` and writes ``results.md``.
"""

from __future__ import annotations

import json
import os
import os.path as osp
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmengine.config import Config
from mmengine.dist import is_main_process
from mmengine.hooks import Hook

from ..registry import HOOKS
from .checkpoint import PretrainedEncoder

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG_ROOT = REPO_ROOT / "configs" / "benchmarks"


@dataclass(frozen=True)
class Task:
    """One downstream benchmark: its config folder and the metrics reported (row column -> evaluator key, scale)."""

    folder: str
    metrics: dict[str, tuple[str, float]]


TASKS = {
    "linear": Task("imagenet", {"linear_top1": ("accuracy/top1", 1.0)}),
    "finetune": Task("imagenet", {"finetune_top1": ("accuracy/top1", 1.0)}),
    "ade20k": Task("ade20k", {"ade20k_miou": ("mIoU", 1.0)}),
    "coco": Task("coco", {"coco_box_ap": ("coco/bbox_mAP", 100.0), "coco_mask_ap": ("coco/segm_mAP", 100.0)}),
}
COLUMNS = (("method", "method"), ("epochs", "epochs"), ("linear_top1", "linear top-1"),
           ("finetune_top1", "fine-tune top-1"), ("ade20k_miou", "ADE20K mIoU"), ("coco_box_ap", "COCO box AP"),
           ("coco_mask_ap", "COCO mask AP"))

# Recipes by encoder family (canonical layout) and method. "default" is the family's reference recipe (MAE's for
# ViTs, MixMIM's for its Swin), used by methods without their own entry (MR-MAE: unpublished) and by the "common"
# protocol; a method's entry lists only the tasks where its paper differs.
_VIT = {
    "default": {
        "linear": "linear_vit-b16_mae-pre_8xb2048-lars-coslr-90e_in1k.py",
        "finetune": "finetune_vit-b16_mae-pre_8xb128-coslr-100e_in1k.py",
        "ade20k": "seg_upernet_vit-b16_mae-pre_8xb2-160k_ade20k-512x512.py",
        "coco": "det_mask-rcnn_vitdet-b16_mae-pre_16xb4-lsj-100e_coco.py",
    },
    "BootMAE": {
        "linear": "linear_vit-b16_bootmae-pre_8xb1024x2-lars-coslr-90e_in1k.py",
        "finetune": "finetune_vit-b16_bootmae-pre_8xb256-coslr-100e_in1k.py",
        "ade20k": "seg_upernet_vit-b16_bootmae-pre_8xb2-160k_ade20k-512x512.py",
    },
}
_SWIN = {
    "default": {
        "finetune": "finetune_mixmim-b_mixmae-pre_8xb128-coslr-100e_in1k.py",
        "ade20k": "seg_upernet_mixmim-b_mixmae-pre_8xb2-160k_ade20k-512x512.py",
        "coco": "det_mask-rcnn_mixmim-b-fpn_mixmae-pre_8xb2-ms-crop-3x_coco.py",
    },
}
RECIPES = {"timm": _VIT, "mmpretrain": _SWIN}
TINY = {
    "linear": "linear_vit_tiny_cpu.py",
    "finetune": "finetune_vit_tiny_cpu.py",
    "ade20k": "seg_upernet_vit_tiny_cpu.py",
    "coco": "det_mask-rcnn_vitdet_tiny_cpu.py",
}


def recipe_config(task: str, pretrained: PretrainedEncoder, protocol: str = "paper", tiny: bool = False) -> Path:
    """The benchmark config of ``task`` for this encoder (module docstring)."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose from {', '.join(TASKS)}")
    if protocol not in ("paper", "common"):
        raise ValueError(f"protocol must be 'paper' (each method's recipe) or 'common' (MAE's), got {protocol!r}")
    folder = CONFIG_ROOT / TASKS[task].folder
    if tiny:
        if pretrained.canonical != "timm":
            raise ValueError("the CPU twins are written for the tiny ViT of configs/mae/tiny_cpu.py")
        return folder / TINY[task]
    family = RECIPES.get(pretrained.canonical)
    if family is None:
        raise ValueError(f"no benchmark recipes for encoders in the {pretrained.canonical!r} layout")
    own = family.get(pretrained.method, {}) if protocol == "paper" else {}
    name = own.get(task) or family["default"].get(task)
    if name is None:
        raise ValueError(f"no {task} recipe for {pretrained.method}'s encoder (the paper reports none)")
    return folder / name


@HOOKS.register_module()
class RecordMetricsHook(Hook):
    """Write the metrics of every evaluation to ``out_file`` (JSON, main process); the last one stays."""

    priority = "LOWEST"

    def __init__(self, out_file: str) -> None:
        self.out_file = out_file

    def _write(self, runner: Any, metrics: dict | None, phase: str) -> None:
        if not metrics or not is_main_process():
            return
        record = dict(phase=phase, epoch=runner.epoch, iter=runner.iter,
                      metrics={k: float(v) for k, v in metrics.items() if _is_number(v)})
        os.makedirs(osp.dirname(osp.abspath(self.out_file)), exist_ok=True)
        with open(self.out_file, "w") as f:
            json.dump(record, f, indent=2)

    def after_val_epoch(self, runner: Any, metrics: dict | None = None) -> None:
        self._write(runner, metrics, "val")

    def after_test_epoch(self, runner: Any, metrics: dict | None = None) -> None:
        self._write(runner, metrics, "test")


def _is_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def task_config(config: str | Path, checkpoint: str, work_dir: str, launcher: str = "none", amp: bool = False,
                cfg_options: dict | None = None) -> Config:
    """Load a benchmark config and point it at ``checkpoint``, ``work_dir`` and the metrics recorder."""
    from ..runtime import prepare_config
    from .toy_data import make_toy_dataset

    cfg = Config.fromfile(str(config))
    cfg.merge_from_dict(cfg_options or {})
    cfg.model.backbone.mim_checkpoint = osp.abspath(checkpoint)
    cfg.work_dir = work_dir
    cfg.launcher = launcher
    cfg.custom_hooks = list(cfg.get("custom_hooks", [])) + [
        dict(type="mim_zoo.RecordMetricsHook", out_file=osp.join(work_dir, "metrics.json"))]
    if cfg.get("toy_dataset"):
        make_toy_dataset(**cfg.toy_dataset)
    return prepare_config(cfg, amp=amp)


def run_task(config: str | Path, checkpoint: str, work_dir: str, launcher: str = "none", amp: bool = False,
             cfg_options: dict | None = None) -> dict | None:
    """Train ``config`` from ``checkpoint`` with mmengine's Runner; return the final evaluation's metrics record.

    Every benchmark config evaluates at the end of training; one without a validation loop is tested after it.
    In a distributed run the record is returned by the main process only (``None`` elsewhere).
    """
    from mmengine.runner import Runner

    cfg = task_config(config, checkpoint, work_dir, launcher, amp, cfg_options)
    metrics_file = osp.join(work_dir, "metrics.json")
    if is_main_process() and osp.exists(metrics_file):
        os.remove(metrics_file)
    runner = Runner.from_cfg(cfg)
    runner.train()
    if cfg.get("val_dataloader") is None:
        runner.test()
    if not is_main_process():
        return None
    with open(metrics_file) as f:
        return json.load(f)


def task_columns(task: str, record: dict) -> dict[str, float]:
    """The row columns of ``task`` from a metrics record (a missing metric is an error naming what is there)."""
    columns = {}
    for column, (key, scale) in TASKS[task].metrics.items():
        if key not in record["metrics"]:
            raise KeyError(f"{task}: the evaluation reported {sorted(record['metrics'])}, not {key!r}")
        columns[column] = round(record["metrics"][key] * scale, 2)
    return columns


def update_results(results_file: str, pretrained: PretrainedEncoder, task: str, config: str | Path,
                   record: dict) -> dict:
    """Merge one task's outcome into ``results_file`` (JSON) and rewrite the markdown table next to it."""
    results: dict = {}
    if osp.exists(results_file):
        with open(results_file) as f:
            results = json.load(f)
    if results.get("checkpoint") not in (None, osp.abspath(pretrained.source)):
        raise ValueError(f"{results_file} holds results of {results['checkpoint']}; choose another --work-dir")
    results.update(checkpoint=osp.abspath(pretrained.source), method=pretrained.method, epochs=pretrained.epoch,
                   encoder=pretrained.encoder_cfg)
    results.setdefault("tasks", {})[task] = dict(config=str(config), **task_columns(task, record), evaluation=record)
    with open(results_file, "w") as f:
        json.dump(results, f, indent=2)
    with open(osp.splitext(results_file)[0] + ".md", "w") as f:
        f.write(markdown_table([results]) + "\n")
    return results


def results_row(results: dict) -> dict[str, Any]:
    """``{column: value}`` of one results file (``None`` where a task was not run)."""
    row: dict[str, Any] = {"method": results.get("method"), "epochs": results.get("epochs")}
    for task in results.get("tasks", {}).values():
        row.update({k: v for k, v in task.items() if k in dict(COLUMNS)})
    return row


def markdown_table(all_results: list[dict]) -> str:
    """A markdown table with one row per results file."""
    lines = ["| " + " | ".join(title for _, title in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for results in all_results:
        row = results_row(results)
        lines.append("| " + " | ".join("-" if row.get(k) is None else str(row[k]) for k, _ in COLUMNS) + " |")
    return "\n".join(lines)
