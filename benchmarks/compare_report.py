"""The comparison study's tables (markdown), raw results (JSON) and plots (PNG), and those of an ablation."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import numpy as np

from mim_zoo.engine.depth_probe import plot_depths

from .common import markdown_table

HEADERS = ["method", "MFLOPs/img (train step)", "img/s (pretraining)", "matmul util %", "final loss, equal epochs",
           "linear top-1 %, equal epochs", "k-NN top-1 %, equal epochs", "epochs at equal compute",
           "linear top-1 %, equal compute", "k-NN top-1 %, equal compute", "at init: linear / k-NN %"]
EVIDENCE_HEADERS = ["method", "encoder", "params M (trainable)", "config hash (seed 0)", "MR-MAE teachers",
                    "paper IN-1k fine-tune / linear %"]


def mean_std(values: list[float], scale: float = 1.0, digits: int = 1) -> str:
    mean = statistics.mean(values) * scale
    std = statistics.stdev(values) * scale if len(values) > 1 else 0.0
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def label(name: str, m: dict[str, Any]) -> str:
    if m.get("teachers"):
        return f"{name} (teachers: the study's {' + '.join(m['teachers'])})"
    return name + (" (random teachers)" if m["random_teachers"] else "")


def method_row(name: str, m: dict[str, Any]) -> list[Any]:
    runs, compute = m["runs"], m.get("compute")
    util = [r["utilisation"] for r in runs if r.get("utilisation") is not None]
    row = [label(name, m), f"{m['flops_per_image'] / 1e6:.1f}", mean_std([r["img_per_s"] for r in runs], digits=0),
           f"{100 * statistics.mean(util):.1f}" if util else None, mean_std([r["final_loss"] for r in runs], digits=3),
           mean_std([r["linear_top1"] for r in runs], 100), mean_std([r["knn_top1"] for r in runs], 100)]
    if compute:
        same = " (= equal epochs)" if compute.get("same_as_epochs") else ""
        row += [f"{compute['epochs']}{same}", mean_std([r["linear_top1"] for r in compute["runs"]], 100),
                mean_std([r["knn_top1"] for r in compute["runs"]], 100)]
    else:
        row += [None, None, None]
    return row + [_init_cell(m.get("random_init"))]


def _init_cell(init: dict | None) -> str | None:
    return None if init is None else f"{100 * init['linear_top1']:.1f} / {100 * init['knn_top1']:.1f}"


def table_rows(results: dict[str, Any]) -> list[list[Any]]:
    rows = [method_row(name, m) for name, m in results["methods"].items()]
    blank = [None] * (len(HEADERS) - 4)
    for name, b in results["baselines"].items():
        rows.append([f"*{name}*", *blank[:4], f"{100 * b['linear_top1']:.1f}", f"{100 * b['knn_top1']:.1f}",
                     None, None, None, None])
    sup = results.get("supervised")
    if sup:
        rows.append([f"*supervised {sup['method']} encoder (labels; end-to-end {100 * sup['end_to_end_top1']:.1f})*",
                     *blank[:4], f"{100 * sup['linear_top1']:.1f}", f"{100 * sup['knn_top1']:.1f}", None, None, None,
                     None])
    return rows


def paper_cell(paper: list[dict]) -> str | None:
    cells = []
    for setting in paper:
        ft, linear = setting.get("finetune_top1"), setting.get("linear_top1")
        if ft is None and linear is None:
            continue
        cells.append(f"{'—' if ft is None else number(ft)} / {'—' if linear is None else number(linear)} "
                     f"({setting['epochs']} ep)")
    return "; ".join(cells) or None


def number(value: float) -> str:
    """At least one decimal, at most two: 85.0, 84.63."""
    text = f"{value:.2f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def evidence_rows(results: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for name, m in results["methods"].items():
        teachers = ", ".join(m["teachers"]) if m.get("teachers") else ("random" if m["random_teachers"] else None)
        rows.append([name, m["encoder"], f"{m['params']['trainable'] / 1e6:.2f}", m["runs"][0].get("config_hash"),
                     teachers, paper_cell(m.get("paper") or [])])
    return rows


def depth_rows(results: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """One row per method: the mean over seeds of each depth's probe, ``class token / mean of patch tokens``."""
    by_method = {name: mean_depth_rows(m) for name, m in results["methods"].items() if m["runs"][0].get("depth_probe")}
    depths = sorted({(r["depth"], r["layer"] == "final norm") for rows in by_method.values() for r in rows})
    width = max((d for d, final in depths if not final), default=0)
    headers = ["method", *(f"depth {d}" for d in range(1, width + 1)), "final norm"]
    table = []
    for name, rows in by_method.items():
        cells = {}
        for r in rows:
            key = "final" if r["layer"] == "final norm" else r["depth"]
            cells.setdefault(key, {})[r["pooling"]] = r["top1"]
        row = [f"{name} ({rows[0]['layer'].split()[0]}s)"]
        for key in [*range(1, width + 1), "final"]:
            cell = cells.get(key)
            row.append(None if cell is None else " / ".join(
                f"{cell[p]:.1f}" if p in cell else "—" for p in ("class token", "mean of patch tokens")))
        table.append(row)
    return headers, table


