"""Pretrain (or train any mim_zoo config) with mmengine's Runner.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp] [--monitors] [--cfg-options k=v ...]
                          [--debug]
    bash tools/dist_train.sh CONFIG GPUS [...]        # torchrun, one machine
    bash tools/slurm_train.sh PARTITION JOB CONFIG GPUS [...]

Logs (progress, ETA, losses, lr) go to the console, to ``WORK_DIR/<timestamp>/<timestamp>.log`` and to TensorBoard
(``WORK_DIR/<timestamp>/vis_data``); the resolved config is saved as ``WORK_DIR/<config name>.py`` and checkpoints
as ``WORK_DIR/epoch_N.pth`` (plus ``last_checkpoint``). A pretraining config's ``recipe`` (batch per GPU, lr rule,
epochs, warm-up) is resolved after ``--cfg-options`` and for the processes launched, and summarised in one log line
(``mim_zoo/engine/recipe.py``): ``--cfg-options recipe.epochs=10`` (or ``train_cfg.max_epochs=10``) is a 10-epoch run.
A config that cannot train (a typo, a value a plugin refuses, missing data, a work dir that cannot be created) fails
in one line before anything is written; Ctrl-C stops with the command that continues the run.
"""

from __future__ import annotations

import argparse
import os
import os.path as osp
import shlex
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout without installing

from mmengine.config import DictAction  # noqa: E402

from mim_zoo.engine.cli import is_interrupt, one_line_errors, tool_parser  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = tool_parser("Train a mim_zoo config with mmengine's Runner")
    parser.add_argument("config", help="config file, e.g. configs/mae/vitb_800e.py")
    parser.add_argument("--work-dir", help="where logs and checkpoints go (default: work_dirs/<config name>)")
    parser.add_argument("--resume", nargs="?", const="auto", default=None,
                        help="resume from CKPT, or with no value from the latest complete checkpoint in the work dir "
                             "(a fresh start if there is none)")
    parser.add_argument("--amp", action="store_true", help="automatic mixed precision (needs a CUDA device)")
    parser.add_argument("--monitors", action="store_true",
                        help="k-NN / RankMe / feature-spread monitors on the config's labelled split, for any config "
                             "(on by default in the ImageNet ones): mim_zoo/engine/hooks/monitors.py")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction, default={},
                        help="override config entries, e.g. recipe.epochs=10 model.masking.ratio=0.6 (batch, lr, "
                             "schedule and epochs follow from the recipe: configs/*/ and mim_zoo/engine/recipe.py)")
    parser.add_argument("--launcher", choices=["none", "pytorch", "slurm", "mpi"], default="none")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ.setdefault("LOCAL_RANK", str(args.local_rank))
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with one_line_errors(args.debug):
        train(args, sys.argv[1:] if argv is None else argv)


def train(args: argparse.Namespace, argv: list[str]) -> None:
    # The training stack is imported after the arguments are parsed: --help and usage errors do not wait for it.
    import torch

    from mim_zoo.engine.config import load_config, prepare_config

    if not osp.isfile(args.config):
        raise FileNotFoundError(f"config file {args.config!r} does not exist (configs live under configs/<algorithm>/)")
    cfg = load_config(args.config, args.cfg_options)  # a pretraining recipe is resolved after the overrides
    cfg.launcher = args.launcher
    cfg.work_dir = args.work_dir or cfg.get("work_dir") or osp.join(
        "work_dirs", osp.splitext(osp.relpath(args.config, "configs"))[0].replace(os.sep, "_"))
    prepare_config(cfg, amp=args.amp, resume=args.resume)  # every check that needs no Runner: nothing written yet
    from mim_zoo.engine.hooks.monitors import configure_monitors  # the hooks import the datasets: after the checks

    configure_monitors(cfg, enable=args.monitors)
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner

    runner_type = cfg.get("runner_type", Runner)  # FlexibleRunner for the FSDP / DeepSpeed configs
    runner = (RUNNERS.get(runner_type) if isinstance(runner_type, str) else runner_type).from_cfg(cfg)
    try:
        runner.train()
    except BaseException as err:
        if not is_interrupt(err):
            raise
        raise KeyboardInterrupt(interrupted(args, cfg.work_dir, argv)) from err
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        # leave together, then close the group: a process exiting while its gloo group lives can abort
        # ("terminate called without an active exception"), and torchrun then kills the others mid-save
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


def interrupted(args: argparse.Namespace, work_dir: str, argv: list[str]) -> str:
    """What Ctrl-C during training leaves (checkpoints are written atomically: each is complete or absent) and the
    command that continues the run: this one with its options, without ``--resume [CKPT]``, plus ``--resume``."""
    from mim_zoo.engine.reliability import find_resume_checkpoint

    command, skip_value = [], False
    for token in argv:
        if skip_value or token == "--resume" or token.startswith("--resume="):
            skip_value = token == "--resume" and args.resume not in (None, "auto")  # --resume CKPT: drop CKPT too
            continue
        command.append(token)
    if args.work_dir is None:
        command += ["--work-dir", work_dir]
    resume = shlex.join(["python", "tools/train.py", *command, "--resume"])
    try:
        last = find_resume_checkpoint(work_dir, warn=False)
    except FileNotFoundError:
        last = None
    if last is None:
        return f"stopped before the first checkpoint of {work_dir}; `{resume}` starts the run again"
    return f"the last complete checkpoint is {last}; `{resume}` continues the run from it"


if __name__ == "__main__":
    main()
