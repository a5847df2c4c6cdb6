"""Draw samples of every registered mask generator (or of the one a config uses), one row per generator.

    python tools/visualize_masks.py --out masks.png [--grid 14 14] [--num 4] [--seed 0]
    python tools/visualize_masks.py --config configs/bootmae/vitb_800e.py --out bootmae_masks.png

Without ``--config`` each generator runs with its default arguments on ``--grid`` (ViT-B/16 at 224: 14 x 14); a
generator whose defaults do not fit the grid shows its error message instead. Masked patches are dark (the
legend says so); a generator that draws one mask per batch (MixingMask) is labelled as such.
"""

from __future__ import annotations

import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout without installing

from mmengine.config import DictAction  # noqa: E402

from mim_zoo.engine.cli import one_line_errors, tool_parser  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = tool_parser("Draw samples of the mask generators")
    parser.add_argument("--out", required=True, help="output PNG")
    parser.add_argument("--config", help="draw the mask generator of this config, on its encoder's grid")
    parser.add_argument("--grid", nargs=2, type=int, default=(14, 14), metavar=("H", "W"), help="token grid")
    parser.add_argument("--num", type=int, default=4, help="samples per generator")
    parser.add_argument("--seed", type=int, default=0, help="seed of the draws")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction, default={},
                        help="override entries of --config, e.g. model.masking.ratio=0.6")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> str:
    args = parse_args(argv)
    with one_line_errors(args.debug):
        from mmengine.config import Config

        from mim_zoo.engine.visualization import generator_notes, mask_samples, render_masks
        from mim_zoo.registry import MASK_GENERATORS, MODELS, build, config_entry

        generators, grid = None, tuple(args.grid)
        if args.config:
            cfg = Config.fromfile(args.config)
            cfg.merge_from_dict(args.cfg_options)
            with config_entry("model.encoder"):
                grid = tuple(build(MODELS, cfg.model.encoder).grid_size)
            masking = cfg.model.masking
            name = masking["type"] if isinstance(masking["type"], str) else masking["type"].__name__
            with config_entry("model.masking"):
                generators = {f"{name} ({osp.basename(args.config)})": build(MASK_GENERATORS, masking)}
        samples = mask_samples(grid, args.num, args.seed, generators)
        render_masks(samples, args.out, notes=generator_notes(generators))
    names = ", ".join(name.split("\n")[0] for name in samples)
    print(f"wrote {args.out} ({names} on a {grid[0]}x{grid[1]} grid)")
    return args.out


if __name__ == "__main__":
    main()