def mean_depth_rows(m: dict[str, Any]) -> list[dict]:
    """The depth-probe rows of a method's equal-epoch runs, top-1 averaged over seeds."""
    runs = [r["depth_probe"] for r in m["runs"]]
    return [dict(row, top1=statistics.mean(run[i]["top1"] for run in runs)) for i, row in enumerate(runs[0])]


def to_markdown(results: dict[str, Any]) -> str:
    s, d, ev = results["settings"], results["data"], results.get("evidence") or {}
    budget, view = results.get("budget"), ""
    if budget:
        what = f"{s['budget']}'s compute at {s['epochs']} epochs" if s["budget"] in results["methods"] else "as given"
        view = f" and equal compute ({budget:.3g} FLOPs of pretraining per run: {what})"
    device = ev.get("device", {})
    lines = [
        f"# Comparison study: {s['epochs']} epochs{view}, batch {s['batch_size']}, AdamW lr {s['lr']}, "
        f"seeds {s['seeds']}",
        "",
        f"Embedded shapes dataset: {d['train']} train / {d['val']} val images, {len(d['classes'])} classes. "
        f"{s['jobs']} worker process(es) x {s['threads']} thread(s); whole study {results['seconds'] / 60:.1f} min "
        f"wall, {results['cpu_seconds'] / 60:.1f} min CPU (on {s['jobs']} quiet cores: about "
        f"{results['quiet_estimate_seconds'] / 60:.1f} min); torch {results['torch']}"
        + (f", commit {str(ev.get('git_commit'))[:12]}, {device.get('name')}" if ev else "")
        + ". Mean ± std over seeds; *italic* rows are references, not methods; *at init*: the method's encoder before "
        f"pretraining (seed {s['seeds'][0]}; hollow markers in the plot).",
        "",
        markdown_table(HEADERS, table_rows(results)),
        "",
        "MFLOPs/img: matmul FLOPs of forward + backward (torch.utils.flop_counter, mim_zoo.engine.flops), teachers "
        "and EMA encoders included. img/s: pretraining images per second of one worker, data loading included; "
        "matmul util: img/s x FLOPs/img over one thread's measured matmul peak. Equal compute: every method trains "
        "for the epochs that give it the budget (rounded; within half an epoch of it, at least one), and a method at "
        "the study's epochs reuses its equal-epoch runs. Linear probe: standardised average-pooled features, L-BFGS "
        "logistic regression (L2 chosen on a held-out fifth of train); k-NN: k = 20, cosine, exp(sim / 0.07) votes. "
        + teacher_note(results),
    ]
    headers, depth = depth_rows(results)
    if depth:
        lines += ["", "**Accuracy against depth** (equal epochs, linear probe top-1 %, mean over seeds: class token / "
                  "mean of patch tokens after each block (ViT) or stage (MixMIM Swin), and after the final norm, "
                  "whose mean is the table's linear probe):", "", markdown_table(headers, depth)]
    lines += ["", "**What each row is**: the encoder, the run's config hash (mim_zoo.engine.evidence; the seed-0 run "
              "of the equal-epoch view), the teachers, and the paper's ImageNet-1k numbers for the method (from the "
              "catalogue; at full scale, for context only):", "",
              markdown_table(EVIDENCE_HEADERS, evidence_rows(results))]
    return "\n".join(lines) + "\n"


