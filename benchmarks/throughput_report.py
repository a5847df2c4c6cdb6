"""Turning raw throughput measurements into numbers, target checks and a markdown report.

Per subject and dtype, every round gives images/s (batch * steps / wall time), median phase times, achieved
FLOP/s (FLOPs per image * images/s) and utilisation (achieved / the run's matmul peak: the best square ``torch.mm``
of all rounds, measured by the same process between the subjects; a round whose peak measurement a busy machine
slowed would otherwise inflate that round's utilisation). On the CPU a round
also gives ``cpu_busy`` = CPU time / (wall time * threads), which is ~1 on a quiet machine and drops when other
processes take the cores, and the CPU-normalised images/s (batch * steps / (CPU time / threads)), which a busy
machine distorts less. Summaries are min / median / max over rounds.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from .common import markdown_table

# Targets (issue 10): the ViT methods >= 75% of the matmul peak, MixMAE's Swin >= 70%; mim_zoo's MAE >= 1.15x each
# peer; every algorithm's step time relative to MAE at most its FLOP ratio + 10%.
UTILISATION_TARGETS = {"MixMAE": 0.70}
UTILISATION_TARGET = 0.75
PEER_RATIO_TARGET = 1.15
FLOP_RATIO_SLACK = 0.10
BUSY_WARNING = 0.9


def spread(values: list[float]) -> dict[str, float]:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def summarise_rounds(rounds: list[list[dict]], flops: int, batch: int, peak: dict[str, float], threads: int,
                     cpu: bool) -> dict[str, Any]:
    """Per-round numbers and their spread for one subject at one dtype.

    ``peak``: the run's matmul peak, ``{"flops_per_s", "cpu_flops_per_s"}`` (the latter CPU-time-normalised, CPU only).
    """
    per_round = []
    for steps in rounds:
        wall, cpu_time, images = sum(s["wall"] for s in steps), sum(s["cpu"] for s in steps), batch * len(steps)
        img_per_s = images / wall
        achieved = flops / batch * img_per_s
        entry = {"img_per_s": img_per_s, "achieved_flops_per_s": achieved,
                 "utilisation": achieved / peak["flops_per_s"],
                 "step_ms": {k: 1e3 * statistics.median(s[k] for s in steps) for k in ("forward", "backward",
                                                                                         "optimizer", "wall")}}
        if "faults" in steps[0]:
            entry["page_faults"] = statistics.median(s["faults"] for s in steps)
        if cpu and cpu_time > 0:
            cpu_img_per_s = images / (cpu_time / threads)
            entry.update(cpu_busy=cpu_time / (wall * threads), cpu_img_per_s=cpu_img_per_s)
            if peak.get("cpu_flops_per_s"):
                entry["cpu_utilisation"] = flops / batch * cpu_img_per_s / peak["cpu_flops_per_s"]
        per_round.append(entry)
    summary = {key: spread([r[key] for r in per_round]) for key in per_round[0] if key != "step_ms"}
    summary["step_ms"] = {k: statistics.median(r["step_ms"][k] for r in per_round) for k in per_round[0]["step_ms"]}
    return {"rounds": per_round, "summary": summary}


def _ratio(numerator: dict[str, Any], denominator: dict[str, Any], dtype: str, peer: bool) -> dict[str, Any]:
    """Per-round ratio of images/s (and of CPU-normalised images/s, where measured), with its spread."""
    rounds = list(zip(numerator["dtypes"][dtype]["rounds"], denominator["dtypes"][dtype]["rounds"], strict=True))
    values = [a["img_per_s"] / b["img_per_s"] for a, b in rounds]
    out = {**spread(values), "per_round": values, "peer": peer}
    if all("cpu_img_per_s" in a and "cpu_img_per_s" in b for a, b in rounds):
        out["cpu_normalised"] = spread([a["cpu_img_per_s"] / b["cpu_img_per_s"] for a, b in rounds])
    return out


def group_ratios(subjects: dict[str, Any], dtype: str) -> dict[str, Any]:
    """Within each group (an algorithm, its config variants, compiled twins and peers), per-round ratios of
    images/s: ``algorithm / peer`` (> 1: mim_zoo is faster), ``variant / algorithm`` (> 1: the variant is faster)
    and ``compiled twin / peer`` (mim_zoo with its compile switch on against the peer as its code runs)."""
    ratios = {}
    for name, subject in subjects.items():
        base = subjects.get(subject["group"])
        if base is None or name == subject["group"] or dtype not in subject["dtypes"]:
            continue
        if subject["info"].get("peer"):
            ratios[f"{base['name']} / {name}"] = _ratio(base, subject, dtype, peer=True)
            for twin in subjects.values():
                if twin["group"] == base["name"] and twin["info"].get("compile") and dtype in twin["dtypes"]:
                    ratios[f"{twin['name']} / {name}"] = _ratio(twin, subject, dtype, peer=True)
        else:
            ratios[f"{name} / {base['name']}"] = _ratio(subject, base, dtype, peer=False)
    return ratios


def flop_ratio_check(subjects: dict[str, Any], dtype: str, baseline: str = "MAE") -> dict[str, Any]:
    """For each algorithm vs ``baseline``: FLOP ratio, measured time ratio (per image) and the excess of the latter."""
    base = subjects.get(baseline)
    if base is None or dtype not in base["dtypes"]:
        return {}
    out = {}
    for name, subject in subjects.items():
        if name == baseline or name != subject["group"] or subject["info"].get("peer"):
            continue
        flop_ratio = subject["flops_per_image"][dtype] / base["flops_per_image"][dtype]
        rounds = zip(base["dtypes"][dtype]["rounds"], subject["dtypes"][dtype]["rounds"], strict=True)  # interleaved
        times = [b["img_per_s"] / s["img_per_s"] for b, s in rounds]
        time_ratio = statistics.median(times)
        out[name] = {"flop_ratio": flop_ratio, "time_ratio": spread(times), "excess": time_ratio / flop_ratio - 1,
                     "same_encoder_as_baseline": subject["info"].get("encoder") == base["info"].get("encoder")}
    return out


def summarise(raw: dict[str, Any], meta: dict[str, Any], settings: dict[str, Any], machine: dict[str, Any],
              reference: dict[str, Any]) -> dict[str, Any]:
    """The results document: settings, machine, matmul peaks, per-subject numbers, ratios, checks, targets."""
    cpu = machine["device"].startswith("cpu")
    batch, threads = settings["batch_size"], settings["threads"]
    subjects = {name: {"name": name, **m, "flops_per_image": {}, "memory": {}, "dtypes": {}}
                for name, m in meta.items()}
    peaks = {}
    for dtype, data in raw.items():
        peaks[dtype] = {"per_round": data["peaks"], **spread([p["flops_per_s"] for p in data["peaks"]])}
        run_peak = peaks[dtype]["max"]
        run_peak = {"flops_per_s": run_peak,
                    "cpu_flops_per_s": max(p.get("cpu_flops_per_s", 0.0) for p in data["peaks"])}
        for name, measured in data["subjects"].items():
            subjects[name]["flops_per_image"][dtype] = measured["flops"] / batch
            subjects[name]["memory"][dtype] = measured.get("memory")
            subjects[name]["dtypes"][dtype] = summarise_rounds(
                measured["rounds"], measured["flops"], batch, run_peak, threads, cpu)
            subjects[name]["dtypes"][dtype]["warmup_s"] = measured.get("warmup_s", [])
            if measured.get("profile"):
                subjects[name]["dtypes"][dtype]["profile"] = measured["profile"]
    results = {"settings": settings, "machine": machine, "reference": reference, "matmul_peak": peaks,
               "subjects": subjects, "ratios": {d: group_ratios(subjects, d) for d in raw},
               "flop_ratio_check": {d: flop_ratio_check(subjects, d) for d in raw}}
    results["targets"] = evaluate_targets(results)
    results["warnings"] = busy_warnings(results)
    return results


def at_reference(results: dict[str, Any]) -> bool:
    s, ref = results["settings"], results["reference"]
    return (s["device"] == ref["device"] and s["threads"] == ref["threads"] and s["batch_size"] == ref["batch_size"]
            and not s.get("tiny"))


def utilisation_target(algorithm: str) -> float:
    return UTILISATION_TARGETS.get(algorithm, UTILISATION_TARGET)


def evaluate_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, checked on the reference dtype (fp32); each says whether the setting was the reference.

    Utilisation is checked for every algorithm and its compiled twins, the peer ratio for MAE and its twins.
    """
    dtype = results["reference"]["dtype"]
    if dtype not in results["ratios"]:
        return []
    reference = at_reference(results)
    targets = []
    for label, ratio in results["ratios"][dtype].items():
        if ratio["peer"]:
            targets.append({"target": f"{label} >= {PEER_RATIO_TARGET}", "value": ratio["median"],
                            "met": ratio["median"] >= PEER_RATIO_TARGET, "reference_setting": reference})
    for name, subject in results["subjects"].items():
        if subject["info"].get("peer") or dtype not in subject["dtypes"]:
            continue
        if name == subject["group"] or subject["info"].get("compile"):
            goal = utilisation_target(subject["group"])
            value = subject["dtypes"][dtype]["summary"]["utilisation"]["median"]
            targets.append({"target": f"{name} utilisation >= {goal:.0%} of the matmul peak", "value": value,
                            "met": value >= goal, "reference_setting": reference})
    for name, check in results["flop_ratio_check"][dtype].items():
        targets.append({"target": f"{name} time ratio to MAE <= FLOP ratio {check['flop_ratio']:.2f} + 10%",
                        "value": check["excess"], "met": check["excess"] <= FLOP_RATIO_SLACK,
                        "reference_setting": reference})
    return targets


