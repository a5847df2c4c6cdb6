"""The linear probe of every depth of a pretraining checkpoint's encoder (``tools/benchmark.py --tasks depth_probe``).

Where a method's features are best is a property of the method (MAE's last blocks specialise in reconstruction, so
its probe may peak before the end) and a common reason why published linear probes do not reproduce: the probed
layer. This task fits the same probe on every depth (:func:`mim_zoo.engine.probes.layer_outputs`: each block of a
ViT as its class token and as the mean of its patch tokens, each stage of a MixMIM Swin, and the final norm) of the
frozen encoder, on the labelled split of the task's config (``configs/benchmarks/imagenet/depth-probe_*.py``: a fixed
10% of ImageNet-1k, or the embedded shapes for the CPU twin), with the inputs normalised as the pretraining config
normalised them. It writes ``WORK_DIR/depth_probe.{md,json,png}``: a table with one row per layer and the accuracy
against depth. The row of ``tools/benchmark.py`` gets the best layer's top-1.
"""

from __future__ import annotations

import json
import os
import os.path as osp
from pathlib import Path
from typing import Any

import torch
from mmengine.config import Config
from mmpretrain.models import SelfSupDataPreprocessor
from torch import Tensor

from ..core.checkpoints.read import load_pretrained_encoder, read_checkpoint, saved_model_config
from .flops import bf16_supported
from .labelled import labelled_batches, labelled_loader
from .probes import depth_features, probe_depths

KEEP_DTYPES = {"float16": torch.float16, "float32": torch.float32}
IMAGENET_MEAN_STD = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375])


def pretraining_preprocessor(checkpoint: str) -> SelfSupDataPreprocessor:
    """The data preprocessor (mean, std, channel order) of the config saved in a pretraining checkpoint."""
    model = saved_model_config(read_checkpoint(checkpoint), checkpoint)
    saved = model.get("data_preprocessor") or {}
    return SelfSupDataPreprocessor(mean=saved.get("mean", IMAGENET_MEAN_STD["mean"]),
                                   std=saved.get("std", IMAGENET_MEAN_STD["std"]), to_rgb=saved.get("to_rgb", True))


def split_features(encoder: Any, preprocessor: SelfSupDataPreprocessor, split: dict, dtype: torch.dtype | None,
                   keep: torch.dtype, seed: int = 0) -> tuple[dict, Tensor]:
    """Every depth's features ``{Layer: [N, C]}`` and the labels ``[N]`` of one split config."""
    labels: list[Tensor] = []
    loader = labelled_loader(split, seed, scope="mmpretrain")
    feats = depth_features(encoder, labelled_batches(loader, preprocessor, labels), dtype, keep)
    return feats, torch.cat(labels).cpu()


def run_depth_probe(config: str | os.PathLike, checkpoint: str, work_dir: str, cfg_options: dict | None = None,
                    device: str | None = None) -> dict:
    """Probe every depth of ``checkpoint``'s encoder with the split of ``config`` (``cfg_options`` merged, e.g.
    ``{"probe.train.per_class": 20}``); write the table and plot to ``work_dir`` and return the record
    ``tools/benchmark.py`` stores (the best layer under ``metrics``)."""
    from .config import make_synthetic_data

    cfg = Config.fromfile(str(config))
    cfg.merge_from_dict(cfg_options or {})
    make_synthetic_data(cfg)
    probe = cfg.probe
    target = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    encoder = load_pretrained_encoder(checkpoint).encoder.to(target)
    preprocessor = pretraining_preprocessor(checkpoint).to(target)
    use_bf16 = probe.get("precision", "auto") == "bf16" or (probe.get("precision", "auto") == "auto"
                                                           and bf16_supported(target))
    dtype, keep = (torch.bfloat16 if use_bf16 else None), KEEP_DTYPES[probe.get("keep", "float32")]
    train, train_labels = split_features(encoder, preprocessor, probe.train, dtype, keep)
    val, val_labels = split_features(encoder, preprocessor, probe.val, dtype, keep)
    rows = probe_depths(train, train_labels, val, val_labels, probe.get("weight_decays", (1e-4, 1e-3, 1e-2)), target)
    best = max(rows, key=lambda r: (r["top1"], r["depth"]))
    record = {"phase": "val", "metrics": {"depth_probe/best_top1": best["top1"]}, "best": best, "layers": rows,
              "images": {"train": len(train_labels), "val": len(val_labels)}, "config": str(config)}
    os.makedirs(work_dir, exist_ok=True)
    name = osp.splitext(osp.basename(checkpoint))[0]
    Path(work_dir, "depth_probe.json").write_text(json.dumps(record, indent=1) + "\n")
    table = depth_table({name: rows})
    Path(work_dir, "depth_probe.md").write_text(table + "\n")
    # the task's log (tools/benchmark.py sends what a task prints to WORK_DIR/depth_probe/output.log)
    print(f"depth probe of {checkpoint}: {len(train_labels)} train / {len(val_labels)} val images of {config}, "
          f"features in {dtype or torch.float32}; best: {best}\n{table}")
    plot_depths({name: rows}, Path(work_dir, "depth_probe.png"), f"linear probe of every depth: {checkpoint}")
    return record


def depth_table(methods: dict[str, list[dict]]) -> str:
    """Markdown: one row per method and layer (depth, layer, pooling, top-1 %, the probe's L2 weight)."""
    lines = ["| method | depth | layer | pooling | top-1 % | probe L2 |", "|---|---|---|---|---|---|"]
    for method, rows in methods.items():
        best = max(r["top1"] for r in rows)
        for r in rows:
            top1 = f"**{r['top1']:.1f}**" if r["top1"] == best else f"{r['top1']:.1f}"
            lines.append(f"| {method} | {r['depth']} | {r['layer']} | {r['pooling']} | {top1} | "
                         f"{r['weight_decay']:g} |")
    return "\n".join(lines)


def plot_depths(methods: dict[str, list[dict]], out_file: Path, title: str) -> Path:
    """Top-1 against depth, one line per method and pooling (the last point of each: after the final norm)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, (method, rows) in enumerate(methods.items()):
        for pooling, style in (("class token", "--"), ("mean of patch tokens", "-")):
            line = sorted((r for r in rows if r["pooling"] == pooling), key=lambda r: r["depth"])
            if not line:
                continue
            ax.plot([r["depth"] for r in line], [r["top1"] for r in line], style, marker="o", color=f"C{i % 10}",
                    mfc="none", label=f"{method}, {pooling}")
    ax.set(xlabel="depth (block or stage; the last point: after the final norm)", ylabel="linear probe top-1 % (val)",
           title=title)
    ax.title.set_fontsize(9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_file, dpi=110)
    plt.close(fig)
    return out_file