def teacher_note(results: dict[str, Any]) -> str:
    if results.get("teachers"):
        return ("MR-MAE rows mimic the study's own MAE and BootMAE encoders (seed 0, equal epochs, trained without "
                "labels on the same images; their pretraining is not charged to MR-MAE's compute, running them is).")
    return ("A method marked *random teachers* mimics randomly initialised teachers (its tiny config has no "
            "CLIP/DINO), so its row measures the machinery, not the method.")


def plot(results: dict[str, Any], out_dir: Path, name: str) -> list[Path]:
    """Loss curves, accuracy against pretraining compute (both views) and accuracy against depth."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = [out_dir / f"{name}_loss.png", out_dir / f"{name}_accuracy.png"]
    plot_losses(results, plt, paths[0])
    plot_compute(results, plt, paths[1])
    by_method = {n: mean_depth_rows(m) for n, m in results["methods"].items() if m["runs"][0].get("depth_probe")}
    if by_method:
        paths.append(plot_depths(by_method, out_dir / f"{name}_depth.png",
                                 "linear probe of every depth (equal epochs, mean over seeds)"))
    return paths


def plot_losses(results: dict[str, Any], plt: Any, path: Path) -> None:
    epochs = max(results["settings"]["epochs"], 1)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method, m in results["methods"].items():
        curve = np.mean([r["losses"] for r in m["runs"]], axis=0)
        window = max(1, len(curve) // epochs)
        smooth = np.convolve(curve, np.ones(window) / window, mode="valid")
        ax.plot((np.arange(len(smooth)) + window) / window, smooth, label=method)
    ax.set(xlabel="epoch", ylabel="training loss (mean over seeds)", yscale="log", title="Pretraining loss")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_compute(m: dict[str, Any], runs: list[dict]) -> float:
    """Pretraining TFLOPs of a run (matmuls): FLOPs per image times the images it saw."""
    return m["flops_per_image"] * statistics.mean(r["images"] for r in runs) / 1e12


def plot_compute(results: dict[str, Any], plt: Any, path: Path) -> None:
    """Top-1 against pretraining compute: a filled circle per method at equal epochs, a square at equal compute
    (joined by a line), a hollow circle for its encoder at initialisation, dashed lines for the references."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharex=True)
    for ax, key, title in zip(axes, ("linear_top1", "knn_top1"), ("linear probe", "k-NN"), strict=True):
        for i, (method, m) in enumerate(results["methods"].items()):
            colour = f"C{i % 10}"
            points = [(run_compute(m, m["runs"]), [100 * r[key] for r in m["runs"]], "o")]
            if m.get("compute") and not m["compute"].get("same_as_epochs"):
                points.append((run_compute(m, m["compute"]["runs"]), [100 * r[key] for r in m["compute"]["runs"]], "s"))
            for x, accs, marker in points:
                ax.errorbar(x, statistics.mean(accs), yerr=statistics.pstdev(accs), fmt=marker, capsize=3,
                            color=colour, label=method if marker == "o" else None)
            if len(points) == 2:
                ax.plot([p[0] for p in points], [statistics.mean(p[1]) for p in points], "-", color=colour, lw=0.8)
            if m.get("random_init"):  # hollow marker: the same encoder at initialisation
                ax.plot(points[0][0], 100 * m["random_init"][key], "o", mfc="none", color=colour)
        references = dict(results["baselines"])
        if results.get("supervised"):
            references["supervised"] = results["supervised"]
        for i, (ref, b) in enumerate(references.items()):
            ax.axhline(100 * b[key], ls="--", lw=1, color=f"C{(8 + i) % 10}", label=ref)
        if results.get("budget"):
            ax.axvline(results["budget"] / 1e12, ls=":", lw=1, color="grey", label="equal-compute budget")
        ax.set(xlabel="pretraining compute per run (TFLOPs, matmuls)", ylabel="top-1 % (val)",
               title=f"{title}: circles equal epochs, squares equal compute", xscale="log")
        ax.title.set_fontsize(9)
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_reports(results: dict[str, Any], out_dir: Path, name: str) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.json", out_dir / f"{name}.md"]
    paths[0].write_text(json.dumps(results, indent=1, default=str) + "\n")
    paths[1].write_text(to_markdown(results))
    return paths + plot(results, out_dir, name)


