"""Export the encoder of a mim_zoo pretraining checkpoint for timm, mmpretrain, mmseg or mmdet.

    python tools/export.py work_dirs/mae_vitb_800e/epoch_800.pth --to timm --out mae_vitb_800e_timm.pth
    python tools/export.py CKPT --to mmseg --out CKPT_mmseg.pth

Only the encoder is rebuilt (from the config saved in the checkpoint) and loaded strictly; decoders, momentum
encoders and teachers are dropped. See mim_zoo/core/checkpoints/export.py for the layout of each target.
"""

from __future__ import annotations

import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout without installing

import mim_zoo  # noqa: E402,F401  (registers the encoders, applies the compatibility fixes)
from mim_zoo.core.checkpoints.export import TARGETS, export_encoder  # noqa: E402
from mim_zoo.core.checkpoints.read import CheckpointError  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Export the encoder of a mim_zoo pretraining checkpoint")
    parser.add_argument("checkpoint", help="pretraining checkpoint, e.g. work_dirs/mae_vitb_800e/epoch_800.pth, or an "
                        "official one converted by tools/convert_checkpoint.py")
    parser.add_argument("--to", required=True, choices=TARGETS, help="target library layout")
    parser.add_argument("--out", required=True, help="output file")
    args = parser.parse_args(argv)
    try:
        meta = export_encoder(args.checkpoint, args.to, args.out)
    except (CheckpointError, FileNotFoundError, ValueError, KeyError) as err:
        sys.exit(f"error: {err}")
    dropped = ", ".join(meta["dropped"]) or "nothing"
    print(f"wrote the {meta['method']} encoder (epoch {meta['epoch']}) in the {args.to} layout to {args.out}; "
          f"left out: {dropped}")


if __name__ == "__main__":
    main()
