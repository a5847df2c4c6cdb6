"""Pictures of what a MIM model learned: reconstructions, masks and loss curves, for every algorithm.

* :func:`reconstruction_panels` turns ``model.reconstruct(images, mask)`` into named image columns: original,
  masked, reconstruction, reconstruction with the visible patches pasted back, and *any other* image-shaped output
  (``[B, 3, H, W]``, e.g. MixMAE's mixed input and its two reconstructions), so a new algorithm is drawn without
  code here. :func:`reconstruction_figure` lays the columns out, one row per image labelled with its file name, and
  explains the columns in a caption (the algorithm's ``reconstruction_notes``: e.g. that visible patches carry no
  loss, hence the speckle of the raw reconstruction); :func:`render_grid` writes it as a PNG.
* :func:`mask_samples` / :func:`mask_figure` draw every registered mask generator (``tools/visualize_masks.py``),
  with a legend (which shade is masked) and a note on generators that draw one mask per batch.
* :func:`plot_loss_curve` plots the loss terms of mmengine's ``scalars.json`` logs (all runs of a work dir, so a
  resumed run is one curve); a single-term loss is drawn once, not as two identical curves.
* :class:`ReconstructionVisHook` and :class:`LossCurveHook` write ``WORK_DIR/vis/reconstruction_epoch_N.png`` and
  ``WORK_DIR/vis/loss_curve.png`` during training (and send the reconstructions to TensorBoard).
"""

from __future__ import annotations

import glob
import json
import math
import os
import os.path as osp
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from torch import Tensor

from ..core.contracts import ContractError, MaskGeneratorProtocol, check_plugin
from ..core.registry import MASK_GENERATORS, registered_names

MASK_GRAY = 0.5  # masked patches are drawn mid-gray in the "masked" column


