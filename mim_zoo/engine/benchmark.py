"""Run the downstream benchmarks of one pretraining checkpoint and collect one results row (``tools/benchmark.py``).

A *task* is one benchmark: ``linear`` and ``finetune`` (ImageNet-1k top-1, mmpretrain), ``ade20k`` (mIoU, mmseg),
``coco`` (box and mask AP, mmdet), as :data:`mim_zoo.engine.catalogue.TASKS` defines them. :func:`recipe_config`
asks the catalogue for the config of a task for the checkpoint's method (the paper's recipe, or its encoder
family's reference recipe with ``protocol="common"``: MAE's for every ViT; the CPU twins with ``tiny=True``);
:func:`run_task` trains it with mmengine's Runner and records the metrics of the final evaluation
(:class:`RecordMetricsHook`); :func:`update_results` merges them into ``results.json`` and writes ``results.md``, one
row per checkpoint, named by :func:`method_label` (the algorithm, plus what a combo swaps in).
"""

from __future__ import annotations

import json
import os
import os.path as osp
from pathlib import Path
from typing import Any

from mmengine.config import Config
from mmengine.dist import is_main_process

from ..core.algorithms.base import BaseMIM
from ..core.checkpoints.read import PretrainedEncoder
from ..core.registry import MODELS
from .catalogue import TASKS, load_catalogue
from .env import require_mmcv_ops

# The toolboxes that import mmcv.ops; mmdet's Mask R-CNN also calls its nms and roi_align.
MMCV_OPS_USERS = {"mmseg": "ADE20K segmentation with mmseg", "mmdet": "COCO detection with mmdet"}

COLUMNS = (("method", "method"), ("epochs", "epochs"), ("linear_top1", "linear top-1"),
           ("finetune_top1", "fine-tune top-1"), ("ade20k_miou", "ADE20K mIoU"), ("coco_box_ap", "COCO box AP"),
           ("coco_mask_ap", "COCO mask AP"))


def recipe_config(task: str, pretrained: PretrainedEncoder, protocol: str = "paper", tiny: bool = False,
                  root: str | os.PathLike | None = None) -> Path:
    """The benchmark config of ``task`` for this encoder: :meth:`Catalogue.recipe` for the checkpoint's method and
    its encoder's canonical layout, in the catalogue of ``root`` (default: :func:`catalogue.default_root`).

    ``protocol="paper"``: the method's published recipe where it has one, else its family's reference;
    ``"common"``: the family's reference recipe for every method (MAE's for all ViTs), for like-for-like rows.
    ``tiny=True``: the CPU twin of the family's reference recipe (the protocol does not apply).
    """
    catalogue = load_catalogue(root)
    return catalogue.path(catalogue.recipe(task, pretrained.method, pretrained.canonical, protocol, tiny).config)


def method_label(pretrained: PretrainedEncoder) -> str:
    """The "method" column: the algorithm, plus every part its config swaps for another type ("MAE+BlockMasking").

    The reference is the algorithm's ``default_parts`` (what its constructor builds when a part is not given); a
    slot saved without a ``type`` uses the default. Combos (``configs/combos/``) and variants such as MR-MAE's focused
    mimicking so get rows of their own. An algorithm not registered here (a project's) is labelled by its name alone.
    """
    algorithm = MODELS.get(pretrained.method)
    reference = algorithm.default_types() if isinstance(algorithm, type) and issubclass(algorithm, BaseMIM) else {}
    swapped = [pretrained.components[slot] for slot, default in reference.items()
               if pretrained.components.get(slot, default) != default]
    return "+".join([pretrained.method, *swapped])


def task_config(config: str | Path, checkpoint: str, work_dir: str, launcher: str = "none", amp: bool = False,
                cfg_options: dict | None = None) -> Config:
    """Load a benchmark config and point it at ``checkpoint``, ``work_dir`` and the metrics recorder; check first
    that the mmcv ops an mmseg/mmdet config needs are there (and, for mmdet, can run on CUDA where CUDA is)."""
    from .config import prepare_config

    cfg = Config.fromfile(str(config))
    cfg.merge_from_dict(cfg_options or {})
    if cfg.get("default_scope") in MMCV_OPS_USERS:
        require_mmcv_ops(MMCV_OPS_USERS[cfg.default_scope], on_cuda_tensors=cfg.default_scope == "mmdet")
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
    for metric in TASKS[task].metrics:
        if metric.key not in record["metrics"]:
            raise KeyError(f"{task}: the evaluation reported {sorted(record['metrics'])}, not {metric.key!r}")
        columns[metric.column] = round(record["metrics"][metric.key] * metric.scale, 2)
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
