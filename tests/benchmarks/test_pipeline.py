"""benchmarks/pipeline.py on tiny settings: it runs every implementation and writes well-formed JSON and markdown
(never a timing assertion)."""

from __future__ import annotations

import json

import pytest

from benchmarks.pipeline import children_cpu_seconds, main, parse_args, parse_subject
from benchmarks.pipeline_report import to_markdown

SUBJECTS = ["mmpretrain", "fast", "fast:dct_headroom=None", "nvjpeg"]


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("pipeline")
    main(["--num-images", "6", "--max-side", "300", "--photo-dir", str(out / "photos"), "--rounds", "2",
          "--workers", "0,1", "--batch-size", "3", "--fidelity-images", "3", "--out-dir", str(out), "--name", "t",
          "--subjects", *SUBJECTS])
    return {"json": json.loads((out / "t.json").read_text()), "md": (out / "t.md").read_text()}


def test_every_subject_is_timed_at_every_worker_count(results):
    doc = results["json"]
    assert list(doc["subjects"]) == SUBJECTS and doc["images"]["count"] == 6
    for subject in doc["subjects"].values():
        for workers in ("0", "1"):
            rounds = subject["rounds"][workers]
            assert len(rounds) == 2 and all(r["img_per_s"] > 0 and r["per_core"] > 0 for r in rounds)
        assert subject["preprocessor"]["wall_per_image"] > 0 and subject["cores_per_gpu"] > 0
    assert doc["subjects"]["mmpretrain"]["vs_reference"]["0"]["median"] == pytest.approx(1.0)


def test_fidelity_is_measured_against_mmpretrain_with_the_same_crops(results):
    fidelity = {name: s["fidelity"] for name, s in results["json"]["subjects"].items()}
    assert fidelity["mmpretrain"]["max_abs"] == 0  # the reference against itself
    for name in ("fast", "fast:dct_headroom=None", "nvjpeg"):
        assert fidelity[name]["mean_abs"] < 0.5
        assert sum(v["images"] for v in fidelity[name]["by_dct_scale"].values()) == 3
    assert fidelity["nvjpeg"]["mean_abs"] == fidelity["fast:dct_headroom=None"]["mean_abs"]  # same decode, same crop


def test_report_has_every_table_and_the_target(results):
    md, doc = results["md"], results["json"]
    for heading in ("Images/s per core", "Images/s (wall clock)", "Cost per image and cores per GPU",
                    "Pixels against mmpretrain's", "Targets", "Subjects"):
        assert f"## {heading}" in md
    assert sum("x mmpretrain's images/s per core" in t["target"] for t in doc["targets"]) == 2  # both fast subjects
    assert md.count("| fast |") == 4 and "DecodeRandomResizedCrop(" in md
    assert "Decoding alone" in md and 0 < doc["decode_floor"]["eighth_grey"] < doc["decode_floor"]["full_colour"]
    nested = to_markdown(doc, level=4)
    assert nested.startswith("#### Input pipeline") and "\n##### Targets" in nested and "\n## " not in nested


def test_subjects_and_arguments_parse_or_fail_clearly():
    assert parse_subject("fast:dct_headroom=1,interpolation=bilinear") == (
        "fast", {"dct_headroom": 1, "interpolation": "bilinear"})
    with pytest.raises(ValueError, match="IMPL:key=value"):
        parse_subject("fast:dct_headroom")
    settings, *_ = parse_args(["--workers", "0,2", "--subjects", "mmpretrain", "fast"])
    assert settings.workers == [0, 2] and settings.subjects == ["mmpretrain", "fast"]
    with pytest.raises(SystemExit):
        parse_args(["--workers", "-1"])


def test_children_cpu_time_counts_live_child_processes():
    import multiprocessing

    context = multiprocessing.get_context("fork")
    spun, release = context.Event(), context.Event()
    before = children_cpu_seconds()
    child = context.Process(target=_spin, args=(0.3, spun, release))
    child.start()
    assert spun.wait(60)
    during = children_cpu_seconds()  # the child is alive, waiting: only /proc can see its CPU time
    release.set()
    child.join()
    assert during - before >= 0.25


def _spin(seconds: float, spun, release) -> None:
    import time

    end = time.process_time() + seconds
    while time.process_time() < end:
        pass
    spun.set()
    release.wait(60)