# --- tensors to pictures -------------------------------------------------------------------------------------------
def denormalize(images: Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """``[B, 3, H, W]`` normalised RGB -> ``[B, H, W, 3]`` floats in ``[0, 1]`` (``mean``/``std`` in 0-255 units)."""
    mean_t = torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    std_t = torch.as_tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    pixels = images.detach().float().cpu() * std_t + mean_t  # [B, 3, H, W] in 0-255
    return (pixels / 255.0).clamp(0, 1).permute(0, 2, 3, 1).numpy()


def mask_to_pixels(mask: Tensor, size: tuple[int, int]) -> Tensor:
    """``[B, L]`` token mask (True = masked) -> ``[B, 1, H, W]`` float pixel mask, nearest-upsampled.

    The token grid is inferred from ``L`` and the image's aspect ratio, so masks on a coarser grid than the encoder's
    patches (MixMAE mixes on the stride-32 grid) are drawn correctly.
    """
    height, width = size
    num_tokens = mask.shape[1]
    grid_h = round(math.sqrt(num_tokens * height / width))
    grid_w = num_tokens // max(grid_h, 1)
    if grid_h * grid_w != num_tokens or height % grid_h or width % grid_w:
        raise ValueError(f"a mask of {num_tokens} tokens does not tile a {height}x{width} image")
    grid = mask.detach().float().cpu().view(-1, 1, grid_h, grid_w)
    return torch.nn.functional.interpolate(grid, size=(height, width), mode="nearest")


def reconstruction_panels(images: Tensor, outputs: Mapping[str, Tensor], mean: Sequence[float],
                          std: Sequence[float]) -> list[tuple[str, np.ndarray]]:
    """Named columns ``[(title, [B, H, W, 3] in [0, 1]), ...]`` for a reconstruction figure.

    Args:
        images: ``[B, 3, H, W]`` the normalised input.
        outputs: ``model.reconstruct(images, mask)``: ``"mask"`` ``[B, L]`` and, when the target is pixels,
            ``"reconstruction"`` ``[B, 3, H, W]``; every other ``[B, 3, H, W]`` entry becomes a column of its own.
        mean, std: the data preprocessor's normalisation (0-255 units, RGB).
    """
    original = denormalize(images, mean, std)
    size = tuple(images.shape[-2:])
    masked_px = mask_to_pixels(outputs["mask"], size).permute(0, 2, 3, 1).numpy()  # [B, H, W, 1]
    panels = [("original", original), ("masked", original * (1 - masked_px) + MASK_GRAY * masked_px)]
    if "reconstruction" in outputs:
        recon = denormalize(outputs["reconstruction"], mean, std)
        panels += [("reconstruction", recon), ("reconstruction + visible", recon * masked_px +
                                                original * (1 - masked_px))]
    for key, value in outputs.items():
        if key not in ("mask", "reconstruction") and torch.is_tensor(value) and value.shape == images.shape:
            panels.append((key.replace("_", " "), denormalize(value, mean, std)))
    return panels


def _new_figure(width: float, height: float) -> Figure:
    """A figure drawn by the Agg canvas: no pyplot, no global backend switch, safe in notebooks and threads. Its
    constrained layout keeps the title, the column headers, the row labels and the caption apart."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _finish(fig: Figure, out_file: str | None) -> np.ndarray:
    """Write ``out_file`` (PNG) if given, and return the RGB pixels ``[H, W, 3]``."""
    fig.canvas.draw()
    rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    if out_file:
        os.makedirs(osp.dirname(osp.abspath(out_file)), exist_ok=True)
        fig.savefig(out_file, dpi=100)
    return rgb


def _wrapped(lines: Sequence[str], width_inches: float, fontsize: float) -> str:
    """``lines`` wrapped to the figure's width (about 0.55 x fontsize points per character)."""
    chars = max(40, int(width_inches * 72 / (0.55 * fontsize)))
    return "\n".join(textwrap.fill(line, chars, subsequent_indent="    ") for line in lines)


def _blank(ax: Any) -> None:
    """No ticks and no frame, but keep the y label (``axis("off")`` would hide it)."""
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def reconstruction_figure(panels: Sequence[tuple[str, np.ndarray]], title: str | None = None,
                          row_labels: Sequence[str] | None = None, notes: Mapping[str, str] | None = None,
                          cell_inches: float = 1.6) -> Figure:
    """Columns ``panels`` (name, ``[N, H, W, 3]``) x one row per image.

    Args:
        panels: from :func:`reconstruction_panels`.
        title: the figure's title (algorithm, checkpoint or epoch).
        row_labels: one label per row (the image's file name).
        notes: ``{column name: what it shows}`` (the algorithm's ``reconstruction_notes``); those of the columns
            drawn form the caption, in column order.
    """
    rows, cols = panels[0][1].shape[0], len(panels)
    caption_lines = [f"{name}: {notes[name]}" for name, _ in panels if notes and name in notes]
    caption = _wrapped(caption_lines, cell_inches * cols, 7) if caption_lines else ""
    height = cell_inches * rows + 0.5 + 0.13 * caption.count("\n") + (0.2 if caption else 0)
    fig = _new_figure(cell_inches * cols, height)
    axes = fig.subplots(rows, cols, squeeze=False)
    for c, (name, pictures) in enumerate(panels):
        axes[0, c].set_title(name, fontsize=8)
        for r in range(rows):
            axes[r, c].imshow(pictures[r], interpolation="nearest")
            _blank(axes[r, c])
    for r, label in enumerate(row_labels or []):
        axes[r, 0].set_ylabel(label, fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    if caption:
        fig.supxlabel(caption, fontsize=7, ha="left", x=0.01, multialignment="left")
    return fig


def render_grid(panels: Sequence[tuple[str, np.ndarray]], out_file: str | None = None, title: str | None = None,
                row_labels: Sequence[str] | None = None, notes: Mapping[str, str] | None = None,
                cell_inches: float = 1.6) -> np.ndarray:
    """:func:`reconstruction_figure`, written as a PNG if ``out_file``; returns the RGB ``[H, W, 3]``."""
    return _finish(reconstruction_figure(panels, title, row_labels, notes, cell_inches), out_file)


# --- masks ------------------------------------------------------------------------------------------------------
def synthetic_context(keys: Sequence[str], num_samples: int, grid_size: tuple[int, int],
                      generator: torch.Generator) -> dict[str, Tensor]:
    """Stand-in ``**context`` for data-dependent generators (``context_keys``, e.g. attention-guided masking):
    per key a ``[N, L]`` map peaked at the grid centre (an object in the middle of the image), with seeded noise."""
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, grid_size[0]), torch.linspace(-1, 1, grid_size[1]), indexing="ij")
    bump = torch.exp(-(xs**2 + ys**2) / 0.3).flatten()  # [L]
    return {key: bump + 0.2 * torch.rand(num_samples, bump.numel(), generator=generator) for key in keys}