def busy_warnings(results: dict[str, Any]) -> list[str]:
    out = []
    for dtype in results["ratios"]:
        busy = [s["dtypes"][dtype]["summary"]["cpu_busy"]["median"] for s in results["subjects"].values()
                if "cpu_busy" in s["dtypes"][dtype]["summary"]]
        if busy and min(busy) < BUSY_WARNING:
            out.append(f"{dtype}: the process got only {min(busy):.0%} of {results['settings']['threads']} threads' "
                       "CPU time during some steps: the machine was busy, wall-clock numbers are contaminated "
                       "(CPU-normalised img/s are less so). Re-run on a quiet machine.")
    return out


# --- markdown ------------------------------------------------------------------------------------------------------
def _fmt_spread(s: dict[str, float], scale: float = 1.0, digits: int = 2) -> str:
    return f"{s['min'] * scale:.{digits}f} / **{s['median'] * scale:.{digits}f}** / {s['max'] * scale:.{digits}f}"


def subject_rows(results: dict[str, Any], dtype: str) -> list[list[Any]]:
    rows = []
    for name, subject in results["subjects"].items():
        numbers = subject["dtypes"].get(dtype)
        if numbers is None:
            continue
        summary, memory = numbers["summary"], subject["memory"].get(dtype) or {}
        ms = summary["step_ms"]
        rows.append([
            name, f"{subject['params']['trainable'] / 1e6:.1f} / {subject['params']['total'] / 1e6:.1f}",
            f"{subject['flops_per_image'][dtype] / 1e9:.3g}", _fmt_spread(summary["img_per_s"]),
            _fmt_spread(summary["cpu_img_per_s"]) if "cpu_img_per_s" in summary else None,
            f"{ms['forward']:.0f} / {ms['backward']:.0f} / {ms['optimizer']:.0f}",
            f"{summary['achieved_flops_per_s']['median'] / 1e9:.3g}", _fmt_utilisation(summary),
            f"{memory['peak'] / 2**20:.0f}" if memory.get("peak") else None,
        ])
    return rows


