"""Paper numbers next to mim_zoo's, so a reproduction gap is visible at a glance.

    python -m benchmarks.reproduction                                   # the table with paper numbers only
    python -m benchmarks.reproduction work_dirs/benchmarks --update-readme     # a folder of results, searched down

The mim_zoo columns come from the ``results.json`` files that ``tools/benchmark.py`` writes for a full-scale
pretraining checkpoint (method, pretraining epochs, linear / fine-tune top-1, ADE20K mIoU, COCO box / mask AP);
a result fills the row of the same method and epochs. Arguments are files or folders (every ``results.json``
below them); results of the CPU twins (``--tiny``: smoke tests) are left out and named on the console. A second
table gives each mim_zoo row its evidence (:func:`mim_zoo.engine.benchmark.evidence`): the pretraining run's
config hash, commit, device, images/s, matmul utilisation and wall time (from the checkpoint), and the commit,
device and wall time of the evaluations. Paper numbers are the ``Results`` of the catalogue's
metafiles (``configs/<algo>/metafile.yml``), with the tags of ``/work/shared/METHODS.md`` (``source`` column):
[README] the official repository's README, [abstract] the paper's abstract, [mmpretrain] mmpretrain's reproduction,
[derived] arithmetic on tagged numbers, [UNVERIFIED] not checked against the paper body, [secondary] a secondary
summary.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python benchmarks/reproduction.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    __package__ = "benchmarks"

from .common import CATALOGUE, REPO, markdown_table, replace_readme_section  # noqa: E402

METRICS = ("finetune_top1", "linear_top1", "ade20k_miou", "coco_box_ap", "coco_mask_ap")
TITLES = {"finetune_top1": "IN-1K fine-tune", "linear_top1": "IN-1K linear", "ade20k_miou": "ADE20K mIoU",
          "coco_box_ap": "COCO box AP", "coco_mask_ap": "COCO mask AP"}

SHORT = {"finetune": "FT", "linear": "linear", "ade20k": "ADE20K", "coco": "COCO"}


def paper_rows() -> list[dict[str, Any]]:
    """One row per published setting of the catalogue (``Results`` of its metafiles): method, encoder, pretraining
    epochs, every metric (``None`` = not published) and the sources, grouped ("FT, linear [README ...]")."""
    rows = []
    for collection, model in CATALOGUE.results():
        row: dict[str, Any] = dict(method=collection.name, encoder=model.encoder, epochs=model.epochs)
        row.update(dict.fromkeys(METRICS))
        sources: dict[str, list[str]] = {}
        for result in model.results:
            row.update(result.metrics)
            sources.setdefault(result.source, []).append(SHORT[result.task])
        row["source"] = "; ".join(f"{', '.join(tasks)} {source}" for source, tasks in sources.items())
        rows.append(row)
    return rows


def find_results(paths: list[Path]) -> list[Path]:
    """The results files named, and every ``results.json`` below the folders named (sorted)."""
    found = []
    for path in map(Path, paths):
        if path.is_dir():
            found += sorted(path.rglob("results.json"))
        elif path.is_file():
            found.append(path)
        else:
            raise FileNotFoundError(f"{path}: no such results file or folder (tools/benchmark.py writes "
                                    "WORK_DIR/results.json)")
    return found


def read_results(paths: list[Path]) -> list[dict[str, Any]]:
    """The full-size ``tools/benchmark.py`` results documents among ``paths`` (files or folders); smoke-test ones
    (``tiny``) are left out, and said so."""
    documents = []
    for path in find_results(paths):
        doc = json.loads(path.read_text())
        if not isinstance(doc, dict) or doc.get("method") is None or doc.get("epochs") is None:
            raise ValueError(f"{path} is not a tools/benchmark.py results file (no method / epochs)")
        if doc.get("tiny"):
            print(f"left out {path}: a smoke test of the CPU twins (tools/benchmark.py --tiny), not a result")
            continue
        documents.append(dict(doc, path=str(path)))
    return documents


def load_results(paths: list[Path]) -> dict[tuple[str, int], dict[str, float]]:
    """``{(method, epochs): {metric: value}}`` from ``tools/benchmark.py``'s ``results.json`` files (or folders)."""
    return measured_metrics(read_results(paths))