def mask_samples(grid_size: tuple[int, int] = (14, 14), num_samples: int = 4, seed: int = 0,
                 generators: Mapping[str, Any] | None = None) -> dict[str, Tensor | str]:
    """``{name: [N, H, W] bool masks}`` of every registered mask generator with its default arguments (or of
    ``generators``). Data-dependent generators get :func:`synthetic_context` (their row name says so); one that
    cannot draw on ``grid_size`` maps to its error message instead."""
    if generators is None:
        generators = {}
        for name in registered_names(MASK_GENERATORS):  # imports the generators' modules first
            cls = MASK_GENERATORS.get(name)
            try:
                generators[name] = cls()
            except (TypeError, ValueError) as err:  # needs arguments, or its defaults do not fit
                generators[name] = f"{type(err).__name__}: {err}"
    samples: dict[str, Tensor | str] = {}
    for name, gen in generators.items():
        if isinstance(gen, str):
            samples[name] = gen
            continue
        try:
            check_plugin(gen, MaskGeneratorProtocol, f"mask generator {name!r}")
        except ContractError as err:
            samples[name] = f"{type(err).__name__}: {err}"
            continue
        rng = torch.Generator().manual_seed(seed)
        keys = tuple(gen.context_keys)
        context = synthetic_context(keys, num_samples, grid_size, torch.Generator().manual_seed(seed + 1))
        label = f"{name}\n(centred {', '.join(keys)})" if keys else name
        try:
            samples[label] = gen(num_samples, grid_size, generator=rng, **context).view(num_samples, *grid_size)
        except ValueError as err:
            samples[label] = f"ValueError: {err}"
    return samples


def summary(obj: Any) -> str:
    """The first paragraph of the docstring of ``obj``'s class (or of ``obj`` if it is a class), on one line."""
    cls = obj if isinstance(obj, type) else type(obj)
    first = (cls.__doc__ or "").strip().split("\n\n")[0]
    return " ".join(first.replace("``", "").split())


def generator_notes(generators: Mapping[str, Any] | None = None) -> dict[str, str]:
    """``{name: summary}`` of ``generators`` (default: every registered mask generator), for :func:`mask_figure`."""
    if generators is None:
        generators = {name: MASK_GENERATORS.get(name) for name in registered_names(MASK_GENERATORS)}
    return {name: summary(gen) for name, gen in generators.items() if not isinstance(gen, str)}


def shares_one_mask(masks: Tensor) -> bool:
    """Whether every sample of ``[N, ...]`` masks drawn in one call is the same mask (one mask per batch)."""
    return masks.shape[0] > 1 and bool((masks == masks[:1]).all())


