"""Quickstart: pretrain MAE, BootMAE, MR-MAE and MixMAE on the embedded dataset, on a CPU, in a few minutes.

    bash tools/quickstart.sh                                  # installs the stack first, then runs this
    python tools/quickstart.py [--algos mae,bootmae,mrmae,mixmae] [--epochs 8] [--work-dir work_dirs/quickstart]

Each algorithm of the catalogue trains its tiny CPU config (``configs/<algo>/tiny_cpu.py``) on the whole embedded
training split (10 shape classes, 2,000 images of 32x32 written to ``data/generated/shapes32`` on first use) with the
overrides below, through ``tools/train.py`` (the exact command is printed). Each leaves in ``WORK_DIR/<algo>/``: the
checkpoints, the log, ``vis/loss_curve.png``, ``vis/reconstruction_epoch_N.png`` (training images, every epoch) and
``reconstructions_val.png`` (held-out images). MR-MAE's teachers here are tiny *random* ViTs written in the real
CLIP / DINO file layouts: the run shows the machinery, not what real teachers teach.
"""

from __future__ import annotations

import argparse
import os.path as osp
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]  # this checkout: its catalogue and configs
sys.path.insert(0, str(REPO))  # run from a checkout without installing

from mim_zoo.engine.catalogue import load_catalogue  # noqa: E402
from mim_zoo.engine.cli import one_line_errors, tool_parser  # noqa: E402

CATALOGUE = load_catalogue(REPO)
ALGORITHMS = {name.lower(): name for name in CATALOGUE.algorithms()}  # --algos / work-dir name -> algorithm
VAL_IMAGES = ("circle/circle_00000", "star/star_00000", "hstripes/hstripes_00000", "triangle/triangle_00000")


def overrides(epochs: int, batch: int, base_lr: float) -> list[str]:
    """The quickstart's changes to a tiny CPU config's recipe: all images, a longer schedule, a larger base lr for it
    (lr = base_lr * batch / 256; warm-up and cosine follow from the recipe, mim_zoo/engine/recipe.py)."""
    return [
        "train_dataloader.dataset.indices=None",
        f"recipe.batch_per_gpu={batch}",
        f"recipe.base_lr={base_lr}",
        f"recipe.epochs={epochs}",
        "default_hooks.logger.interval=20",
        "default_hooks.checkpoint.max_keep_ckpts=1",
    ]


def run(cmd: list[str]) -> None:
    """Run a tool; if it fails (its one-line error is printed above), stop with the command that failed."""
    print("$ " + " ".join(cmd), flush=True)
    code = subprocess.run(cmd, cwd=REPO).returncode
    if code:
        raise SystemExit(f"error: `{' '.join(cmd)}` failed (exit code {code}; its error is printed above)")


def main(argv: list[str] | None = None) -> None:
    parser = tool_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--algos", default=",".join(ALGORITHMS),
                        help="comma-separated subset of " + ",".join(ALGORITHMS))
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=32, help="even (MixMAE pairs images)")
    parser.add_argument("--base-lr", type=float, default=1.5e-3, help="lr = base_lr * batch / 256 (short schedule)")
    parser.add_argument("--work-dir", default="work_dirs/quickstart")
    args = parser.parse_args(argv)
    if args.epochs < 1:
        sys.exit("error: --epochs must be at least 1")
    algos = [a for a in args.algos.split(",") if a]
    unknown = sorted(set(algos) - set(ALGORITHMS))
    if unknown:
        sys.exit(f"error: unknown algorithm(s) {unknown}; choose from {', '.join(ALGORITHMS)}")
    with one_line_errors(args.debug):
        summary = [train_one(algo, args) for algo in algos]
    print("\nquickstart done:")
    for algo, seconds, checkpoint, picture, curve in summary:
        print(f"  {algo:8s} {seconds:5.0f} s  checkpoint {checkpoint}\n{'':17s}reconstructions {picture}\n"
              f"{'':17s}loss curve {curve}")


def train_one(algo: str, args: argparse.Namespace) -> tuple[str, float, str, str, str]:
    """Pretrain ``algo``'s tiny config and draw held-out reconstructions; (algo, seconds, checkpoint, picture,
    loss curve)."""
    debug = ["--debug"] * args.debug
    start = time.time()
    config = str(CATALOGUE.tiny_config(ALGORITHMS[algo]).relative_to(REPO))
    work_dir = osp.join(args.work_dir, algo)
    run([sys.executable, "tools/train.py", config, "--work-dir", work_dir, *debug, "--cfg-options",
         *overrides(args.epochs, args.batch_size, args.base_lr)])
    checkpoint = osp.join(work_dir, f"epoch_{args.epochs}.pth")
    images = [f"data/generated/shapes32/val/{name}.JPEG" for name in VAL_IMAGES]
    picture = osp.join(work_dir, "reconstructions_val.png")
    run([sys.executable, "tools/visualize_reconstruction.py", config, checkpoint, *images, "--out", picture, *debug])
    return algo, time.time() - start, checkpoint, picture, osp.join(work_dir, "vis", "loss_curve.png")


if __name__ == "__main__":
    main()
