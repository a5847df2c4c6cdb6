"""Draw samples of every registered mask generator (or of the one a config uses), one row per generator.

    python tools/visualize_masks.py --out masks.png [--grid 14 14] [--num 4] [--seed 0]
    python tools/visualize_masks.py --config configs/bootmae/vitb_800e.py --out bootmae_masks.png

Without ``--config`` each generator runs with its default arguments on ``--grid`` (ViT-B/16 at 224: 14 x 14); a
generator whose defaults do not fit the grid shows its error message instead. Masked patches are dark.
"""

from __future__ import annotations

import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout without installing

from mmengine.config import Config, DictAction  # noqa: E402

import mim_zoo  # noqa: E402,F401  (registers the plugins)
from mim_zoo.registry import MASK_GENERATORS, MODELS, build  # noqa: E402
from mim_zoo.engine.visualization import mask_samples, render_masks  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Draw samples of the mask generators")
    parser.add_argument("--out", required=True, help="output PNG")
    parser.add_argument("--config", help="draw the mask generator of this config, on its encoder's grid")
    parser.add_argument("--grid", nargs=2, type=int, default=(14, 14), metavar=("H", "W"), help="token grid")
    parser.add_argument("--num", type=int, default=4, help="samples per generator")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cfg-options", nargs="+", action=DictAction, default={})
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> str:
    args = parse_args(argv)
    generators, grid = None, tuple(args.grid)
    try:
        if args.config:
            cfg = Config.fromfile(args.config)
            cfg.merge_from_dict(args.cfg_options)
            grid = tuple(build(MODELS, cfg.model.encoder).grid_size)
            masking = cfg.model.masking
            name = masking["type"] if isinstance(masking["type"], str) else masking["type"].__name__
            generators = {f"{name} ({osp.basename(args.config)})": build(MASK_GENERATORS, masking)}
        samples = mask_samples(grid, args.num, args.seed, generators)
    except (ValueError, KeyError, FileNotFoundError) as err:
        sys.exit(f"error: {err}")
    render_masks(samples, args.out)
    names = ", ".join(name.split("\n")[0] for name in samples)
    print(f"wrote {args.out} ({names} on a {grid[0]}x{grid[1]} grid)")
    return args.out


if __name__ == "__main__":
    main()
