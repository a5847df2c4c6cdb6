"""Pictures of what a MIM model learned: reconstructions, masks and loss curves, for every algorithm.

* :func:`reconstruction_panels` turns ``model.reconstruct(images, mask)`` into named image columns: original,
  masked, reconstruction, reconstruction with the visible patches pasted back, and *any other* image-shaped output
  (``[B, 3, H, W]``, e.g. MixMAE's mixed input and its two reconstructions), so a new algorithm is drawn without
  code here. :func:`render_grid` lays the columns out and writes a PNG.
* :func:`mask_samples` / :func:`render_masks` draw every registered mask generator (``tools/visualize_masks.py``).
* :func:`plot_loss_curve` plots the loss terms of mmengine's ``scalars.json`` logs (all runs of a work dir, so a
  resumed run is one curve).
* :class:`ReconstructionVisHook` and :class:`LossCurveHook` write ``WORK_DIR/vis/reconstruction_epoch_N.png`` and
  ``WORK_DIR/vis/loss_curve.png`` during training (and send the reconstructions to TensorBoard).
"""

from __future__ import annotations

import glob
import json
import math
import os
import os.path as osp
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor

from ..core.contracts import ContractError, MaskGeneratorProtocol, check_plugin
from ..core.registry import MASK_GENERATORS

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
    """A figure drawn by the Agg canvas: no pyplot, no global backend switch, safe in notebooks and threads."""
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _finish(fig: Figure, out_file: str | None) -> np.ndarray:
    """Lay out, write ``out_file`` (PNG) if given, and return the RGB pixels ``[H, W, 3]``."""
    fig.tight_layout()
    fig.canvas.draw()
    rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    if out_file:
        os.makedirs(osp.dirname(osp.abspath(out_file)), exist_ok=True)
        fig.savefig(out_file, dpi=100)
    return rgb


def render_grid(panels: Sequence[tuple[str, np.ndarray]], out_file: str | None = None, title: str | None = None,
                cell_inches: float = 1.6) -> np.ndarray:
    """Lay out ``panels`` (columns) x samples (rows); write a PNG if ``out_file``; return the RGB ``[H, W, 3]``."""
    rows, cols = panels[0][1].shape[0], len(panels)
    fig = _new_figure(cell_inches * cols, cell_inches * rows + 0.4)
    axes = fig.subplots(rows, cols, squeeze=False)
    for c, (name, pictures) in enumerate(panels):
        axes[0, c].set_title(name, fontsize=8)
        for r in range(rows):
            axes[r, c].imshow(pictures[r], interpolation="nearest")
            axes[r, c].axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    return _finish(fig, out_file)


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
        for name, cls in sorted(MASK_GENERATORS.module_dict.items()):
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


def render_masks(samples: Mapping[str, Tensor | str], out_file: str | None = None,
                 cell_inches: float = 1.4) -> np.ndarray:
    """One row per generator, one column per sample (masked = dark); rows that failed show their message."""
    rows = len(samples)
    cols = max((s.shape[0] for s in samples.values() if torch.is_tensor(s)), default=1)
    fig = _new_figure(cell_inches * cols + 1.2, cell_inches * rows)
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
        axes[r, 0].set_ylabel(name, fontsize=8)
    return _finish(fig, out_file)


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


def plot_loss_curve(work_dir: str, out_file: str, keys: Sequence[str] | None = None) -> str | None:
    """Plot every logged key containing "loss" (or ``keys``) against the iteration; ``None`` if nothing is logged."""
    records = [r for r in read_scalars(work_dir) if any("loss" in k for k in r)]
    if not records:
        return None
    keys = keys or sorted({k for r in records for k in r if "loss" in k})
    fig = _new_figure(6, 3.5)
    ax = fig.subplots()
    for key in keys:
        points = [(r["step"], r[key]) for r in records if key in r]
        ax.plot(*zip(*points), label=key, marker="." if len(points) < 50 else None)
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _finish(fig, out_file)
    return out_file


# --- hooks ------------------------------------------------------------------------------------------------------


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


