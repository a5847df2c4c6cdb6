"""Turning the input-pipeline benchmark's raw epochs into numbers, target checks and a markdown report.

Per subject, worker count and round (one epoch): images/s (images / wall seconds), **images/s per core** (images /
CPU seconds of the process and its workers) and ``cpu_busy`` (CPU seconds / (wall seconds x processes): ~1 on a
quiet machine, lower when other processes take the cores). Summaries are min / median / max over rounds; ratios to
the reference pipeline are taken per round, so a disturbance that hits one round hits both sides of its ratio.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

from .common import markdown_table

PER_CORE_TARGET = 2.0  # issue 10: >= 2x mmpretrain's images/s per core, one core
BUSY_WARNING = 0.9


def spread(values: list[float]) -> dict[str, float]:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def epoch_numbers(epoch: dict[str, float], workers: int) -> dict[str, float]:
    cpu = epoch["cpu_main"] + epoch["cpu_workers"]
    return {"img_per_s": epoch["images"] / epoch["wall"], "per_core": epoch["images"] / cpu if cpu else math.inf,
            "cpu_busy": cpu / (epoch["wall"] * max(1, workers))}


def summarise(raw: dict[str, Any], settings: dict[str, Any], machine: dict[str, Any], images: dict[str, Any],
              reference: str) -> dict[str, Any]:
    """The results document: settings, machine, images, per-subject numbers, ratios, cores per GPU, targets."""
    subjects = {}
    for name, by_workers in raw["epochs"].items():
        rounds = {w: [epoch_numbers(e, int(w)) for e in epochs] for w, epochs in by_workers.items()}
        subjects[name] = {**raw["subjects"][name], "rounds": rounds,
                          "summary": {w: {k: spread([r[k] for r in rs]) for k in rs[0]} for w, rs in rounds.items()},
                          "preprocessor": raw["preprocessor"][name], "fidelity": raw["fidelity"].get(name)}
    ref = subjects.get(reference)
    for subject in subjects.values():
        subject["vs_reference"] = None if ref is None else {
            w: spread([a["per_core"] / b["per_core"] for a, b in zip(rs, ref["rounds"][w], strict=True)])
            for w, rs in subject["rounds"].items()}
        subject["cores_per_gpu"] = cores_per_gpu(subject, settings["published_rate"])
    results = {"settings": settings, "machine": machine, "images": images, "reference": reference,
               "subjects": subjects, "decode_floor": raw["decode_floor"]}
    results["targets"] = evaluate_targets(results)
    results["warnings"] = busy_warnings(results)
    return results


def single_core(subject: dict[str, Any]) -> dict[str, float] | None:
    """The ``workers = 0`` summary (one process, one core), if measured."""
    return subject["summary"].get("0")


def cores_per_gpu(subject: dict[str, Any], rate: float) -> float | None:
    """Cores the loader needs to feed ``rate`` images/s: rate / images/s per core (one process, median)."""
    one = single_core(subject)
    return None if one is None else rate / one["per_core"]["median"]


def evaluate_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """>= 2x the reference's images/s per core on one core, for every subject of the ``fast`` implementation."""
    targets = []
    for name, subject in results["subjects"].items():
        ratio = (subject["vs_reference"] or {}).get("0")
        if subject["impl"] == "fast" and ratio is not None:
            targets.append({"target": f"{name}: >= {PER_CORE_TARGET:g}x {results['reference']}'s images/s per "
                                      "core, one core", "value": ratio["median"],
                            "met": ratio["median"] >= PER_CORE_TARGET})
    return targets


def busy_warnings(results: dict[str, Any]) -> list[str]:
    busy = [s["summary"][w]["cpu_busy"]["median"] for s in results["subjects"].values() for w in s["summary"]]
    if busy and min(busy) < BUSY_WARNING:
        return [f"the processes got only {min(busy):.0%} of their cores' time during some epochs: the machine was "
                "busy, so wall-clock images/s are contaminated (per-core figures, from CPU time, less so; cache "
                "and memory-bandwidth contention still slow them). Re-run on a quiet machine."]
    return []


# --- markdown ----------------------------------------------------------------------------------------------------
def _fmt(s: dict[str, float], digits: int = 0) -> str:
    return f"{s['min']:.{digits}f} / **{s['median']:.{digits}f}** / {s['max']:.{digits}f}"


def _per_core_rows(results: dict[str, Any], workers: list[str]) -> list[list[Any]]:
    rows = []
    for name, s in results["subjects"].items():
        ratio = (s["vs_reference"] or {}).get("0")
        rows.append([name, *[_fmt(s["summary"][w]["per_core"]) for w in workers],
                     None if ratio is None else f"{ratio['median']:.2f}x"])
    return rows


def _wall_rows(results: dict[str, Any], workers: list[str]) -> list[list[Any]]:
    return [[name, *[f"{s['summary'][w]['img_per_s']['median']:.0f} ({s['summary'][w]['cpu_busy']['median']:.0%})"
                     for w in workers]] for name, s in results["subjects"].items()]


