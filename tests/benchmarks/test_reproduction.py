"""benchmarks/reproduction.py: paper numbers beside the results that tools/benchmark.py writes."""

from __future__ import annotations

import json

import pytest

from benchmarks.common import CATALOGUE
from benchmarks.reproduction import cell, load_results, main, paper_rows


def test_every_algorithm_has_a_paper_row_with_a_source():
    rows = paper_rows()
    assert set(CATALOGUE.algorithms()) <= {row["method"] for row in rows}
    assert all(row["source"] for row in rows)


def test_paper_rows_are_the_metafiles_results():
    rows = {(row["method"], row["epochs"]): row for row in paper_rows()}
    assert rows["MAE", 1600]["coco_box_ap"] == 50.3 and rows["MAE", 1600]["coco_mask_ap"] == 44.9
    assert rows["MRMAE", 200]["finetune_top1"] == 85.0 and rows["MRMAE", 200]["linear_top1"] is None  # no config
    assert rows["MixMAE", 300]["finetune_top1"] == 84.63 and rows["MixMAE", 300]["encoder"] == "Swin-B/W14"
    assert rows["MAE", 1600]["source"] == ("FT [README facebookresearch/mae]; linear, COCO [UNVERIFIED: MAE paper]; "
                                          "ADE20K [ConvMAE README]")


def test_cells_show_paper_ours_and_the_gap():
    assert cell(83.6, None) == "83.6 / —"
    assert cell(None, None) == "—"
    assert cell(83.6, 83.1) == "83.6 / 83.1 (-0.5)"
    assert cell(None, 47.0) == "— / 47.0"
    assert cell(84.63, None) == "84.63 / —"


def test_results_fill_the_row_of_the_same_method_and_epochs(tmp_path):
    # the layout tools/benchmark.py (mim_zoo.engine.benchmark.update_results) writes
    results = {"checkpoint": "/x/epoch_800.pth", "method": "BootMAE", "epochs": 800,
               "tasks": {"linear": {"config": "c.py", "linear_top1": 65.0, "evaluation": {}},
                         "ade20k": {"config": "d.py", "ade20k_miou": 48.6, "evaluation": {}}}}
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    assert load_results([path]) == {("BootMAE", 800): {"linear_top1": 65.0, "ade20k_miou": 48.6}}
    text = main([str(path)])
    row = next(line for line in text.splitlines() if line.startswith("| BootMAE"))
    assert "66.1 / 65.0 (-1.1)" in row and "49.1 / 48.6 (-0.5)" in row and "84.2 / —" in row


def test_a_file_that_is_not_a_results_file_is_a_clear_error(tmp_path):
    path = tmp_path / "other.json"
    path.write_text("{}")
    with pytest.raises(ValueError, match="not a tools/benchmark.py results file"):
        load_results([path])


def benchmark_results(method: str, epochs: int, tiny: bool = False) -> dict:
    """A results file as tools/benchmark.py writes it (mim_zoo.engine.benchmark.update_results / evidence)."""
    pretraining = {"config_hash": "0123456789ab", "git_commit": "f" * 40 + "+dirty", "img_per_s": 2041.4,
                   "utilisation": 0.4123, "wall_s": 36000.0,
                   "device": {"type": "cuda", "name": "NVIDIA A100-SXM4-80GB", "count": 8}}
    benchmark = {"git_commit": "a" * 40, "device": {"type": "cuda", "name": "NVIDIA H100", "count": 1}}
    return {"checkpoint": f"/x/{method}.pth", "method": method, "epochs": epochs, "tiny": tiny,
            "evidence": {"pretraining": pretraining, "benchmark": benchmark, "paper": {}},
            "tasks": {"linear": {"config": "c.py", "linear_top1": 64.0, "seconds": 5400.0, "evaluation": {}}}}


def test_a_folder_is_searched_down_and_smoke_tests_are_left_out(tmp_path, capsys):
    for name, doc in {"mae": benchmark_results("MAE", 1600), "tiny": benchmark_results("MAE", 800, tiny=True)}.items():
        (tmp_path / name / "run").mkdir(parents=True)
        (tmp_path / name / "run" / "results.json").write_text(json.dumps(doc))
    assert load_results([tmp_path]) == {("MAE", 1600): {"linear_top1": 64.0}}  # not the tiny 800-epoch one
    assert "left out" in capsys.readouterr().out
    with pytest.raises(FileNotFoundError, match="no such results file or folder"):
        load_results([tmp_path / "missing"])


def test_every_mim_zoo_row_carries_its_evidence(tmp_path):
    (tmp_path / "results.json").write_text(json.dumps(benchmark_results("MAE", 1600)))
    text = main([str(tmp_path)])
    assert "| MAE | ViT-B/16 | 1600 | 83.6 / — | 68.0 / 64.0 (-4.0) |" in text
    evidence = text.split("Evidence of the mim_zoo numbers")[1]
    row = next(line for line in evidence.splitlines() if line.startswith("| MAE"))
    assert row == ("| MAE | 1600 | 0123456789ab | ffffffffff+dirty | 8 x NVIDIA A100-SXM4-80GB | 2041 | 41.2 | 10.0 | "
                   "aaaaaaaaaa | 1 x NVIDIA H100 | linear 1.50 |")


def test_without_results_the_table_has_paper_numbers_only():
    text = main([])
    assert "Evidence of the mim_zoo numbers" not in text and "| MAE | ViT-B/16 | 1600 | 83.6 / — |" in text