# --- ablations -----------------------------------------------------------------------------------------------------
ABLATION_HEADERS = ["varied", "value", "MFLOPs/img", "final loss", "linear top-1 %", "k-NN top-1 %"]


def ablation_rows(results: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for row in results["rows"]:
        runs = row["runs"]
        if row["key"] == "default":
            varied, value = "*(the config)*", ", ".join(f"{k}={v}" for k, v in results["defaults"].items())
        else:
            varied, value = row["key"], row["value"]
        rows.append([varied, value, f"{runs[0]['flops_per_image'] / 1e6:.1f}",
                     mean_std([r["final_loss"] for r in runs], digits=3),
                     mean_std([r["linear_top1"] for r in runs], 100), mean_std([r["knn_top1"] for r in runs], 100)])
    return rows


def ablation_markdown(results: dict[str, Any]) -> str:
    s = results["settings"]
    return "\n".join([
        f"# Ablation of {results['method']}: one setting at a time, {s['epochs']} epochs, seeds {s['seeds']}",
        "",
        f"`{results['config']}` as the study trains it (batch {s['batch_size']}, AdamW lr {s['lr']}), each varied "
        f"key set to each value while every other setting stays at the config's; {results['seconds'] / 60:.1f} "
        "min wall. Mean ± std over seeds; the same probes as the comparison study.",
        "",
        markdown_table(ABLATION_HEADERS, ablation_rows(results)),
    ]) + "\n"


def plot_ablation(results: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(results["defaults"])
    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 4), squeeze=False)
    default = next(r for r in results["rows"] if r["key"] == "default")
    for ax, key in zip(axes[0], keys, strict=True):
        rows = [r for r in results["rows"] if r["key"] == key]
        positions = range(len(rows))
        for metric, marker in (("linear_top1", "o-"), ("knn_top1", "s--")):
            means = [statistics.mean(100 * x[metric] for x in r["runs"]) for r in rows]
            ax.plot(positions, means, marker, label=metric.replace("_top1", ""))
            ax.axhline(statistics.mean(100 * x[metric] for x in default["runs"]), lw=0.8, ls=":", color="grey")
        ax.set_xticks(list(positions), [str(r["value"]) for r in rows])
        ax.set(xlabel=f"{key} (config: {results['defaults'][key]})", ylabel="top-1 % (val)",
               title=f"{results['method']}: {key}")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_ablation_reports(results: dict[str, Any], out_dir: Path, name: str) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.json", out_dir / f"{name}.md"]
    paths[0].write_text(json.dumps(results, indent=1, default=str) + "\n")
    paths[1].write_text(ablation_markdown(results))
    return paths + [plot_ablation(results, out_dir / f"{name}.png")]