def _fmt_utilisation(summary: dict[str, Any]) -> str:
    text = f"{summary['utilisation']['median']:.0%}"
    if "cpu_utilisation" in summary:
        text += f" ({summary['cpu_utilisation']['median']:.0%})"
    return text


# Columns of the breakdown table (the JSON keeps every category, with its top ops).
BREAKDOWN_COLUMNS = ("matmul", "attention", "norms", "elementwise", "gathers/indexing", "copies/layout",
                     "fused (compiled)", "optimizer", "EMA update", "other ops", "framework")


def breakdown_rows(results: dict[str, Any], dtype: str) -> list[list[Any]]:
    """Per subject: the profiled step's wall time, the share of each category, and page faults per timed step."""
    rows = []
    for name, subject in results["subjects"].items():
        numbers = subject["dtypes"].get(dtype) or {}
        profile = numbers.get("profile")
        if not profile:
            continue
        faults = numbers["summary"].get("page_faults", {}).get("median")
        rows.append([name, f"{profile['wall_s'] * 1e3:.0f}",
                     *(f"{profile['share'].get(c, 0.0):.0%}" for c in BREAKDOWN_COLUMNS),
                     None if faults is None else f"{faults:,.0f}"])
    return rows


def to_markdown(results: dict[str, Any], level: int = 1) -> str:
    """The report; ``level`` is the heading level of its title (sections one below)."""
    s, m = results["settings"], results["machine"]
    h1, h2 = "#" * level, "#" * (level + 1)
    lines = [f"{h1} Training cost per step ({m['device']}, {s['threads']} threads, batch {s['batch_size']})", "",
             f"{m.get('gpu') or m['cpu']}; torch {m['torch']}; {s['repeats']} interleaved rounds x {s['iters']} "
             f"steps after {s['warmup']} warm-up; load average at start "
             f"{' / '.join(f'{x:.2f}' for x in m.get('load_average') or [])} (1 / 5 / 15 min); process peak RSS "
             f"{m.get('process_max_rss_mib', 0) / 1024:.1f} GiB.", ""]
    lines += [f"> **warning**: {w}" for w in results["warnings"]]
    headers = ["subject", "params M (train / all)", "GFLOPs/img", "img/s min / **med** / max", "CPU-normalised img/s",
               "fwd / bwd / opt ms", "achieved GFLOP/s", "utilisation", "peak MiB"]
    for dtype, peak in results["matmul_peak"].items():
        lines += ["", f"{h2} {dtype}: matmul peak {peak['max'] / 1e9:.1f} GFLOP/s (best of rounds; median "
                  f"{peak['median'] / 1e9:.1f})", "",
                  markdown_table(headers, subject_rows(results, dtype))]
        ratios = results["ratios"][dtype]
        if ratios:
            lines += ["", markdown_table(
                ["ratio of img/s (per round)", "min / **median** / max", "CPU-normalised min / **median** / max"],
                [[k, _fmt_spread(v), _fmt_spread(v["cpu_normalised"]) if "cpu_normalised" in v else None]
                 for k, v in ratios.items()])]
        checks = results["flop_ratio_check"][dtype]
        if checks:
            lines += ["", markdown_table(
                ["vs MAE", "FLOP ratio", "time ratio min / **med** / max", "excess over FLOP ratio"],
                [[k, f"{c['flop_ratio']:.2f}", _fmt_spread(c["time_ratio"]), f"{c['excess']:+.0%}"]
                 for k, c in checks.items()])]
        breakdown = breakdown_rows(results, dtype)
        if breakdown:
            lines += ["", f"Where a step's time goes ({dtype}; one profiled step per subject, share of its wall time; "
                      "`benchmarks/breakdown.py`):", "", markdown_table(
                          ["subject", "profiled step ms", *BREAKDOWN_COLUMNS, "page faults / step"], breakdown)]
    lines += ["", f"{h2} Targets (fp32)", ""]
    lines += [f"- {'met' if t['met'] else 'NOT met'}: {t['target']} (measured {t['value']:.3g})"
              + ("" if t["reference_setting"] else " [not the reference setting: indicative only]")
              for t in results["targets"]] or ["- none evaluated"]
    notes = sorted({n for sub in results["subjects"].values() for n in sub["info"].get("notes", [])})
    notes += [f"{name}: warm-up steps (the first compiles) took "
              f"{', '.join(f'{t:.0f}' for t in sub['dtypes'][d].get('warmup_s', []))} s at {d}"
              for name, sub in results["subjects"].items() if sub["info"].get("compile") for d in sub["dtypes"]]
    lines += ["", f"{h2} Notes", ""] + [f"- {n}" for n in notes] + [
        "- utilisation: achieved FLOP/s over the run's best matmul; in parentheses the same with both measured in "
        "CPU time (less distorted by other processes).",
        "- FLOPs: torch.utils.flop_counter over forward + backward (matmuls, convolutions, fused attention); "
        "elementwise ops, norms, optimizer and EMA updates are not counted (see benchmarks/README.md)."]
    return "\n".join(lines) + "\n"


def write_reports(results: dict[str, Any], out_dir: Path, name: str) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / f"{name}.json", out_dir / f"{name}.md"
    json_path.write_text(json.dumps(results, indent=1, default=str) + "\n")
    md_path.write_text(to_markdown(results))
    return json_path, md_path
