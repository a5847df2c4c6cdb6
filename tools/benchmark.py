"""Run the downstream benchmarks of one pretraining checkpoint and collect one results row.

    python tools/benchmark.py work_dirs/bootmae_vitb_800e/epoch_800.pth --tasks linear,finetune,ade20k,coco
    python tools/benchmark.py CKPT --tasks ade20k --gpus 8              # launches torchrun, 8 processes per task
    python tools/benchmark.py CKPT --tasks ade20k --gpus 8 --dry-run    # only prints the commands
    python tools/benchmark.py CKPT --tiny                               # the CPU twins (tiny encoders, toy data)
    python tools/benchmark.py CKPT --tasks depth_probe                  # the linear probe of every block / stage

Each task trains the benchmark config of the checkpoint's method (configs/benchmarks/{imagenet,ade20k,coco}; the
paper's recipe, or with --protocol common the encoder family's reference recipe for every method: MAE's for all
ViTs) with the encoder initialised from the checkpoint, in WORK_DIR/<task>/ (depth_probe trains only linear probes:
WORK_DIR/depth_probe/depth_probe.{md,json,png}). The console shows one line per task; everything the task prints
goes to WORK_DIR/<task>/output.log (--verbose: to the console too). The final evaluation's metrics go to
WORK_DIR/results.json (merged across runs) with the evidence (the commit, package versions and device of this run;
the pretraining run's config hash, commit, device, images/s, utilisation and wall time from the checkpoint; each
task's wall time; the paper's numbers for the same method and epochs), and the row (method, epochs, linear top-1,
fine-tune top-1, ADE20K mIoU, COCO box AP, mask AP, best depth-probe top-1) to WORK_DIR/results.md. The method is
the algorithm plus what a combo swaps in ("MAE+BlockMasking"), or --name. Rows of --tiny runs are labelled smoke
tests: the CPU twins train for seconds on toy data, to show that every task runs, not what a method learns.
"""

from __future__ import annotations

import argparse
import json
import os
import os.path as osp
import shlex
import subprocess
import sys
import time
from typing import TYPE_CHECKING

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))  # this checkout: its catalogue (model-index.yml), configs
sys.path.insert(0, ROOT)  # run from a checkout without installing

from mmengine.config import DictAction  # noqa: E402

from mim_zoo.engine.catalogue import TASKS  # noqa: E402
from mim_zoo.engine.cli import one_line_errors, tool_parser  # noqa: E402

if TYPE_CHECKING:
    from mim_zoo.core.checkpoints.read import PretrainedEncoder


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = tool_parser("Downstream benchmarks of a mim_zoo pretraining checkpoint")
    parser.add_argument("checkpoint", help="pretraining checkpoint, e.g. work_dirs/mae_vitb_800e/epoch_800.pth")
    parser.add_argument("--tasks", default="linear,finetune,ade20k,coco",
                        help=f"comma-separated subset of {','.join(TASKS)}")
    parser.add_argument("--work-dir", help="default: work_dirs/benchmarks/<pretraining run>/<checkpoint name>")
    parser.add_argument("--protocol", choices=("paper", "common"), default="paper",
                        help="paper: each method's published recipe; common: the encoder family's reference recipe "
                             "for every method (MAE's for all ViTs)")
    parser.add_argument("--tiny", action="store_true",
                        help="the CPU twins of the benchmark configs (tiny ViT or tiny MixMIM Swin, toy data)")
    parser.add_argument("--name", help="the method column of the row (default: the algorithm, plus the parts a "
                                       "combo swaps in, e.g. MAE+BlockMasking)")
    parser.add_argument("--gpus", type=int, default=1, help="processes per task; > 1 launches torchrun")
    parser.add_argument("--dry-run", action="store_true", help="print the commands of --gpus > 1 and stop")
    parser.add_argument("--verbose", action="store_true",
                        help="show every task's output on the console too (default: WORK_DIR/<task>/output.log)")
    parser.add_argument("--amp", action="store_true", help="automatic mixed precision (needs a CUDA device)")
    parser.add_argument("--launcher", choices=["none", "pytorch", "slurm", "mpi"], default="none")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction, default={},
                        help="override entries of every task config, e.g. train_dataloader.num_workers=4")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = sorted(set(args.tasks) - set(TASKS))
    if unknown:
        parser.error(f"unknown task(s) {', '.join(unknown)}; choose from {', '.join(TASKS)}")
    os.environ.setdefault("LOCAL_RANK", str(args.local_rank))
    return args


