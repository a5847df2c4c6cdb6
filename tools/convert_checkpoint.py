"""Convert an official pretraining checkpoint into a mim_zoo checkpoint.

    python tools/convert_checkpoint.py SRC DST --from mae|bootmae|mixmim
    python tools/train.py configs/mae/vitb_800e.py --cfg-options load_from=DST     # continue training from it

The official files pickle training arguments (argparse.Namespace), so they are read with ``weights_only=False``:
convert only files you trust. The output holds ``state_dict`` (mim_zoo keys) and ``meta`` and loads with
``weights_only=True``.
"""

from __future__ import annotations

import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import torch  # noqa: E402

from mim_zoo.engine.compat import load_trusted  # noqa: E402
from mim_zoo.core.checkpoints import CONVERTERS, convert_state_dict  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("src", help="official checkpoint file")
    parser.add_argument("dst", help="output file (a mim_zoo checkpoint)")
    parser.add_argument("--from", dest="layout", required=True, choices=sorted(CONVERTERS))
    args = parser.parse_args(argv)
    if not osp.isfile(args.src):
        sys.exit(f"error: {args.src!r} does not exist")
    checkpoint = load_trusted(args.src)
    state = checkpoint.get("model", checkpoint.get("state_dict", checkpoint)) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        sys.exit(f"error: {args.src!r} holds no state dict (looked for 'model', 'state_dict' or a plain dict)")
    try:
        converted = convert_state_dict(args.layout, state)
    except (KeyError, ValueError) as err:
        sys.exit(f"error: {args.src!r} is not a {args.layout} checkpoint: {err}")
    torch.save({"state_dict": converted, "meta": {"converted_from": osp.basename(args.src), "layout": args.layout}},
               args.dst)
    print(f"wrote {len(converted)} tensors to {args.dst}")


if __name__ == "__main__":
    main()
