"""benchmarks/compare.py on tiny settings: it runs end to end through the Runner and writes a well-formed table,
JSON and plots (never timings)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.common import CATALOGUE, REPO, replace_readme_section
from benchmarks.compare import default_methods, main, make_jobs, parse_args, readme_section
from benchmarks.runs import Study

COMBO = CATALOGUE.combos()[0]


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("compare")
    main(["--methods", f"MAE,{COMBO}", "--seeds", "0,1", "--epochs", "1", "--train-limit", "64", "--batch-size", "32",
          "--eval-per-class", "6", "--jobs", "1", "--out-dir", str(out), "--work-dir", str(out / "work")])
    return {"out": out, "json": json.loads((out / "compare.json").read_text()),
            "md": (out / "compare.md").read_text()}


def test_every_algorithm_and_combo_is_a_method():
    assert list(default_methods()) == [*CATALOGUE.algorithms(), *CATALOGUE.combos()]


def test_runs_record_losses_and_evaluations_for_every_seed(study):
    doc = study["json"]
    assert list(doc["methods"]) == ["MAE", COMBO]
    for method in doc["methods"].values():
        assert [r["seed"] for r in method["runs"]] == [0, 1]
        for run in method["runs"]:
            assert len(run["losses"]) == run["images"] // 32 == 2  # 64 images, batch 32, one epoch
            assert 0.0 <= run["linear_top1"] <= 1.0 and 0.0 <= run["knn_top1"] <= 1.0
        assert method["flops_per_image"] > 0 and method["params"]["trainable"] > 0
    assert doc["data"]["train"] == doc["data"]["val"] == 60  # 6 per class, 10 classes


def test_baselines_bound_the_table(study):
    doc = study["json"]
    assert set(doc["baselines"]) == {"raw pixels", "colour statistics"}
    for method in doc["methods"].values():  # every method's encoder at initialisation, once
        assert 0.0 <= method["random_init"]["linear_top1"] <= 1.0


def test_markdown_table_has_one_row_per_method_and_reference(study):
    md = study["md"]
    header = next(line for line in md.splitlines() if line.startswith("| method"))
    assert header.count("|") == 10
    assert "| MAE |" in md and f"| {COMBO}" in md and "| *raw pixels* |" in md
    assert " ± " in md  # mean ± std over the two seeds


def test_plots_are_png_files(study):
    for name in ("compare_loss.png", "compare_accuracy.png"):
        assert (study["out"] / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_render_redoes_the_reports_from_the_json(study, tmp_path):
    main(["--render", str(study["out"] / "compare.json"), "--out-dir", str(tmp_path)])
    assert (tmp_path / "compare.md").read_text() == study["md"]
    assert (tmp_path / "compare_accuracy.png").is_file()


def test_readme_section_is_replaced_between_markers(study, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- compare:start -->\nold\n<!-- compare:end -->\noutro\n")
    replace_readme_section(readme, "compare", "new table")
    assert readme.read_text() == "intro\n<!-- compare:start -->\nnew table\n<!-- compare:end -->\noutro\n"
    with pytest.raises(ValueError, match="no section"):
        replace_readme_section(readme, "missing", "x")
    section = readme_section(study["md"], REPO / "benchmarks" / "results", "compare")
    assert "(results/compare_loss.png)" in section and "| MAE |" in section


def test_jobs_cover_every_method_and_seed_once():
    study = Study(methods={"A": (Path("a.py"), {}), "B": (Path("b.py"), {})}, seeds=[0, 1], supervised=True)
    jobs = make_jobs(study)
    assert [j.kind for j in jobs[:2]] == ["pixels", "supervised"]
    pretrain = [(j.name, j.seed) for j in jobs if j.kind == "pretrain"]
    assert sorted(pretrain) == [("A", 0), ("A", 1), ("B", 0), ("B", 1)]
    assert [j.with_random_init for j in jobs if j.kind == "pretrain"] == [True, True, False, False]


def test_a_method_off_the_embedded_dataset_is_a_clear_error(tmp_path):
    from benchmarks.compare import run_study

    study, *_ = parse_args(["--methods", "paper", "--method", "paper=configs/mae/vitb_800e.py", "--seeds", "0"])
    with pytest.raises(ValueError, match="embedded shapes dataset"):
        run_study(study)


def test_unknown_method_is_a_clear_error(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--methods", "NotAMethod"])
    assert "unknown method" in capsys.readouterr().err


def test_quiet_estimate_packs_job_cpu_times_onto_the_workers():
    from benchmarks.compare import quiet_estimate

    assert quiet_estimate([5.0, 4.0, 3.0, 2.0], workers=2) == 7.0  # {5, 2} and {4, 3}
    assert quiet_estimate([5.0, 4.0], workers=1) == 9.0