def mask_figure(samples: Mapping[str, Tensor | str], notes: Mapping[str, str] | None = None,
                cell_inches: float = 1.4) -> Figure:
    """One row per generator, one column per sample; a legend names the shades (masked = dark), a generator that
    gives every sample of a call the same mask says so, rows that failed show their message.

    Args:
        samples: from :func:`mask_samples`.
        notes: ``{generator name: what it does}`` (:func:`generator_notes`), the caption.
    """
    rows = len(samples)
    cols = max((s.shape[0] for s in samples.values() if torch.is_tensor(s)), default=1)
    width = cell_inches * cols + 1.6
    names = [label.split("\n")[0] for label in samples]
    caption = _wrapped([f"{n}: {notes[n]}" for n in names if notes and n in notes], width, 7)
    fig = _new_figure(width, cell_inches * rows + 0.6 + (0.13 * caption.count("\n") + 0.2 if caption else 0))
    axes = fig.subplots(rows, cols, squeeze=False)
    for r, (name, masks) in enumerate(samples.items()):
        for c in range(cols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if torch.is_tensor(masks):
                ratio = masks[c].float().mean().item()
                ax.imshow(~masks[c].numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
                ax.set_title(f"{ratio:.0%} masked", fontsize=7)
            elif c == 0:
                ax.text(0.02, 0.5, masks[:160], fontsize=6, wrap=True, va="center")
        shared = torch.is_tensor(masks) and shares_one_mask(masks)
        label = f"{name}\n(one mask per batch,\nshared by every sample)" if shared else name
        axes[r, 0].set_ylabel(label, fontsize=8)
    handles = [Patch(facecolor="black", edgecolor="gray", label="masked (hidden from the encoder)"),
               Patch(facecolor="white", edgecolor="gray", label="visible")]
    fig.legend(handles=handles, loc="outside upper center", ncols=2, fontsize=8, frameon=False)
    if caption:
        fig.supxlabel(caption, fontsize=7, ha="left", x=0.01, multialignment="left")
    return fig


def render_masks(samples: Mapping[str, Tensor | str], out_file: str | None = None,
                 notes: Mapping[str, str] | None = None, cell_inches: float = 1.4) -> np.ndarray:
    """:func:`mask_figure`, written as a PNG if ``out_file``; returns the RGB ``[H, W, 3]``."""
    return _finish(mask_figure(samples, notes, cell_inches), out_file)


# --- loss curves -------------------------------------------------------------------------------------------------
def read_scalars(work_dir: str) -> list[dict]:
    """Every ``scalars.json`` record of the runs in ``work_dir`` (oldest run first); where a resumed run repeats a
    step, its record wins."""
    by_step: dict[int, dict] = {}
    for path in sorted(glob.glob(osp.join(work_dir, "*", "vis_data", "scalars.json"))):
        with open(path) as f:
            for line in f:
                if line.strip():
                    record = json.loads(line)
                    if "step" in record:
                        by_step[int(record["step"])] = record
    return [by_step[s] for s in sorted(by_step)]


def loss_figure(records: Sequence[Mapping[str, Any]], title: str, keys: Sequence[str] | None = None) -> Figure:
    """Every key containing "loss" (or ``keys``) of ``records`` against the iteration.

    mmengine logs the total ``loss`` and each term ``loss_<term>``; with a single term the two are the same numbers,
    so only the term is drawn (labelled as the total); with several, the total is the thick black line.
    """
    keys = list(keys or sorted({k for r in records for k in r if "loss" in k}))
    terms = [k for k in keys if k != "loss"]
    labels = {k: k for k in keys}
    if "loss" in keys and len(terms) == 1:
        keys.remove("loss")
        labels[terms[0]] = f"{terms[0]} (= loss: the only term)"
    elif "loss" in keys and terms:
        labels["loss"] = "loss (the sum of the terms)"
    fig = _new_figure(6, 3.6)
    ax = fig.subplots()
    for key in keys:
        points = [(r["step"], r[key]) for r in records if key in r]
        style = dict(color="black", linewidth=2.2, zorder=3) if key == "loss" else dict(linewidth=1.2)
        ax.plot(*zip(*points, strict=True), label=labels[key], marker="." if len(points) < 50 else None, **style)
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def plot_loss_curve(work_dir: str, out_file: str, keys: Sequence[str] | None = None,
                    title: str | None = None) -> str | None:
    """Plot the logged losses of ``work_dir`` (:func:`loss_figure`) to ``out_file``; ``None`` if nothing is logged.

    Args:
        title: default ``"training loss: <work dir name>"``.
    """
    records = [r for r in read_scalars(work_dir) if any("loss" in k for k in r)]
    if not records:
        return None
    title = title or f"training loss: {osp.basename(osp.abspath(work_dir))}"
    _finish(loss_figure(records, title, keys), out_file)
    return out_file


# --- a model's reconstructions ----------------------------------------------------------------------------------
def visualize_batch(model: Any, images: Tensor, seed: int = 0, mask: Tensor | None = None) -> list:
    """Reconstruction panels of ``model`` (a ``BaseMIM``) for normalised ``images``, with a seeded mask."""
    if mask is None:
        mask = model.resolve_mask(images, None, generator=torch.Generator().manual_seed(seed))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            outputs = model.reconstruct(images, mask)
    finally:
        model.train(was_training)
    preprocessor = model.data_preprocessor
    mean = preprocessor.mean.flatten().tolist()
    std = preprocessor.std.flatten().tolist()
    return reconstruction_panels(images, outputs, mean, std)