def measured_metrics(documents: list[dict[str, Any]]) -> dict[tuple[str, int], dict[str, float]]:
    from mim_zoo.engine.benchmark import results_row

    out: dict[tuple[str, int], dict[str, float]] = {}
    for doc in documents:
        row = results_row(doc)
        out.setdefault((row["method"], int(row["epochs"])), {}).update(
            {k: v for k, v in row.items() if k in METRICS and v is not None})
    return out


EVIDENCE_HEADERS = ["method", "epochs", "pretraining: config hash", "commit", "device", "img/s", "matmul util %",
                    "wall h", "evaluations: commit", "device", "wall h (tasks)"]


def device_cell(device: dict | None) -> str | None:
    """``"2 x NVIDIA A100-SXM4-80GB"``."""
    return None if not device else f"{device.get('count', 1)} x {device.get('name') or device.get('type')}"


def evidence_rows(documents: list[dict[str, Any]]) -> list[list[Any]]:
    """One row per results file: what its pretraining run and its evaluations were measured with (``None`` where the
    checkpoint carries no evidence: written without :class:`mim_zoo.engine.hooks.RunEvidenceHook`)."""
    rows = []
    for doc in sorted(documents, key=lambda d: (d["method"], int(d["epochs"]))):
        ev = doc.get("evidence") or {}
        pre, bench = ev.get("pretraining") or {}, ev.get("benchmark") or {}
        tasks = {name: t.get("seconds") for name, t in doc.get("tasks", {}).items()}
        img_s, util, wall = pre.get("img_per_s"), pre.get("utilisation"), pre.get("wall_s")
        rows.append([doc["method"], doc["epochs"], pre.get("config_hash"), short(pre.get("git_commit")),
                     device_cell(pre.get("device")), None if img_s is None else f"{img_s:.0f}",
                     None if util is None else f"{100 * util:.1f}", None if wall is None else f"{wall / 3600:.1f}",
                     short(bench.get("git_commit")), device_cell(bench.get("device")),
                     ", ".join(f"{n} {s / 3600:.2f}" for n, s in tasks.items() if s is not None) or None])
    return rows


def short(commit: str | None) -> str | None:
    """A commit's first 10 digits, keeping ``+dirty``."""
    return None if commit is None else commit[:10] + ("+dirty" if commit.endswith("+dirty") else "")


def number(value: float) -> str:
    """At least one decimal, at most two: 85.0, 84.63, 66.1."""
    text = f"{value:.2f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def cell(paper: float | None, ours: float | None) -> str:
    if ours is None:
        return "—" if paper is None else f"{number(paper)} / —"
    if paper is None:
        return f"— / {number(ours)}"
    return f"{number(paper)} / {number(ours)} ({ours - paper:+.1f})"


def table(measured: dict[tuple[str, int], dict[str, float]]) -> str:
    """Paper / mim_zoo (gap) per metric; rows for every published setting, plus measured ones without a paper row."""
    rows, seen = [], set()
    for ref in paper_rows():
        key = (ref["method"], ref["epochs"])
        seen.add(key)
        ours = measured.get(key, {})
        rows.append([ref["method"], ref["encoder"], ref["epochs"], *(cell(ref[m], ours.get(m)) for m in METRICS),
                     ref["source"]])
    for (method, epochs), ours in sorted(measured.items()):
        if (method, epochs) not in seen:
            rows.append([method, "", epochs, *(cell(None, ours.get(m)) for m in METRICS), "no published number"])
    headers = ["method", "encoder", "epochs", *(f"{TITLES[m]} paper / mim_zoo (gap)" for m in METRICS), "source"]
    return markdown_table(headers, rows)


def leaderboard(documents: list[dict[str, Any]]) -> str:
    """The paper / mim_zoo table, and the evidence of every mim_zoo row when there are any."""
    text = table(measured_metrics(documents))
    if documents:
        text += ("\n\nEvidence of the mim_zoo numbers (one row per results file; pretraining from the checkpoint's "
                 "record, evaluations from tools/benchmark.py's):\n\n"
                 + markdown_table(EVIDENCE_HEADERS, evidence_rows(documents)))
    return text


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="*", help="results.json files written by tools/benchmark.py, or folders "
                                                   "holding them (searched down)")
    parser.add_argument("--update-readme", action="store_true", help="rewrite the table in benchmarks/README.md")
    args = parser.parse_args(argv)
    text = leaderboard(read_results([Path(p) for p in args.results]))
    print(text)
    if args.update_readme:
        replace_readme_section(REPO / "benchmarks" / "README.md", "reproduction", text)
    return text


if __name__ == "__main__":
    main()
