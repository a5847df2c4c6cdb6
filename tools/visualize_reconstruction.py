"""Draw what a MIM checkpoint reconstructs: original / masked / reconstruction / reconstruction with the visible
patches pasted back, plus every other image an algorithm returns (e.g. MixMAE's mixed input and both of its
reconstructions), one row per image.

    python tools/visualize_reconstruction.py CONFIG CHECKPOINT IMAGE [IMAGE ...] --out FILE.png [--seed 0]

CHECKPOINT is a checkpoint of CONFIG (``WORK_DIR/epoch_N.pth``, or an official one converted with
``tools/convert_checkpoint.py``). Images are resized (shorter side) and centre-cropped to the encoder's input size;
masks are drawn by the config's own mask generator with ``--seed``. Rows are labelled with the file names and a
caption says what each column shows.
"""

from __future__ import annotations

import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout without installing

import torch  # noqa: E402
from mmengine.config import DictAction  # noqa: E402

from mim_zoo.engine.cli import one_line_errors, tool_parser  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = tool_parser("Draw the reconstructions of a MIM checkpoint")
    parser.add_argument("config", help="the config the checkpoint was trained with")
    parser.add_argument("checkpoint", help="checkpoint file (WORK_DIR/epoch_N.pth)")
    parser.add_argument("images", nargs="+", help="image files (MixMAE pairs them: an even number)")
    parser.add_argument("--out", required=True, help="output PNG")
    parser.add_argument("--seed", type=int, default=0, help="seed of the drawn masks")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction, default={},
                        help="override config entries, e.g. model.masking.ratio=0.9")
    return parser.parse_args(argv)


def load_model(config: object, checkpoint: str) -> torch.nn.Module:
    """Build ``config.model`` and load ``checkpoint`` strictly (a mismatch lists the keys)."""
    from mim_zoo.core.checkpoints.read import describe_state_dict_mismatch, read_checkpoint
    from mim_zoo.registry import MODELS, config_entry

    if not osp.isfile(checkpoint):
        raise FileNotFoundError(f"checkpoint {checkpoint!r} does not exist")
    with config_entry("model"):
        model = MODELS.build(config.model)
    ckpt = read_checkpoint(checkpoint)
    state = {k.removeprefix("module."): v for k, v in ckpt["state_dict"].items()}
    problem = describe_state_dict_mismatch(model.state_dict(), state)
    if problem:
        raise ValueError(f"{checkpoint} does not fit {type(model).__name__} of this config: {problem}")
    model.load_state_dict(state)
    return model.eval()


def load_images(paths: list[str], size: int) -> torch.Tensor:
    """``[N, 3, size, size]`` uint8 BGR (as mmcv loads training images): shorter side resized, centre-cropped."""
    import mmcv

    batch = []
    for path in paths:
        img = mmcv.imread(path)  # BGR, like the training pipeline
        if img is None:
            raise FileNotFoundError(f"cannot read image {path!r} (missing or not an image)")
        img = mmcv.imrescale(img, size / min(img.shape[:2]), interpolation="bicubic", backend="pillow")
        top, left = (img.shape[0] - size) // 2, (img.shape[1] - size) // 2
        batch.append(torch.from_numpy(img[top:top + size, left:left + size].copy()).permute(2, 0, 1))
    return torch.stack(batch)


def check_image_count(model: torch.nn.Module, count: int) -> None:
    """Refuse a number of images the algorithm cannot take as one batch (MixMAE pairs them)."""
    try:
        model.check_batch_size(count)
    except ValueError as err:
        raise ValueError(f"{type(model).__name__} cannot draw {count} images: {err}. Pass a number of image files "
                         "it takes") from err


def main(argv: list[str] | None = None) -> str:
    args = parse_args(argv)
    with one_line_errors(args.debug):
        from mmengine.config import Config

        from mim_zoo.engine.visualization import render_grid, visualize_batch

        cfg = Config.fromfile(args.config)
        cfg.merge_from_dict(args.cfg_options)
        model = load_model(cfg, args.checkpoint)
        check_image_count(model, len(args.images))
        size = model.encoder.grid_size[0] * model.encoder.patch_size
        images = model.data_preprocessor({"inputs": load_images(args.images, size), "data_samples": None}, False)
        panels = visualize_batch(model, images["inputs"], seed=args.seed)
        render_grid(panels, args.out, title=f"{type(model).__name__}: {osp.basename(args.checkpoint)}",
                    row_labels=[osp.basename(p) for p in args.images], notes=model.reconstruction_notes)
    print(f"wrote {args.out}")
    return args.out


if __name__ == "__main__":
    main()
