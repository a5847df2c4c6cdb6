"""tools/benchmark.py and mim_zoo.downstream.benchmark: recipes per method, the results row, and the CPU twins of
all four benchmarks trained from one pretraining checkpoint through the real mmpretrain/mmseg/mmdet stacks."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

import mim_zoo  # noqa: F401
from mim_zoo.downstream.benchmark import (markdown_table, recipe_config, results_row, task_columns,
                                          update_results)

from .conftest import run_tool


@pytest.mark.slow
def test_tiny_benchmark_of_all_tasks_writes_the_results_row(tiny_checkpoint, tmp_path):
    proc = run_tool("tools/benchmark.py", tiny_checkpoint, "--tiny", "--tasks", "linear,finetune,ade20k,coco",
                    "--work-dir", str(tmp_path), timeout=1200)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["checkpoint"] == tiny_checkpoint and (results["method"], results["epochs"]) == ("MAE", 2)
    row = results_row(results)
    for column in ("linear_top1", "finetune_top1", "ade20k_miou", "coco_box_ap", "coco_mask_ap"):
        assert isinstance(row[column], float) and 0.0 <= row[column] <= 100.0, column
    for task in ("linear", "finetune", "ade20k", "coco"):
        evaluation = results["tasks"][task]["evaluation"]
        assert evaluation["phase"] == "val" and (tmp_path / task / "metrics.json").is_file()
    assert results["tasks"]["coco"]["evaluation"]["metrics"]["coco/segm_mAP"] * 100 == pytest.approx(
        row["coco_mask_ap"], abs=0.01)
    table = (tmp_path / "results.md").read_text()
    assert table.splitlines()[0].startswith("| method | epochs | linear top-1 | fine-tune top-1 | ADE20K mIoU")
    assert "| MAE | 2 | " in table and table.strip() in proc.stdout


def test_recipes_follow_the_method(tiny_pretrained):
    def pick(method, task, canonical="timm", **kwargs):
        encoder = replace(tiny_pretrained, method=method, canonical=canonical)
        return recipe_config(task, encoder, **kwargs).name

    assert pick("MAE", "finetune") == "finetune_vit-b16_mae-pre_8xb128-coslr-100e_in1k.py"
    assert pick("BootMAE", "finetune") == "finetune_vit-b16_bootmae-pre_8xb256-coslr-100e_in1k.py"
    assert pick("BootMAE", "linear") == "linear_vit-b16_bootmae-pre_8xb1024x2-lars-coslr-90e_in1k.py"
    assert pick("BootMAE", "coco") == "det_mask-rcnn_vitdet-b16_mae-pre_16xb4-lsj-100e_coco.py"  # none of its own
    assert pick("BootMAE", "ade20k", protocol="common") == "seg_upernet_vit-b16_mae-pre_8xb2-160k_ade20k-512x512.py"
    assert pick("MRMAE", "finetune") == "finetune_vit-b16_mae-pre_8xb128-coslr-100e_in1k.py"  # recipe unpublished
    assert pick("MixMAE", "ade20k", "mmpretrain") == "seg_upernet_mixmim-b_mixmae-pre_8xb2-160k_ade20k-512x512.py"
    assert pick("MAE", "coco", tiny=True) == "det_mask-rcnn_vitdet_tiny_cpu.py"
    with pytest.raises(ValueError, match="no linear recipe"):
        pick("MixMAE", "linear", "mmpretrain")
    with pytest.raises(ValueError, match="unknown task"):
        pick("MAE", "kitti")


def test_distributed_runs_are_launched_through_torchrun(tiny_checkpoint, tmp_path):
    proc = run_tool("tools/benchmark.py", tiny_checkpoint, "--tasks", "ade20k,coco", "--gpus", "8", "--dry-run",
                    "--work-dir", str(tmp_path))
    commands = [line for line in proc.stdout.splitlines() if "torch.distributed.run" in line]
    assert len(commands) == 2 and all("--nproc_per_node=8" in c and "--launcher pytorch" in c for c in commands)
    assert "--tasks ade20k" in commands[0] and "--tasks coco" in commands[1]
    assert not (tmp_path / "results.json").exists()


def test_results_merge_and_refuse_another_checkpoint(tiny_pretrained, tmp_path):
    record = dict(phase="val", epoch=0, iter=8, metrics={"mIoU": 41.234, "aAcc": 80.0})
    results_file = str(tmp_path / "results.json")
    update_results(results_file, tiny_pretrained, "ade20k", "cfg.py", record)
    coco = dict(phase="val", epoch=0, iter=8, metrics={"coco/bbox_mAP": 0.5123, "coco/segm_mAP": 0.4456})
    results = update_results(results_file, tiny_pretrained, "coco", "cfg.py", coco)
    assert results_row(results) == dict(method="MAE", epochs=2, ade20k_miou=41.23, coco_box_ap=51.23,
                                        coco_mask_ap=44.56)
    assert markdown_table([results]).splitlines()[2] == "| MAE | 2 | - | - | 41.23 | 51.23 | 44.56 |"
    with pytest.raises(ValueError, match="holds results of"):
        update_results(results_file, replace(tiny_pretrained, source="/elsewhere.pth"), "ade20k", "c.py", record)
    with pytest.raises(KeyError, match="not 'accuracy/top1'"):
        task_columns("linear", record)