def _cost_rows(results: dict[str, Any]) -> list[list[Any]]:
    on_cpu = results["machine"]["device"].startswith("cpu")
    rows = []
    for name, s in results["subjects"].items():
        pre, one = s["preprocessor"], single_core(s)
        loader_ms = None if one is None else 1e3 / one["per_core"]["median"]
        total = None if loader_ms is None or not on_cpu else f"{loader_ms + 1e3 * pre['cpu_per_image']:.2f}"
        cores = s["cores_per_gpu"]
        rows.append([name, None if loader_ms is None else f"{loader_ms:.2f}", f"{1e3 * pre['wall_per_image']:.3f}",
                     total, None if cores is None else f"{cores:.1f}", None if cores is None else
                     f"{8 * cores:.0f}"])
    return rows


def _fidelity_rows(results: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for name, s in results["subjects"].items():
        f = s["fidelity"]
        if not f:
            continue
        scales = "; ".join(f"1/{k}: {v['images']} img, {v['mean_abs']:.2f} / {v['psnr_db']:.1f} dB"
                           for k, v in f["by_dct_scale"].items())
        rows.append([name, f"{f['mean_abs']:.3f}", f"{f['psnr_db']:.1f}", f"{100 * f['frac_above_2']:.2f}",
                     f["max_abs"], scales])
    return rows


def to_markdown(results: dict[str, Any], level: int = 1) -> str:
    """The report; ``level`` is the heading level of its title (sections one below)."""
    s, m, im = results["settings"], results["machine"], results["images"]
    h1, h2 = "#" * level, "#" * (level + 1)
    workers = [str(w) for w in s["workers"]]
    source = s["images"] or "synthetic photograph-like JPEGs, mim_zoo.synthetic.photos"
    lines = [f"{h1} Input pipeline: decode + RandomResizedCrop + flip + batch ({m['device']}, batch "
             f"{s['batch_size']})", "",
             f"{im['count']} images ({source}): mean {im['mean_width']:.0f} x {im['mean_height']:.0f} "
             f"({im['mean_megapixels']:.3f} MP), median {im['median_size'][0]:.0f} x {im['median_size'][1]:.0f}, "
             f"{im['mean_kb']:.0f} KB mean (p10-p90 {im['kb_p10_p90'][0]:.0f}-{im['kb_p10_p90'][1]:.0f} KB), "
             f"formats {im['formats']}. {m['cpu']}, {m['cpu_count']} cores; torch {m['torch']}; {s['rounds']} "
             f"interleaved rounds of one epoch per subject and worker count; load average at start "
             f"{' / '.join(f'{x:.2f}' for x in m.get('load_average') or [])} (1 / 5 / 15 min).", ""]
    lines += [f"> **warning**: {w}" for w in results["warnings"]]
    lines += ["", f"{h2} Images/s per core (images / CPU seconds of the process and its workers), min / **median** / "
              "max over rounds", "",
              markdown_table(["subject", *[f"{w} workers" for w in workers], f"per core vs {results['reference']}, "
                              "1 core"], _per_core_rows(results, workers)),
              "", f"{h2} Images/s (wall clock), median, and CPU busy", "",
              markdown_table(["subject", *[f"{w} workers" for w in workers]], _wall_rows(results, workers)),
              "", f"{h2} Cost per image and cores per GPU at {s['published_rate']:.0f} img/s per GPU", "",
              markdown_table(["subject", "loader CPU ms / img (1 core)", f"data preprocessor ms / img ({m['device']})",
                              "all CPU ms / img (preprocessor on this CPU)", "cores per GPU", "cores per 8-GPU node"],
                             _cost_rows(results))]
    floor = results["decode_floor"]
    lines += ["", f"Decoding alone (OpenCV, the same files, one core): {1e3 * floor['full_colour']:.2f} ms / img in "
              f"full colour, {1e3 * floor['eighth_grey']:.2f} ms / img at 1/8 in greyscale (about the entropy "
              "decoding, which every pipeline pays whatever it crops): no CPU pipeline decoding these files exceeds "
              f"{1 / floor['eighth_grey']:.0f} images/s per core, none decoding them in full "
              f"{1 / floor['full_colour']:.0f}."]
    fid = _fidelity_rows(results)
    if fid:
        lines += ["", f"{h2} Pixels against {results['reference']}'s, same seeds (same crop boxes and flips)", "",
                  markdown_table(["subject", "mean abs diff (grey levels)", "PSNR dB", "% pixels > 2 apart",
                                  "max", "by DCT scale: images, mean abs / PSNR"], fid)]
    lines += ["", f"{h2} Targets", ""]
    lines += [f"- {'met' if t['met'] else 'NOT met'}: {t['target']} (measured {t['value']:.2f}x)"
              for t in results["targets"]] or ["- none evaluated (needs the reference and a 0-worker run)"]
    lines += ["", f"{h2} Subjects", ""] + [f"- **{name}**: " + " -> ".join(sub["pipeline"])
                                           for name, sub in results["subjects"].items()]
    return "\n".join(lines) + "\n"


def write_reports(results: dict[str, Any], out_dir: Path, name: str) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / f"{name}.json", out_dir / f"{name}.md"
    json_path.write_text(json.dumps(results, indent=1, default=str) + "\n")
    md_path.write_text(to_markdown(results))
    return json_path, md_path