def default_work_dir(checkpoint: str) -> str:
    run = osp.basename(osp.dirname(osp.abspath(checkpoint)))
    return osp.join("work_dirs", "benchmarks", run, osp.splitext(osp.basename(checkpoint))[0])


def torchrun_command(args: argparse.Namespace, task: str, work_dir: str) -> list[str]:
    """This tool under torchrun for one task (each process then runs it with --launcher pytorch)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={args.gpus}", osp.abspath(__file__),
           args.checkpoint, "--tasks", task, "--work-dir", work_dir, "--protocol", args.protocol,
           "--launcher", "pytorch"]
    cmd += ["--name", args.name] if args.name else []
    cmd += ["--tiny"] * args.tiny + ["--amp"] * args.amp + ["--verbose"] * args.verbose + ["--debug"] * args.debug
    if args.cfg_options:
        cmd += ["--cfg-options"] + [f"{k}={v}" for k, v in args.cfg_options.items()]
    return cmd


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with one_line_errors(args.debug):
        run(args)


def run(args: argparse.Namespace) -> None:
    # The downstream stacks are imported after the arguments are parsed: --help and usage errors do not wait.
    from mmengine.dist import is_main_process

    from mim_zoo.core.checkpoints.read import load_pretrained_encoder
    from mim_zoo.engine.benchmark import SMOKE, evidence, markdown_table, method_label
    from mim_zoo.engine.catalogue import load_catalogue

    work_dir = args.work_dir or default_work_dir(args.checkpoint)
    results_file = osp.join(work_dir, "results.json")
    pretrained = load_pretrained_encoder(args.checkpoint)
    catalogue = load_catalogue(ROOT)
    recipes = {task: catalogue.recipe(task, pretrained.method, pretrained.canonical, args.protocol, args.tiny)
               for task in args.tasks}
    proof = evidence(pretrained, args.name or method_label(pretrained), ROOT)
    if is_main_process() and not args.dry_run:
        print(f"{args.checkpoint}: {pretrained.method}, epoch {pretrained.epoch}; {len(recipes)} task(s) in {work_dir}"
              + (f" ({SMOKE}s: the CPU twins train for seconds on toy data to show that every task runs; their "
                 "numbers do not measure the method)" if args.tiny else ""), flush=True)
    for i, (task, recipe) in enumerate(recipes.items(), 1):
        if args.gpus > 1 and args.launcher == "none" and task != "depth_probe":  # the depth probe trains no network
            cmd = torchrun_command(args, task, work_dir)
            print(shlex.join(cmd))
            if not args.dry_run:
                subprocess.run(cmd, check=True)
            continue
        if args.dry_run:
            continue
        run_one(args, i, len(recipes), task, recipe.config, work_dir, pretrained, proof)
    if is_main_process() and osp.exists(results_file) and not args.dry_run:
        with open(results_file) as f:
            print(markdown_table([json.load(f)]))
        print(f"results: {results_file} and {osp.splitext(results_file)[0]}.md")


def run_one(args: argparse.Namespace, index: int, count: int, task: str, config: str, work_dir: str,
            pretrained: PretrainedEncoder, proof: dict) -> None:
    """One task (``config``: the catalogue's path of its recipe) in this process: its output to its log, one
    progress line, its results merged."""
    from mmengine.dist import is_main_process

    from mim_zoo.engine.benchmark import SMOKE, quiet_output, run_task, task_columns, update_results

    rank = os.environ.get("RANK", "0")
    log = osp.join(work_dir, task, "output.log" if rank == "0" else f"output.rank{rank}.log")
    if is_main_process():
        print(f"[{index}/{count}] {task}{f' ({SMOKE})' if args.tiny else ''}: ", end="", flush=True)
    start = time.perf_counter()
    try:
        with quiet_output(log, args.verbose):
            record = run_task(osp.join(ROOT, config), args.checkpoint, osp.join(work_dir, task), args.launcher,
                              args.amp, args.cfg_options)
    except BaseException:
        if is_main_process() and not args.verbose:
            print(f"failed; the end of {log}:\n" + "".join(open(log).readlines()[-25:]), flush=True)
        raise
    seconds = time.perf_counter() - start
    if is_main_process():
        update_results(osp.join(work_dir, "results.json"), pretrained, task, config, record, args.name, args.tiny,
                       seconds, proof)
        scores = ", ".join(f"{k} {v:.2f}" for k, v in task_columns(task, record).items())
        print(f"{scores} in {seconds:.0f} s (log: {log})", flush=True)


if __name__ == "__main__":
    main()
