"""tools/benchmark.py and mim_zoo.engine.benchmark: recipes per method and encoder family, the method label of a
row, the results row, and the CPU twins of all four benchmarks trained from one pretraining checkpoint of each
encoder family (tiny ViT, tiny MixMIM Swin) through the real mmpretrain/mmseg/mmdet stacks."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from mmengine.config import Config

import mim_zoo  # noqa: F401
from mim_zoo.core.checkpoints.read import (
    PretrainedEncoder,
    load_pretrained_encoder,
    model_components,
    parse_config_text,
)
from mim_zoo.engine.benchmark import (
    TASKS,
    markdown_table,
    method_label,
    recipe_config,
    results_row,
    task_columns,
    update_results,
)
from mim_zoo.registry import MODELS

from ..conftest import CATALOGUE
from .conftest import load_tool, run_tool

COLUMNS = ("linear_top1", "finetune_top1", "ade20k_miou", "coco_box_ap", "coco_mask_ap", "depth_probe_top1")


@pytest.fixture(params=["mae", "mixmae"])
def family_checkpoint(request, tiny_checkpoint, pretraining_checkpoint) -> tuple[str, str, int]:
    """``(checkpoint, method, epochs)``: the tiny ViT (MAE, 2 epochs) and the tiny MixMIM Swin (MixMAE, 1 iteration)."""
    if request.param == "mae":
        return tiny_checkpoint, "MAE", 2
    return pretraining_checkpoint("MixMAE"), "MixMAE", 1


@pytest.mark.slow
def test_tiny_benchmark_of_all_tasks_writes_the_results_row(family_checkpoint, tmp_path, capsys):
    checkpoint, method, epochs = family_checkpoint
    # tools/benchmark.py's main in this process: the same code path as the command line without a second start-up
    load_tool("benchmark").main([checkpoint, "--tiny", "--tasks", ",".join(TASKS), "--work-dir", str(tmp_path)])
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["checkpoint"] == checkpoint and (results["method"], results["epochs"]) == (method, epochs)
    row = results_row(results)
    for column in COLUMNS:
        assert isinstance(row[column], float) and 0.0 <= row[column] <= 100.0, column
    pretrained = load_pretrained_encoder(checkpoint)
    for task in TASKS:  # the twins of the checkpoint's encoder family, each evaluated once at the end
        entry = results["tasks"][task]
        assert entry["config"] == CATALOGUE.recipe(task, pretrained.method, pretrained.canonical, tiny=True).config
        assert entry["evaluation"]["phase"] == "val" and entry["seconds"] > 0
        assert (tmp_path / task / "output.log").stat().st_size > 0, task  # what the task printed went to its log
    assert (tmp_path / "coco" / "metrics.json").is_file() and (tmp_path / "depth_probe" / "depth_probe.png").is_file()
    assert results["tasks"]["coco"]["evaluation"]["metrics"]["coco/segm_mAP"] * 100 == pytest.approx(
        row["coco_mask_ap"], abs=0.01)
    assert results["tiny"] and results["evidence"]["pretraining"]["sessions"][0]["images"] > 0  # from the checkpoint
    assert results["evidence"]["benchmark"]["device"]["count"] == 1 and results["evidence"]["paper"] == {}
    table = (tmp_path / "results.md").read_text()
    assert table.splitlines()[0].startswith("| method | epochs | linear top-1 | fine-tune top-1 | ADE20K mIoU")
    assert f"| {method} (tiny smoke test) | {epochs} | " in table
    out = capsys.readouterr().out
    progress = [line for line in out.splitlines() if line.startswith("[")]
    assert [line.split("]")[0] for line in progress] == [f"[{i}/{len(TASKS)}" for i in range(1, len(TASKS) + 1)]
    assert all("(tiny smoke test): " in line and "(log: " in line for line in progress)
    assert table.strip() in out and len(out.splitlines()) <= len(TASKS) + 6  # one line per task, not thousands


def test_recipes_follow_the_method_and_the_encoder_family(tiny_pretrained):
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
    for protocol in ("paper", "common"):  # no published probe: the documented default under either protocol
        assert pick("MixMAE", "linear", "mmpretrain", protocol=protocol) == (
            "linear_mixmim-b_mixmae-pre_8xb2048-lars-coslr-90e_in1k.py")
    assert pick("BootMAE", "coco", tiny=True) == "det_mask-rcnn_vitdet_tiny_cpu.py"
    assert pick("MixMAE", "coco", "mmpretrain", tiny=True) == "det_mask-rcnn_mixmim-fpn_tiny_cpu.py"
    assert pick("MixMAE", "linear", "mmpretrain", tiny=True) == "linear_mixmim_tiny_cpu.py"
    for canonical in ("timm", "mmpretrain"):  # every method gets every column, at full size and as a CPU twin
        for task in TASKS:
            for tiny in (False, True):
                encoder = replace(tiny_pretrained, method="AnyMethod", canonical=canonical)
                assert recipe_config(task, encoder, tiny=tiny).is_file()
    with pytest.raises(ValueError, match="no CPU twins for encoders in the 'convnext' layout"):
        pick("MAE", "linear", "convnext", tiny=True)
    with pytest.raises(ValueError, match="unknown task"):
        pick("MAE", "kitti")


def _label_of(config: Path) -> str:
    """The method label a checkpoint of ``config`` gets (from the config text mmengine saves in it)."""
    model = parse_config_text(Config.fromfile(str(config)).pretty_text)["model"]
    return method_label(_encoder_stub(model["type"].rsplit(".", 1)[-1], model_components(model)))


def _encoder_stub(method: str, components: dict) -> PretrainedEncoder:
    return PretrainedEncoder(encoder=None, state_dict={}, canonical="timm", method=method, epoch=1, iteration=1,
                             encoder_cfg={}, source="memory", components=components)


def test_rows_name_the_algorithm_and_what_a_combo_swaps_in():
    for name in CATALOGUE.algorithms():  # every config of an algorithm but its variants: the algorithm's name
        for model in CATALOGUE.collection(name).models:
            if model.config and not model.variant:
                assert _label_of(CATALOGUE.path(model.config)) == name, model.config
    combos = {name: {_label_of(CATALOGUE.tiny_config(name)), _label_of(CATALOGUE.paper_config(name))}
              for name in CATALOGUE.combos()}
    assert combos == {"mae_blockmask": {"MAE+BlockMasking"}, "mae_momentum": {"MAE+MomentumTarget"},
                      "mrmae_blockmask": {"MRMAE+BlockMasking"},
                      "mrmae_bootmae_decoder": {"MRMAE+BootMAEPixelDecoder"}}
    assert _label_of(Path("configs/mrmae/vitb_400e_focused.py")) == "MRMAE+AttentionMasking"
    assert method_label(_encoder_stub("ProjectMIM", {"masking": "BlockMasking"})) == "ProjectMIM"


DEFAULT_PARTS = {  # the papers' parts (METHODS.md 0)
    "MAE": {"masking": "RandomMasking", "target": "PixelTarget", "decoder": "MAEDecoder"},
    "MRMAE": {"masking": "RandomMasking", "target": "PixelTarget", "decoder": "MAEDecoder"},
    "BootMAE": {"masking": "BlockMasking", "pixel_target": "PixelTarget", "feature_target": "MomentumTarget",
                "pixel_decoder": "BootMAEPixelDecoder", "feature_decoder": "BootMAEFeatureDecoder"},
    "MixMAE": {"masking": "MixingMask", "target": "PixelTarget", "decoder": "MixMAEDecoder"},
}


@pytest.mark.parametrize("algorithm", sorted(DEFAULT_PARTS))
def test_the_label_reference_is_the_algorithms_default_parts(algorithm):
    assert MODELS.get(algorithm).default_types() == DEFAULT_PARTS[algorithm]


@pytest.mark.parametrize("algorithm", ["MAE", "BootMAE", "MixMAE"])  # MR-MAE: MAE's constructor (teachers need files)
def test_the_constructor_builds_the_default_parts(algorithm):
    vit = dict(type="ViTEncoder", arch="vit_tiny_patch16_224", embed_dim=64, depth=1, num_heads=4)  # 14 x 14 grid
    swin = dict(type="MixMIMEncoder", arch=dict(embed_dims=16, depths=[1, 1], num_heads=[1, 2]), img_size=32,
                patch_size=2, window_size=[4, 4])
    model = MODELS.build(dict(type=algorithm, encoder=swin if algorithm == "MixMAE" else vit))
    assert {slot: type(getattr(model, slot)).__name__ for slot in DEFAULT_PARTS[algorithm]} == DEFAULT_PARTS[algorithm]


def test_distributed_runs_are_launched_through_torchrun(tiny_checkpoint, tmp_path):
    proc = run_tool("tools/benchmark.py", tiny_checkpoint, "--tasks", "ade20k,coco", "--gpus", "8", "--dry-run",
                    "--work-dir", str(tmp_path), "--name", "MAE (run 2)")
    commands = [line for line in proc.stdout.splitlines() if "torch.distributed.run" in line]
    assert len(commands) == 2 and all("--nproc_per_node=8" in c and "--launcher pytorch" in c for c in commands)
    assert "--tasks ade20k" in commands[0] and "--tasks coco" in commands[1]
    assert all("--name 'MAE (run 2)'" in c for c in commands)
    assert not (tmp_path / "results.json").exists()


def test_results_merge_and_refuse_another_checkpoint(tiny_pretrained, tmp_path):
    record = dict(phase="val", epoch=0, iter=8, metrics={"mIoU": 41.234, "aAcc": 80.0})
    results_file = str(tmp_path / "results.json")
    update_results(results_file, tiny_pretrained, "ade20k", "cfg.py", record)
    coco = dict(phase="val", epoch=0, iter=8, metrics={"coco/bbox_mAP": 0.5123, "coco/segm_mAP": 0.4456})
    results = update_results(results_file, tiny_pretrained, "coco", "cfg.py", coco)
    assert results_row(results) == dict(method="MAE", epochs=2, ade20k_miou=41.23, coco_box_ap=51.23,
                                        coco_mask_ap=44.56)
    assert results["algorithm"] == "MAE" and results["components"]["masking"] == "RandomMasking"
    assert markdown_table([results]).splitlines()[2] == "| MAE | 2 | - | - | 41.23 | 51.23 | 44.56 | - |"
    renamed = update_results(results_file, tiny_pretrained, "coco", "cfg.py", coco, name="MAE+my-mask")
    assert markdown_table([renamed]).splitlines()[2].startswith("| MAE+my-mask | 2 |")
    with pytest.raises(ValueError, match="holds results of"):
        update_results(results_file, replace(tiny_pretrained, source="/elsewhere.pth"), "ade20k", "c.py", record)
    with pytest.raises(KeyError, match="not 'accuracy/top1'"):
        task_columns("linear", record)
