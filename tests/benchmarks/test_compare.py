"""benchmarks/compare.py on tiny settings: it runs end to end through the Runner in both views (equal epochs, equal
compute), probes every depth, gives MR-MAE the study's own teachers, ablates, and writes well-formed tables, JSON and
plots (never timings)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from benchmarks.common import CATALOGUE, REPO, replace_readme_section
from benchmarks.compare import (
    compute_epochs,
    default_methods,
    main,
    make_jobs,
    parse_args,
    readme_section,
    resolve_budget,
)
from benchmarks.runs import Study
from benchmarks.teachers import export_teacher_file, teacher_spec

COMBO = "mae_momentum"  # a combo that costs more than MAE: its equal-compute run is shorter
TINY = ["--train-limit", "64", "--batch-size", "32", "--eval-per-class", "6", "--jobs", "1"]


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("compare")
    main(["--methods", f"MAE,{COMBO}", "--seeds", "0,1", "--epochs", "2", *TINY, "--out-dir", str(out),
          "--work-dir", str(out / "work")])
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
            assert len(run["losses"]) == run["images"] // 32 == 4  # 64 images, batch 32, two epochs
            assert 0.0 <= run["linear_top1"] <= 1.0 and 0.0 <= run["knn_top1"] <= 1.0
            assert len(run["config_hash"]) == 12 and 0 < run["utilisation"] < 1  # the run's evidence
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
    assert header.count("|") == 12 and "equal epochs" in header and "equal compute" in header
    assert "| MAE |" in md and f"| {COMBO}" in md and "| *raw pixels* |" in md
    assert "| 2 (= equal epochs) |" in md  # MAE sets the budget: its equal-compute run is its equal-epoch run
    assert " ± " in md  # mean ± std over the two seeds


def test_plots_are_png_files(study):
    for name in ("compare_loss.png", "compare_accuracy.png", "compare_depth.png"):
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
    assert "(results/compare_depth.png)" in section  # the study probed every depth


def test_jobs_cover_every_method_and_seed_once():
    study = Study(methods={"A": (Path("a.py"), {}), "B": (Path("b.py"), {})}, seeds=[0, 1], supervised=True)
    jobs = make_jobs(study)
    assert [j.kind for j in jobs[:2]] == ["pixels", "supervised"]
    pretrain = [(j.name, j.seed) for j in jobs if j.kind == "pretrain"]
    assert sorted(pretrain) == [("A", 0), ("A", 1), ("B", 0), ("B", 1)]
    assert [j.with_random_init for j in jobs if j.kind == "pretrain"] == [True, True, False, False]


def test_the_equal_compute_view_adds_runs_only_where_the_epochs_differ_and_teachers_go_first():
    teachers = {"model.teachers": {}}
    methods = {"MAE": (Path("m.py"), {}), "BootMAE": (Path("b.py"), {}), "MRMAE": (Path("r.py"), teachers)}
    study = Study(methods=methods, seeds=[0, 1], epochs=12, baselines=False)
    planned = {"methods": methods, "compute_epochs": {"MAE": 12, "BootMAE": 2, "MRMAE": 5}}
    jobs = make_jobs(study, planned)
    assert [(j.name, j.seed) for j in jobs[:2]] == [("MAE", 0), ("BootMAE", 0)]  # they export the teachers
    assert all(j.export_teacher for j in jobs[:2]) and not any(j.export_teacher for j in jobs[2:])
    compute = sorted((j.name, j.seed, j.epochs) for j in jobs if j.view == "compute")
    assert compute == [("BootMAE", 0, 2), ("BootMAE", 1, 2), ("MRMAE", 0, 5), ("MRMAE", 1, 5)]
    assert {j.name for j in jobs if j.after_teachers} == {"MRMAE"}
    assert all(j.depth_probe == (j.view == "epochs") for j in jobs)


def test_budgets_agree_within_one_epoch(study):
    doc = study["json"]
    budget, per_epoch = doc["budget"], doc["data"]["images_per_epoch"]
    assert budget == pytest.approx(doc["methods"]["MAE"]["flops_per_image"] * per_epoch * 2)  # MAE at 2 epochs
    for method in doc["methods"].values():
        epoch = method["flops_per_image"] * per_epoch
        assert abs(method["compute"]["flops"] - budget) <= epoch
        assert all(r["epochs"] == method["compute"]["epochs"] for r in method["compute"]["runs"])
    assert doc["methods"][COMBO]["compute"]["epochs"] == 1  # 34.4 against 18.8 MFLOPs per image: half as many


def test_compute_epochs_are_the_budget_over_the_cost_of_an_epoch_rounded():
    flops = {"cheap": 1.0, "dear": 3.0, "dearest": 100.0}
    assert compute_epochs(120.0, flops, per_epoch=10) == {"cheap": 12, "dear": 4, "dearest": 1}  # at least one
    assert compute_epochs(125.0, {"a": 1.0, "b": 2.0}, per_epoch=10) == {"a": 12, "b": 6}  # 12.5, 6.25: rounded
    for budget in (37.0, 120.0, 999.0):
        for f, e in compute_epochs(budget, {"a": 1.0, "b": 2.9}, 10).items():
            assert abs(e * {"a": 1.0, "b": 2.9}[f] * 10 - budget) <= {"a": 1.0, "b": 2.9}[f] * 10 / 2
    assert resolve_budget("cheap", flops, per_epoch=10, epochs=12) == 120.0
    assert resolve_budget("2e3", flops, 10, 12) == 2000.0 and resolve_budget("none", flops, 10, 12) is None
    with pytest.raises(ValueError, match="--budget must be FLOPs per run"):
        resolve_budget("Nope", flops, 10, 12)


def test_every_depth_is_probed_and_its_final_norm_is_the_linear_probe(study):
    doc = study["json"]
    for method in doc["methods"].values():
        for run in method["runs"]:
            rows = run["depth_probe"]
            assert [(r["layer"], r["pooling"]) for r in rows] == [
                (layer, pooling) for layer in ("block 1", "block 2", "final norm")
                for pooling in ("class token", "mean of patch tokens")]
            assert rows[-1]["top1"] == pytest.approx(100 * run["linear_top1"])
        assert all("depth_probe" not in r for r in method["compute"]["runs"] if r["view"] == "compute")
    assert "**Accuracy against depth**" in study["md"] and "| MAE (blocks) |" in study["md"]


def test_the_study_and_its_rows_carry_their_evidence(study):
    doc = study["json"]
    assert doc["evidence"]["git_commit"] and doc["evidence"]["packages"]["mmengine"]
    assert doc["evidence"]["peak_flops_per_s_one_thread"] > 0
    assert doc["methods"]["MAE"]["paper"] and doc["methods"][COMBO]["paper"] == []
    assert "83.6 / 68.0 (1600 ep)" in study["md"]  # MAE's paper numbers, from the catalogue


@pytest.mark.slow  # three methods through the Runner
def test_mr_mae_mimics_the_studys_own_encoders(tmp_path):
    out = tmp_path / "out"
    doc = main(["--methods", "MAE,BootMAE,MRMAE", "--seeds", "0", "--epochs", "1", "--budget", "none",
                "--no-depth-probe", "--no-baselines", *TINY, "--out-dir", str(out), "--work-dir", str(tmp_path)])
    assert doc["methods"]["MRMAE"]["teachers"] == ["MAE", "BootMAE"]
    assert not doc["methods"]["MRMAE"]["random_teachers"]
    for path in doc["teachers"].values():
        assert Path(path).is_file()
    assert "MRMAE (teachers: the study's MAE + BootMAE)" in (out / "compare.md").read_text()


def test_a_teacher_file_is_the_encoder_it_was_exported_from(tmp_path, images):
    import mim_zoo  # noqa: F401
    from mim_zoo.registry import MODELS, TARGET_GENERATORS

    config = CATALOGUE.tiny_config("MAE")
    encoder = MODELS.build(dict(type="ViTEncoder", arch="vit_tiny_patch16_224", img_size=32, patch_size=4,
                                embed_dim=64, depth=2, num_heads=4)).eval()
    export_teacher_file(encoder, tmp_path / "t.pth")
    norm = ([123.675, 116.28, 103.53], [58.395, 57.12, 57.375])  # MAE's own: the teacher sees the images as MAE did
    spec = teacher_spec(config, tmp_path / "t.pth", norm)
    teacher = TARGET_GENERATORS.build(spec)
    with torch.no_grad():
        expected = torch.nn.functional.layer_norm(encoder.forward_full(images, -1, norm=True), (64,))
        assert torch.allclose(teacher(images), expected, atol=1e-5)


def test_an_ablation_varies_one_setting_at_a_time(tmp_path):
    doc = main(["--ablate", "MAE", "--vary", "model.masking.ratio=0.5", "--seeds", "0", "--epochs", "1", *TINY,
                "--out-dir", str(tmp_path), "--work-dir", str(tmp_path / "work")])
    assert [(r["key"], r["value"]) for r in doc["rows"]] == [("default", None), ("model.masking.ratio", 0.5)]
    assert doc["defaults"] == {"model.masking.ratio": 0.75}
    md = (tmp_path / "ablation_MAE.md").read_text()
    assert "| model.masking.ratio | 0.5 |" in md and "model.masking.ratio=0.75" in md
    assert (tmp_path / "ablation_MAE.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(SystemExit):
        parse_args(["--vary", "model.masking.ratio=0.5"])  # --vary without --ablate


def test_a_method_off_the_embedded_dataset_is_a_clear_error(tmp_path):
    from benchmarks.compare import run_study

    args = parse_args(["--methods", "paper", "--method", "paper=configs/mae/vitb_800e.py", "--seeds", "0"])
    with pytest.raises(ValueError, match="embedded shapes dataset"):
        run_study(args.study)


def test_unknown_method_is_a_clear_error(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--methods", "NotAMethod"])
    assert "unknown method" in capsys.readouterr().err


def test_quiet_estimate_packs_job_cpu_times_onto_the_workers():
    from benchmarks.compare import quiet_estimate

    assert quiet_estimate([5.0, 4.0, 3.0, 2.0], workers=2) == 7.0  # {5, 2} and {4, 3}
    assert quiet_estimate([5.0, 4.0], workers=1) == 9.0


def test_mr_mae_alone_needs_the_studys_teachers_or_their_cached_files(tmp_path):
    from benchmarks.compare import study_methods
    from benchmarks.teachers import teacher_path

    study = parse_args(["--methods", "MRMAE", "--seeds", "0", "--work-dir", str(tmp_path)]).study
    with pytest.raises(ValueError, match="include MAE, BootMAE in --methods"):
        study_methods(study)
    assert "model.teachers" not in study_methods(Study(**{**vars(study), "teachers": "config"}))["MRMAE"][1]
    files = {name: teacher_path(study, name) for name in ("MAE", "BootMAE")}
    for path in files.values():  # as a study with the same settings left them
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    teachers = study_methods(study)["MRMAE"][1]["model.teachers"]
    assert [t["checkpoint"] for t in teachers.values()] == [str(files["MAE"]), str(files["BootMAE"])]
    longer = Study(**{**vars(study), "epochs": study.epochs + 1})
    assert teacher_path(longer, "MAE").parent != files["MAE"].parent  # other settings, other teachers
