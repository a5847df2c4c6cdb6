"""Paper numbers next to mim_zoo's, so a reproduction gap is visible at a glance.

    python -m benchmarks.reproduction                                   # the table with paper numbers only
    python -m benchmarks.reproduction work_dirs/benchmarks/*/*/results.json --update-readme

The mim_zoo columns come from the ``results.json`` files that ``tools/benchmark.py`` writes for a full-scale
pretraining checkpoint (method, pretraining epochs, linear / fine-tune top-1, ADE20K mIoU, COCO box / mask AP);
a result fills the row of the same method and epochs. Paper numbers are the ``Results`` of the catalogue's
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


def load_results(paths: list[Path]) -> dict[tuple[str, int], dict[str, float]]:
    """``{(method, epochs): {metric: value}}`` from ``tools/benchmark.py``'s ``results.json`` files."""
    from mim_zoo.engine.benchmark import results_row

    out: dict[tuple[str, int], dict[str, float]] = {}
    for path in paths:
        row = results_row(json.loads(Path(path).read_text()))
        if row.get("method") is None or row.get("epochs") is None:
            raise ValueError(f"{path} is not a tools/benchmark.py results file (no method / epochs)")
        out.setdefault((row["method"], int(row["epochs"])), {}).update(
            {k: v for k, v in row.items() if k in METRICS and v is not None})
    return out


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


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="*", help="results.json files written by tools/benchmark.py")
    parser.add_argument("--update-readme", action="store_true", help="rewrite the table in benchmarks/README.md")
    args = parser.parse_args(argv)
    text = table(load_results([Path(p) for p in args.results]))
    print(text)
    if args.update_readme:
        replace_readme_section(REPO / "benchmarks" / "README.md", "reproduction", text)
    return text


if __name__ == "__main__":
    main()
