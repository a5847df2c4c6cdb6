"""benchmarks/throughput.py on tiny settings: it runs and writes well-formed JSON and markdown (never timings)."""

from __future__ import annotations

import json

import pytest
import torch

from benchmarks.common import CATALOGUE, REPO, bf16_supported, build_algorithm, load_config, randomize_teachers
from benchmarks.throughput import main, parse_args

ALGORITHMS = CATALOGUE.algorithms()
COMBOS = CATALOGUE.combos()


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("throughput")
    dtypes = "fp32,bf16" if bf16_supported(torch.device("cpu")) else "fp32"
    main(["--tiny", "--combos", "--iters", "1", "--repeats", "2", "--warmup", "0", "--batch-size", "2",
          "--threads", "1", "--dtypes", dtypes, "--variant", "MAE:model.masking.ratio=0.5", "--out-dir", str(out),
          "--name", "t"])
    return {"json": json.loads((out / "t.json").read_text()), "md": (out / "t.md").read_text()}


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_every_algorithm_has_a_paper_size_and_a_tiny_config(algorithm):
    assert CATALOGUE.paper_config(algorithm).is_file() and CATALOGUE.tiny_config(algorithm).is_file()


def test_paper_config_is_the_shortest_base_schedule_without_variants():
    assert CATALOGUE.paper_config("MAE") == REPO / "configs" / "mae" / "vitb_800e.py"  # not 1600e, not ViT-L
    assert CATALOGUE.paper_config("MRMAE") == REPO / "configs" / "mrmae" / "vitb_400e.py"  # not focused
    assert CATALOGUE.paper_config("MixMAE") == REPO / "configs" / "mixmae" / "swinb_300e.py"


def test_every_subject_is_measured_at_every_dtype(results):
    doc = results["json"]
    names = set(doc["subjects"])
    assert set(ALGORITHMS) | set(COMBOS) | {"MAE (mmpretrain)", "MAE [ratio=0.5]"} <= names
    for subject in doc["subjects"].values():
        for dtype in doc["settings"]["dtypes"]:
            numbers = subject["dtypes"][dtype]
            assert len(numbers["rounds"]) == 2 and numbers["summary"]["img_per_s"]["median"] > 0
            assert subject["flops_per_image"][dtype] > 0 and subject["memory"][dtype]["persistent"] > 0


def test_peer_computes_the_same_flops_and_is_compared_per_round(results):
    doc = results["json"]
    flops = doc["subjects"]["MAE"]["flops_per_image"]["fp32"]
    assert doc["subjects"]["MAE (mmpretrain)"]["flops_per_image"]["fp32"] == flops
    assert doc["subjects"]["MAE [ratio=0.5]"]["flops_per_image"]["fp32"] > flops  # more visible tokens
    ratio = doc["ratios"]["fp32"]["MAE / MAE (mmpretrain)"]
    assert ratio["peer"] and len(ratio["per_round"]) == 2 and ratio["min"] <= ratio["median"] <= ratio["max"]
    assert "MAE [ratio=0.5] / MAE" in doc["ratios"]["fp32"]


def test_flop_ratios_and_targets_are_reported(results):
    doc = results["json"]
    checks = doc["flop_ratio_check"]["fp32"]
    assert set(checks) == (set(ALGORITHMS) | set(COMBOS)) - {"MAE"}
    assert checks["mae_blockmask"]["flop_ratio"] == pytest.approx(1.0)  # the same model, another mask
    assert all(not t["reference_setting"] for t in doc["targets"])  # tiny settings are never the reference
    assert any("utilisation" in t["target"] for t in doc["targets"])


def test_markdown_report_has_a_table_per_dtype(results):
    md, doc = results["md"], results["json"]
    for dtype in doc["settings"]["dtypes"]:
        assert f"## {dtype}: matmul peak" in md
    assert md.count("| MAE (mmpretrain) |") == len(doc["settings"]["dtypes"])
    assert "## Targets (fp32)" in md and "RANDOM weights" in md  # MR-MAE's teachers are flagged


def test_random_teachers_replace_every_teacher_file():
    cfg = load_config(CATALOGUE.tiny_config("MRMAE"))
    notes = randomize_teachers(cfg.model)
    assert len(notes) == 2 and all("RANDOM" in n for n in notes)
    model, _ = build_algorithm(load_config(CATALOGUE.tiny_config("MRMAE")))
    assert len(model.teachers) == 2


def test_unknown_algorithm_is_a_clear_error(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--algos", "NotAMethod"])
    assert "unknown algorithm" in capsys.readouterr().err


def test_malformed_variant_is_a_clear_error(tmp_path):
    settings, *_ = parse_args(["--tiny", "--algos", "MAE", "--variant", "MAE-model.x=1"])
    from benchmarks.throughput import variant_options

    with pytest.raises(ValueError, match="ALGO:key=value"):
        variant_options(settings, "MAE")


def test_readme_report_nests_its_headings(results):
    from benchmarks.throughput_report import to_markdown

    text = to_markdown(results["json"], level=4)
    assert text.startswith("#### Training cost per step") and "\n##### fp32: matmul peak" in text
    assert "\n## " not in text
