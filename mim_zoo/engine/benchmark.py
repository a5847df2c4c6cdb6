"""Run the downstream benchmarks of one pretraining checkpoint and collect one results row (``tools/benchmark.py``).

A *task* is one benchmark: ``linear`` and ``finetune`` (ImageNet-1k top-1, mmpretrain), ``ade20k`` (mIoU, mmseg),
``coco`` (box and mask AP, mmdet). :func:`recipe_config` picks the config of a task for the checkpoint's method
(the paper's recipe, or its encoder family's reference recipe with ``protocol="common"``: MAE's for every ViT; the
CPU twins with ``tiny=True``); :func:`run_task` trains it with mmengine's Runner and records the metrics of the final
evaluation (:class:`RecordMetricsHook`); :func:`update_results` merges them into ``results.json`` and writes
``results.md``, one row per checkpoint, named by :func:`method_label` (the algorithm, plus what a combo swaps in).
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

from ..core.checkpoints.read import PretrainedEncoder

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

# Recipes by encoder family (canonical layout) and method. "default" is the family's reference recipe, used by
# methods without their own entry and by the "common" protocol; a method's entry lists only the tasks where its
# paper differs. ViTs: MAE's recipes (MR-MAE published none). MixMIM's Swin (MixMAE only): mmpretrain's fine-tune,
# and documented defaults where MixMIM published nothing (linear: MAE's protocol on the pooled features; ADE20K and
# COCO: mmseg's / mmdet's Swin recipes).
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
        "linear": "linear_mixmim-b_mixmae-pre_8xb2048-lars-coslr-90e_in1k.py",
        "finetune": "finetune_mixmim-b_mixmae-pre_8xb128-coslr-100e_in1k.py",
        "ade20k": "seg_upernet_mixmim-b_mixmae-pre_8xb2-160k_ade20k-512x512.py",
        "coco": "det_mask-rcnn_mixmim-b-fpn_mixmae-pre_8xb2-ms-crop-3x_coco.py",
    },
}
RECIPES = {"timm": _VIT, "mmpretrain": _SWIN}
# The CPU twins of each family's reference recipes, for the tiny encoders of configs/<algo>/tiny_cpu.py.
TINY = {
    "timm": {
        "linear": "linear_vit_tiny_cpu.py",
        "finetune": "finetune_vit_tiny_cpu.py",
        "ade20k": "seg_upernet_vit_tiny_cpu.py",
        "coco": "det_mask-rcnn_vitdet_tiny_cpu.py",
    },
    "mmpretrain": {
        "linear": "linear_mixmim_tiny_cpu.py",
        "finetune": "finetune_mixmim_tiny_cpu.py",
        "ade20k": "seg_upernet_mixmim_tiny_cpu.py",
        "coco": "det_mask-rcnn_mixmim-fpn_tiny_cpu.py",
    },
}
FAMILY_NAMES = {"timm": "ViT (timm layout)", "mmpretrain": "MixMIM Swin (mmpretrain layout)"}


def recipe_config(task: str, pretrained: PretrainedEncoder, protocol: str = "paper", tiny: bool = False) -> Path:
    """The benchmark config of ``task`` for this encoder (module docstring).

    ``protocol="paper"``: the method's published recipe where it has one, else its family's reference;
    ``"common"``: the family's reference recipe for every method (MAE's for all ViTs), for like-for-like rows.
    ``tiny=True``: the CPU twin of the family's reference recipe (the protocol does not apply).
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose from {', '.join(TASKS)}")
    if protocol not in ("paper", "common"):
        raise ValueError(f"protocol must be 'paper' (each method's recipe) or 'common' (its encoder family's "
                         f"reference recipe), got {protocol!r}")
    family = (TINY if tiny else RECIPES).get(pretrained.canonical)
    if family is None:
        kind = "CPU twins" if tiny else "benchmark recipes"
        raise ValueError(f"no {kind} for encoders in the {pretrained.canonical!r} layout (there are for "
                         f"{', '.join(FAMILY_NAMES.values())})")
    folder = CONFIG_ROOT / TASKS[task].folder
    if tiny:
        return folder / family[task]
    own = family.get(pretrained.method, {}) if protocol == "paper" else {}
    return folder / (own.get(task) or family["default"][task])


# The parts each algorithm is defined with (its constructor's defaults). A checkpoint whose saved config puts another
# type in one of these slots (a combo of configs/combos/, or a variant such as MR-MAE's focused mimicking) is
# labelled with what it swapped in, e.g. "MAE+BlockMasking", so that its results row is told apart from the base's.
REFERENCE_COMPONENTS = {
    "MAE": {"masking": "RandomMasking", "target": "PixelTarget", "decoder": "MAEDecoder"},
    "MRMAE": {"masking": "RandomMasking", "target": "PixelTarget", "decoder": "MAEDecoder"},
    "BootMAE": {"masking": "BlockMasking", "pixel_target": "PixelTarget", "feature_target": "MomentumTarget",
                "pixel_decoder": "BootMAEPixelDecoder", "feature_decoder": "BootMAEFeatureDecoder"},
    "MixMAE": {"masking": "MixingMask", "target": "PixelTarget", "decoder": "MixMAEDecoder"},
}


def method_label(pretrained: PretrainedEncoder) -> str:
    """The "method" column: the algorithm, plus every part its config swaps for another type ("MAE+BlockMasking").

    A slot saved without a ``type`` uses the algorithm's default. Algorithms outside
    :data:`REFERENCE_COMPONENTS` (a project's) are labelled by their name alone.
    """
    reference = REFERENCE_COMPONENTS.get(pretrained.method, {})
    swapped = [pretrained.components[slot] for slot, default in reference.items()
               if pretrained.components.get(slot, default) != default]
    return "+".join([pretrained.method, *swapped])


def task_config(config: str | Path, checkpoint: str, work_dir: str, launcher: str = "none", amp: bool = False,
                cfg_options: dict | None = None) -> Config:
    """Load a benchmark config and point it at ``checkpoint``, ``work_dir`` and the metrics recorder."""
    from .config import prepare_config

    cfg = Config.fromfile(str(config))
    cfg.merge_from_dict(cfg_options or {})
    cfg.model.backbone.mim_checkpoint = osp.abspath(checkpoint)
    cfg.work_dir = work_dir
    cfg.launcher = launcher
    cfg.custom_hooks = list(cfg.get("custom_hooks", [])) + [
        dict(type="mim_zoo.RecordMetricsHook", out_file=osp.join(work_dir, "metrics.json"))]
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
                   record: dict, name: str | None = None) -> dict:
    """Merge one task's outcome into ``results_file`` (JSON) and rewrite the markdown table next to it.

    ``name`` is the row's "method" column (default :func:`method_label`).
    """
    results: dict = {}
    if osp.exists(results_file):
        with open(results_file) as f:
            results = json.load(f)
    if results.get("checkpoint") not in (None, osp.abspath(pretrained.source)):
        raise ValueError(f"{results_file} holds results of {results['checkpoint']}; choose another --work-dir")
    results.update(checkpoint=osp.abspath(pretrained.source), method=name or method_label(pretrained),
                   algorithm=pretrained.method, components=pretrained.components, epochs=pretrained.epoch,
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
