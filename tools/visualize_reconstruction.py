"""Draw what a MIM checkpoint reconstructs: original / masked / reconstruction / reconstruction with the visible
patches pasted back, plus every other image an algorithm returns (e.g. MixMAE's mixed input and both of its
reconstructions), one row per image.

    python tools/visualize_reconstruction.py CONFIG CHECKPOINT IMAGE [IMAGE ...] --out FILE.png [--seed 0]

CHECKPOINT is a checkpoint of CONFIG (``WORK_DIR/epoch_N.pth``, or an official one converted with
``mim_zoo.core.checkpoints``). Images are resized (shorter side) and centre-cropped to the encoder's input size; masks are
drawn by the config's own mask generator with ``--seed``.
"""

from __future__ import annotations

import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout without installing

import mmcv  # noqa: E402
import torch  # noqa: E402
from mmengine.config import Config, DictAction  # noqa: E402

import mim_zoo  # noqa: E402,F401  (registers the plugins)
from mim_zoo.registry import MODELS  # noqa: E402
from mim_zoo.core.checkpoints.read import describe_state_dict_mismatch  # noqa: E402
from mim_zoo.engine.visualization import render_grid, visualize_batch  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Draw the reconstructions of a MIM checkpoint")
    parser.add_argument("config", help="the config the checkpoint was trained with")
    parser.add_argument("checkpoint", help="checkpoint file (WORK_DIR/epoch_N.pth)")
    parser.add_argument("images", nargs="+", help="image files")
    parser.add_argument("--out", required=True, help="output PNG")
    parser.add_argument("--seed", type=int, default=0, help="seed of the drawn masks")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction, default={},
                        help="override config entries, e.g. model.masking.ratio=0.9")
    return parser.parse_args(argv)


def load_model(config: Config, checkpoint: str) -> torch.nn.Module:
    """Build ``config.model`` and load ``checkpoint`` strictly (a mismatch lists the keys)."""
    if not osp.isfile(checkpoint):
        raise FileNotFoundError(f"checkpoint {checkpoint!r} does not exist")
    model = MODELS.build(config.model)
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    state = {k.removeprefix("module."): v for k, v in state.get("state_dict", state).items()}
    problem = describe_state_dict_mismatch(model.state_dict(), state)
    if problem:
        raise ValueError(f"{checkpoint} does not fit {type(model).__name__} of this config: {problem}")
    model.load_state_dict(state)
    return model.eval()


def load_images(paths: list[str], size: int) -> torch.Tensor:
    """``[N, 3, size, size]`` uint8 BGR (as mmcv loads training images): shorter side resized, centre-cropped."""
    batch = []
    for path in paths:
        img = mmcv.imread(path)  # BGR, like the training pipeline
        if img is None:
            raise FileNotFoundError(f"cannot read image {path!r} (missing or not an image)")
        img = mmcv.imrescale(img, size / min(img.shape[:2]), interpolation="bicubic", backend="pillow")
        top, left = (img.shape[0] - size) // 2, (img.shape[1] - size) // 2
        batch.append(torch.from_numpy(img[top:top + size, left:left + size].copy()).permute(2, 0, 1))
    return torch.stack(batch)


def main(argv: list[str] | None = None) -> str:
    args = parse_args(argv)
    try:
        cfg = Config.fromfile(args.config)
        cfg.merge_from_dict(args.cfg_options)
        model = load_model(cfg, args.checkpoint)
        size = model.encoder.grid_size[0] * model.encoder.patch_size
        images = model.data_preprocessor({"inputs": load_images(args.images, size), "data_samples": None}, False)
        panels = visualize_batch(model, images["inputs"], seed=args.seed)
    except (ValueError, KeyError, FileNotFoundError) as err:
        sys.exit(f"error: {err}")
    render_grid(panels, args.out, title=f"{type(model).__name__}: {osp.basename(args.checkpoint)}")
    print(f"wrote {args.out}")
    return args.out


if __name__ == "__main__":
    main()
