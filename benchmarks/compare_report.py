"""The comparison study's table (markdown), raw results (JSON) and plots (PNG)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import numpy as np

from .common import markdown_table

HEADERS = ["method", "encoder", "params M (trainable)", "MFLOPs/img (train step)", "img/s (pretraining)",
           "final loss", "linear top-1 %", "k-NN top-1 %", "at init: linear / k-NN %"]


def mean_std(values: list[float], scale: float = 1.0, digits: int = 1) -> str:
    mean = statistics.mean(values) * scale
    std = statistics.stdev(values) * scale if len(values) > 1 else 0.0
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def method_row(name: str, m: dict[str, Any]) -> list[Any]:
    runs = m["runs"]
    label = name + (" (random teachers)" if m["random_teachers"] else "")
    return [label, m["encoder"], f"{m['params']['trainable'] / 1e6:.2f}", f"{m['flops_per_image'] / 1e6:.1f}",
            mean_std([r["img_per_s"] for r in runs], digits=0), mean_std([r["final_loss"] for r in runs], digits=3),
            mean_std([r["linear_top1"] for r in runs], 100), mean_std([r["knn_top1"] for r in runs], 100),
            _init_cell(m.get("random_init"))]


def _init_cell(init: dict | None) -> str | None:
    return None if init is None else f"{100 * init['linear_top1']:.1f} / {100 * init['knn_top1']:.1f}"


def table_rows(results: dict[str, Any]) -> list[list[Any]]:
    rows = [method_row(name, m) for name, m in results["methods"].items()]
    for name, b in results["baselines"].items():
        rows.append([f"*{name}*", None, None, None, None, None, f"{100 * b['linear_top1']:.1f}",
                     f"{100 * b['knn_top1']:.1f}", None])
    sup = results.get("supervised")
    if sup:
        rows.append([f"*supervised {sup['method']} encoder (labels; end-to-end {100 * sup['end_to_end_top1']:.1f})*",
                     None, None, None, None, None, f"{100 * sup['linear_top1']:.1f}", f"{100 * sup['knn_top1']:.1f}",
                     None])
    return rows


def to_markdown(results: dict[str, Any]) -> str:
    s, d = results["settings"], results["data"]
    return "\n".join([
        f"# Comparison study: {s['epochs']} epochs, batch {s['batch_size']}, AdamW lr {s['lr']}, seeds {s['seeds']}",
        "",
        f"Embedded shapes dataset: {d['train']} train / {d['val']} val images, {len(d['classes'])} classes. "
        f"{s['jobs']} worker process(es) x {s['threads']} thread(s); whole study {results['seconds'] / 60:.1f} min "
        f"wall, {results['cpu_seconds'] / 60:.1f} min CPU (on {s['jobs']} quiet cores: about "
        f"{results['quiet_estimate_seconds'] / 60:.1f} min); torch {results['torch']}. Mean ± std over seeds; "
        "*italic* rows are references, not methods; *at init*: the method's encoder before pretraining (seed "
        f"{s['seeds'][0]}; hollow markers in the plot).",
        "",
        markdown_table(HEADERS, table_rows(results)),
        "",
        "MFLOPs/img: matmul FLOPs of forward + backward (torch.utils.flop_counter), teachers and EMA encoders "
        "included. img/s: pretraining images per second of one worker, data loading included. Linear probe: "
        "standardised average-pooled features, L-BFGS logistic regression (L2 chosen on a held-out fifth of "
        "train); k-NN: k = 20, cosine, exp(sim / 0.07) votes. A method marked *random teachers* mimics "
        "randomly initialised teachers (its tiny config has no CLIP/DINO), so its row measures the machinery, "
        "not the method.",
    ]) + "\n"


def plot(results: dict[str, Any], out_dir: Path, name: str) -> list[Path]:
    """Loss curves (mean over seeds, smoothed over an epoch) and accuracy against pretraining compute."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = [out_dir / f"{name}_loss.png", out_dir / f"{name}_accuracy.png"]
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
    fig.savefig(paths[0], dpi=110)
    plt.close(fig)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharex=True)
    for ax, key, title in zip(axes, ("linear_top1", "knn_top1"), ("linear probe", "k-NN")):
        for method, m in results["methods"].items():
            compute = m["flops_per_image"] * statistics.mean(r["images"] for r in m["runs"]) / 1e12
            accs = [100 * r[key] for r in m["runs"]]
            bar = ax.errorbar(compute, statistics.mean(accs), yerr=statistics.pstdev(accs), fmt="o", capsize=3,
                              label=method)
            if m.get("random_init"):  # hollow marker: the same encoder at initialisation
                ax.plot(compute, 100 * m["random_init"][key], "o", mfc="none", color=bar[0].get_color())
        references = dict(results["baselines"])
        if results.get("supervised"):
            references["supervised"] = results["supervised"]
        for i, (label, b) in enumerate(references.items()):
            ax.axhline(100 * b[key], ls="--", lw=1, color=f"C{(6 + i) % 10}", label=label)
        ax.set(xlabel="pretraining compute per run (TFLOPs, matmuls)", ylabel="top-1 % (val)", title=title,
               xscale="log")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(paths[1], dpi=110)
    plt.close(fig)
    return paths


def write_reports(results: dict[str, Any], out_dir: Path, name: str) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.json", out_dir / f"{name}.md"]
    paths[0].write_text(json.dumps(results, indent=1, default=str) + "\n")
    paths[1].write_text(to_markdown(results))
    return paths + plot(results, out_dir, name)
