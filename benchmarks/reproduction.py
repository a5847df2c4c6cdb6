"""Paper numbers next to mim_zoo's, so a reproduction gap is visible at a glance.

    python -m benchmarks.reproduction                                   # the table with paper numbers only
    python -m benchmarks.reproduction work_dirs/benchmarks/*/*/results.json --update-readme

The mim_zoo columns come from the ``results.json`` files that ``tools/benchmark.py`` writes for a full-scale
pretraining checkpoint (method, pretraining epochs, linear / fine-tune top-1, ADE20K mIoU, COCO box / mask AP);
a result fills the row of the same method and epochs. Paper numbers and their tags are those of
``/work/shared/METHODS.md`` (see the ``source`` column): [README] the official repository's README, [abstract] the
paper's abstract, [mmpretrain] mmpretrain's reproduction, [derived] arithmetic on tagged numbers, [UNVERIFIED] not
checked against the paper body, [secondary] a secondary summary.
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

from .common import REPO, markdown_table, replace_readme_section  # noqa: E402

METRICS = ("finetune_top1", "linear_top1", "ade20k_miou", "coco_box_ap", "coco_mask_ap")
TITLES = {"finetune_top1": "IN-1K fine-tune", "linear_top1": "IN-1K linear", "ade20k_miou": "ADE20K mIoU",
          "coco_box_ap": "COCO box AP", "coco_mask_ap": "COCO mask AP"}

# (method as mim_zoo names it, encoder, pretraining epochs) -> published numbers; None = not published.
PAPER: list[dict[str, Any]] = [
    dict(method="MAE", encoder="ViT-B/16", epochs=1600, finetune_top1=83.6, linear_top1=68.0, ade20k_miou=48.1,
         coco_box_ap=50.3, coco_mask_ap=44.9,
         source="FT [README facebookresearch/mae]; linear, COCO [UNVERIFIED: MAE paper]; ADE20K [ConvMAE README]"),
    dict(method="MAE", encoder="ViT-B/16", epochs=800, finetune_top1=83.3, linear_top1=65.1, ade20k_miou=None,
         coco_box_ap=None, coco_mask_ap=None, source="[mmpretrain] configs/mae/README.md reproduction"),
    dict(method="BootMAE", encoder="ViT-B/16", epochs=800, finetune_top1=84.2, linear_top1=66.1, ade20k_miou=49.1,
         coco_box_ap=51.6, coco_mask_ap=46.3,
         source="FT, linear, ADE20K [README LightDXY/BootMAE]; COCO [derived: MAE 50.3/44.9 + 1.3/1.4 of abstract]"),
    dict(method="MRMAE", encoder="ViT-B/16", epochs=400, finetune_top1=85.8, linear_top1=None, ade20k_miou=None,
         coco_box_ap=53.4, coco_mask_ap=None,
         source="FT [abstract arXiv 2303.05475; OpenReview attributes 85.8 to the conv-hybrid MR-MCMAE]; "
                "COCO 25-ep fine-tune [secondary]"),
    dict(method="MRMAE", encoder="ViT-B/16", epochs=200, finetune_top1=85.0, linear_top1=None, ade20k_miou=None,
         coco_box_ap=None, coco_mask_ap=None, source="FT [abstract, OpenReview ICLR 2023 version]"),
    dict(method="MixMAE", encoder="Swin-B/W14", epochs=600, finetune_top1=85.1, linear_top1=None, ade20k_miou=50.3,
         coco_box_ap=None, coco_mask_ap=None,
         source="FT [README Sense-X/MixMIM, abstract]; ADE20K [paperswithcode listing of the paper]"),
    dict(method="MixMAE", encoder="Swin-B/W14", epochs=300, finetune_top1=84.63, linear_top1=None, ade20k_miou=None,
         coco_box_ap=None, coco_mask_ap=None, source="[mmpretrain] re-training (official 300-ep ckpt: 84.6)"),
]


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
    for ref in PAPER:
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
