"""Export the encoder of a mim_zoo pretraining checkpoint for timm, mmpretrain, mmseg or mmdet.

    python tools/export.py work_dirs/mae_vitb_800e/epoch_800.pth --to timm --out mae_vitb_800e_timm.pth
    python tools/export.py CKPT --to mmseg --out CKPT_mmseg.pth

Only the encoder is rebuilt (from the config saved in the checkpoint) and loaded strictly; decoders, momentum
encoders and teachers are dropped. See mim_zoo/core/checkpoints/export.py for the layout of each target.
"""

from __future__ import annotations

import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout without installing

from mim_zoo.core.checkpoints.export import TARGETS  # noqa: E402  (the layouts; no model stack imported)
from mim_zoo.engine.cli import one_line_errors, tool_parser  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = tool_parser("Export the encoder of a mim_zoo pretraining checkpoint")
    parser.add_argument("checkpoint", help="pretraining checkpoint, e.g. work_dirs/mae_vitb_800e/epoch_800.pth, or an "
                        "official one converted by tools/convert_checkpoint.py")
    parser.add_argument("--to", required=True, choices=TARGETS, help="target library layout")
    parser.add_argument("--out", required=True, help="output file")
    args = parser.parse_args(argv)
    with one_line_errors(args.debug):
        from mim_zoo.core.checkpoints.export import export_encoder

        meta = export_encoder(args.checkpoint, args.to, args.out)
    dropped = ", ".join(meta["dropped"]) or "nothing"
    print(f"wrote the {meta['method']} encoder (epoch {meta['epoch']}) in the {args.to} layout to {args.out}; "
          f"left out: {dropped}")
    print(f"load it with: {meta['loads_with']}")


if __name__ == "__main__":
    main()
