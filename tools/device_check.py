"""The device check: everything mim_zoo runs on a GPU, in one call of at most 8 minutes on a single-GPU machine.

    bash tools/device_check.sh                      # on the GPU machine: installs .whl/, then runs this on CUDA
    bash tools/device_check.sh --cpu                # its CPU twin (CI): the same steps on the CPU, smallest settings
    bash tools/device_check.sh --steps compile_BootMAE,fsdp     # some steps again (a rerun in the same lease)

Steps, in order (estimated seconds on an H200 machine / timeout; a step never gets more than what is left of
``--budget``, and one that would get less than ``MIN_STEP_S`` is skipped, so a hang costs its timeout only):

=================== ======== ======= ========================================================================
step                estimate timeout what
=================== ======== ======= ========================================================================
env                 20       60      versions, GPU, native bf16, mmcv ops backend (CUDA kernels?), imports
                                     (mmpretrain beside the image's transformers), the SDPA kernel each dtype
                                     gets at ViT-B's attention shape
tests               30       90      ``tests/test_devices.py`` on the device (masks, targets, losses, grads,
                                     autocast dtypes, mmcv ops, nvjpeg) and ``tests/test_compat.py`` (numpy 2)
train_fp32          35       90      every tiny config and combo through ``tools/train.py``, one process
train_bf16          35       90      the same with ``--amp`` and ``optim_wrapper.dtype=bfloat16``
downstream_vit      40       100     ``tools/benchmark.py MAE --tiny --tasks ade20k,coco`` (mmseg, mmdet)
throughput          60       150     ``benchmarks/throughput.py`` at paper size, bf16, batch 128: the four
                                     algorithms, MR-MAE's bf16 teachers, mmpretrain's and the official MAE
compile_<algo>      60-90    100-150 throughput with ``--compile``, one process per algorithm (MAE with its
                                     peers), so a slow compile costs its own step only
--- the extras, in what the budget leaves ---------------------------------------------------------------------
pipeline            35       90      ``benchmarks/pipeline.py``: mmpretrain, fast and nvjpeg pipelines
fsdp                30       90      a tiny MAE and BootMAE with the FSDP strategy base, torchrun on 1 GPU
train_fp16          35       90      the tiny configs with ``--amp`` (fp16, loss scaling)
downstream_mixmim   40       100     the tiny MixMAE checkpoint through the MixMIM ADE20K and COCO recipes
=================== ======== ======= ========================================================================

The CPU twin (``--device cpu``) runs the same commands with the smallest settings: one algorithm and one combo
(``TWIN_RUNS``), ``--tiny`` throughput without Inductor (``TORCH_COMPILE_DISABLE``), each timeout
``TWIN_TIMEOUT_SCALE`` times the GPU's; it skips what needs CUDA (``--amp``, FSDP) and downstream_mixmim
(downstream_vit's command). tests/test_device_check.py runs it.

The estimates: the arithmetic is small against the machine. A tiny run is 8 steps of a 64-d model (microseconds
of GPU work per step); its seconds are Python, hooks and the process's imports. The paper-size throughput step
times, per subject, 1 FLOP-counting, 2 warm-up, 3 x 5 timed and 1 memory step at 128 images: with 59 (MAE), 94
(BootMAE), 129 (MR-MAE) and 114 (MixMAE) GFLOPs per image that is 19 x 128 x ~700 GFLOP ~ 1.7 PFLOP over its 7
subjects, ~2 s at 790 TFLOP/s and ~5 s at a realistic 40%; building the models, random teacher files and CUDA
start-up take the rest. ``torch.compile`` is the unknown: its first compile of a ViT-B training step is tens of
seconds, so the compile steps come after every eager step and may not all fit: a skipped one says so in the
summary, and ``--steps compile_MixMAE,...`` runs it again in the same lease (the rest keep their outcome).

Output (``--out``, default ``$OUT`` where the device tool runs it): ``summary.md`` (the tables printed last),
``summary.json`` (every step's status, seconds, limit and results) and ``logs.tar.gz`` (every log and result file;
no checkpoints): three files, one folder deep, as the device tool returns them. Exit status 0 when every step that
ran passed.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import time
import traceback
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]  # this checkout: its catalogue and configs
sys.path.insert(0, str(REPO))  # run from a checkout without installing

MIN_STEP_S = 20.0  # a step with less time than this left is skipped, not started
PACKING_S = 10.0  # kept back from the budget for the summary and the archive
COMPILE_GROUPS = ("MAE", "BootMAE", "MRMAE", "MixMAE")  # one compile step each; MAE's includes its peers
TWIN_RUNS = ("mae", "mae_blockmask")  # the CPU twin trains one algorithm and one combo: the command, not the catalogue
TWIN_TIMEOUT_SCALE = 4.0  # the twin's step timeouts, over the GPU machine's


@dataclasses.dataclass
class Step:
    """One step: a command with its own process and time limit.

    Attributes:
        name: as ``--steps`` names it.
        argv: the command (``sys.executable`` first, run from the repository root), or what makes it when the step
            starts (from files earlier steps wrote).
        estimate: expected seconds on the GPU machine (the CPU twin's are not estimated).
        timeout: seconds at most (less when the budget has less left).
        skip: why it does not run in this mode, or ``None``.
        needs: files earlier steps must have written.
        env: extra environment variables.
        result: reads the step's outputs afterwards: ``(one-line result, data for summary.json)``.
    """

    name: str
    argv: list[str] | Callable[[], list[str]]
    estimate: float
    timeout: float
    skip: str | None = None
    needs: list[Path] = dataclasses.field(default_factory=list)
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    result: Callable[[], tuple[str, Any]] | None = None


@dataclasses.dataclass
class Outcome:
    name: str
    status: str  # ok, failed, timeout, skipped
    seconds: float
    limit: float | None
    result: str
    data: Any = None


# --- the plan -------------------------------------------------------------------------------------------------------
def tiny_configs() -> list[Path]:
    from mim_zoo.engine.catalogue import load_catalogue

    return load_catalogue(REPO).configs(scale="tiny", combos=True)


def run_name(config: Path) -> str:
    """``configs/mae/tiny_cpu.py`` -> ``mae``; ``configs/combos/mae_blockmask/tiny_cpu.py`` -> ``mae_blockmask``."""
    return config.parent.name


def plan(args: argparse.Namespace, work: Path) -> list[Step]:
    """Every step of this mode, in order (see the module docstring)."""
    py, gpu = sys.executable, args.device == "cuda"
    me = str(Path(__file__).resolve())
    configs = [str(p) for p in tiny_configs() if gpu or run_name(p) in TWIN_RUNS]
    twin = None if gpu else "CPU twin: --amp needs CUDA"
    steps = [
        Step("env", [py, me, "env", "--out", str(work / "env.json")], 20, 60, result=lambda: env_result(work)),
        Step("tests", [py, "-m", "pytest", "tests/test_devices.py", "tests/test_compat.py", "-q", "-p",
                       "no:cacheprovider", "-m", "not slow",
                       "-k", "not paper_size" if gpu else "every_mask_generator or numpy_arrays"], 30, 90,
             result=lambda: pytest_result(work / "logs" / "tests.log")),
    ]
    for precision in ("fp32", "bf16"):
        steps.append(train_step(precision, configs, work, args, None if precision == "fp32" else twin))
    steps.append(downstream_step("downstream_vit", work / "train" / "fp32" / "mae", work, ["ade20k", "coco"]))
    steps.append(throughput_step("throughput", work, args, compile_group=None))
    steps += [throughput_step(f"compile_{group}", work, args, compile_group=group) for group in COMPILE_GROUPS]
    # the extras, run when the budget leaves time for them
    steps.append(pipeline_step(work, args))
    steps.append(fsdp_step(work, args, configs))
    steps.append(train_step("fp16", configs, work, args, twin))
    steps.append(downstream_step("downstream_mixmim", work / "train" / "fp32" / "mixmae", work, ["ade20k", "coco"],
                                 skip=None if gpu else "CPU twin: downstream_vit's command with another checkpoint"))
    if not gpu:  # the CPU is 10-100x slower per step: the twin checks the commands, not the GPU's estimates
        for step in steps:
            step.timeout *= TWIN_TIMEOUT_SCALE
    return steps


def train_step(precision: str, configs: list[str], work: Path, args: argparse.Namespace,
               skip: str | None) -> Step:
    out = work / "train" / precision
    argv = [sys.executable, str(Path(__file__).resolve()), "train", "--precision", precision, "--work-dir", str(out)]
    argv += [] if args.device == "cuda" else ["--epochs", "1"]
    return Step(f"train_{precision}", argv + configs, 35, 90, skip=skip, result=lambda: train_result(out))


def downstream_step(name: str, run: Path, work: Path, tasks: list[str], skip: str | None = None) -> Step:
    """The tiny downstream runs from the checkpoint a training step left (mmengine's ``last_checkpoint`` names it)."""
    out = work / "downstream" / name

    def argv() -> list[str]:
        checkpoint = (run / "last_checkpoint").read_text().strip()
        return [sys.executable, "tools/benchmark.py", checkpoint, "--tiny", "--tasks", ",".join(tasks),
                "--work-dir", str(out)]

    return Step(name, argv, 40, 100, skip=skip, needs=[run / "last_checkpoint"], result=lambda: downstream_result(out))


def official_mae(args: argparse.Namespace) -> list[str]:
    return ["--official-mae", args.official_mae] if args.official_mae else []


def throughput_step(name: str, work: Path, args: argparse.Namespace, compile_group: str | None) -> Step:
    out = work / "throughput"
    gpu = args.device == "cuda"
    argv = [sys.executable, "-m", "benchmarks.throughput", "--device", args.device, "--out-dir", str(out),
            "--name", name]
    argv += (["--dtypes", "bf16", "--batch-size", "128", "--warmup", "2", "--iters", "5", "--repeats", "3"] if gpu
             else ["--tiny", "--dtypes", "fp32,bf16", "--batch-size", "4", "--warmup", "0", "--iters", "1",
                   "--repeats", "1"])
    env: dict[str, str] = {}
    estimate, timeout = 60, 150
    if compile_group is None:
        argv += official_mae(args)
    else:
        peers = ["--peers", "mmpretrain", *official_mae(args)] if compile_group == "MAE" else ["--peers", ""]
        argv += ["--compile", "--algos", compile_group, *peers, "--no-auto-variants", "--no-memory"]
        estimate, timeout = (90, 150) if compile_group == "MAE" else (60, 100)
        if not gpu:  # Inductor takes minutes per model on 2 cores: the twin checks the command, not the compiler
            env["TORCH_COMPILE_DISABLE"] = "1"
    return Step(name, argv, estimate, timeout, env=env, result=lambda: throughput_result(out / f"{name}.json"))


def pipeline_step(work: Path, args: argparse.Namespace) -> Step:
    out = work / "pipeline"
    argv = [sys.executable, "-m", "benchmarks.pipeline", "--device", args.device, "--out-dir", str(out),
            "--name", "pipeline", "--subjects", "mmpretrain", "fast", "nvjpeg"]
    argv += (["--num-images", "128", "--workers", "0,8", "--rounds", "2", "--fidelity-images", "16"]
             if args.device == "cuda" else
             ["--num-images", "8", "--max-side", "256", "--workers", "0", "--rounds", "1", "--fidelity-images", "4"])
    return Step("pipeline", argv, 35, 90, result=lambda: pipeline_result(out / "pipeline.json"))


def fsdp_step(work: Path, args: argparse.Namespace, configs: list[str]) -> Step:
    out = work / "fsdp"
    chosen = [c for c in configs if run_name(Path(c)) in ("mae", "bootmae")]
    argv = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "1", str(Path(__file__).resolve()),
            "fsdp", "--work-dir", str(out), *chosen]
    skip = None if args.device == "cuda" else "CPU twin: FSDP places its shards on CUDA GPUs"
    return Step("fsdp", argv, 30, 90, skip=skip, result=lambda: train_result(out))


# --- running the steps ----------------------------------------------------------------------------------------------
def run_steps(steps: list[Step], work: Path, budget: float, only: set[str] | None) -> list[Outcome]:
    deadline = time.monotonic() + budget - PACKING_S
    outcomes = []
    for step in steps:
        if only is not None and step.name not in only:
            continue
        outcome = run_step(step, work, deadline)
        outcomes.append(outcome)
        limit = f" (limit {outcome.limit:.0f} s)" if outcome.limit else ""
        print(f"[device_check] {step.name}: {outcome.status} in {outcome.seconds:.0f} s{limit}: {outcome.result}",
              flush=True)
    return outcomes


def run_step(step: Step, work: Path, deadline: float) -> Outcome:
    if step.skip:
        return Outcome(step.name, "skipped", 0.0, None, step.skip)
    missing = [str(p) for p in step.needs if not p.exists()]
    if missing:
        return Outcome(step.name, "skipped", 0.0, None, f"needs {', '.join(missing)} (an earlier step failed)")
    limit = min(step.timeout, deadline - time.monotonic())
    if limit < MIN_STEP_S:
        return Outcome(step.name, "skipped", 0.0, None, f"out of budget ({max(limit, 0):.0f} s left)")
    argv = step.argv() if callable(step.argv) else step.argv
    log = work / "logs" / f"{step.name}.log"
    start = time.monotonic()
    status = run_logged(argv, log, limit, step.env)
    seconds = time.monotonic() - start
    result, data = "", None
    if step.result is not None:
        try:
            result, data = step.result()
        except (OSError, ValueError, KeyError, IndexError, TypeError) as err:
            result = f"no result ({type(err).__name__}: {err})"
            status = "failed" if status == "ok" else status
    if status != "ok":
        result = f"{result}; log: {last_line(log)}" if result else f"log: {last_line(log)}"
    return Outcome(step.name, status, seconds, limit, result, data)


def run_logged(argv: list[str], log: Path, limit: float, extra_env: dict[str, str]) -> str:
    """Run ``argv`` from the repository root, stdout and stderr to ``log``; ``ok``, ``failed`` or ``timeout`` (the
    whole process group is killed: torchrun's and DataLoader workers with it)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "MIM_ZOO_ROOT": str(REPO), **extra_env,
           "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
    with open(log, "w") as out:
        out.write(f"$ {' '.join(argv)}\n")
        out.flush()
        proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            return "ok" if proc.wait(timeout=limit) == 0 else "failed"
        except subprocess.TimeoutExpired:
            for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, None)):
                os.killpg(proc.pid, sig)
                try:
                    proc.wait(timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
            out.write(f"\n[device_check] killed after {limit:.0f} s\n")
            return "timeout"


def last_line(log: Path) -> str:
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()] \
        if log.exists() else []
    return lines[-1][:200] if lines else "(empty)"


# --- step: env ------------------------------------------------------------------------------------------------------
PACKAGES = ("torch", "torchvision", "timm", "numpy", "mmengine", "mmcv", "mmpretrain", "mmsegmentation", "mmdet",
            "pycocotools", "shapely", "setuptools", "transformers", "opencv-python-headless", "opencv-python")
IMPORTS = ("mmcv.ops", "mmpretrain.models", "mmseg.models", "mmdet.models", "pycocotools.coco", "shapely.geometry",
           "ftfy", "pkg_resources", "distutils")  # the last two: mmseg::/mmdet:: configs, mmengine's collect_env


def environment() -> dict[str, Any]:
    """What the machine has and what mim_zoo makes of it (``env.json``)."""
    import importlib
    import importlib.metadata as metadata
    import platform

    import timm.layers
    import torch

    import mim_zoo  # noqa: F401  (the stack check and the compatibility fixes, as every tool)
    from mim_zoo.engine import env

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    imports = {}
    for module in IMPORTS:
        try:
            importlib.import_module(module)
            imports[module] = "ok"
        except Exception as err:  # noqa: BLE001  (reported, the step fails)
            imports[module] = f"{type(err).__name__}: {err}"
    device = "cuda" if torch.cuda.is_available() else "cpu"
    report = {"python": platform.python_version(), "packages": versions, "imports": imports,
              "device": dataclasses.asdict(env.device_support()), "timm_fused_attn": bool(timm.layers.use_fused_attn()),
              "mmcv_ops": {"backend": env.mmcv_ops_backend(), "cuda_kernels": env.mmcv_ops_have_cuda_kernels()},
              "sdpa": sdpa_kernels(device)}
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        report["cuda"] = {"name": props.name, "capability": f"{props.major}.{props.minor}",
                          "memory_gib": round(props.total_memory / 2**30, 1),
                          "multiprocessors": props.multi_processor_count, "torch_cuda": torch.version.cuda,
                          "arch_list": torch.cuda.get_arch_list()}
    return report


def sdpa_kernels(device: str) -> dict[str, str]:
    """The kernel ``F.scaled_dot_product_attention`` dispatches to at ViT-B/16's attention shape (8 images, 12 heads,
    197 tokens of 64 channels), per dtype: the aten attention ops the profiler records."""
    import torch
    import torch.nn.functional as F
    from torch.profiler import ProfilerActivity, profile

    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    dtypes |= {"fp16": torch.float16} if device == "cuda" else {}
    kernels = {}
    for name, dtype in dtypes.items():
        q, k, v = (torch.randn(8, 12, 197, 64, device=device, dtype=dtype) for _ in range(3))
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            F.scaled_dot_product_attention(q, k, v)
        ops = {e.key.removeprefix("aten::") for e in prof.key_averages()
               if "attention" in e.key and e.key != "aten::scaled_dot_product_attention"}
        kernels[name] = ", ".join(sorted(ops)) or "math (unfused)"
    return kernels


def env_command(out: Path) -> int:
    report = environment()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    broken = {m: e for m, e in report["imports"].items() if e != "ok"}
    if broken:
        print(f"[device_check] imports that fail: {broken}", file=sys.stderr)
    return int(bool(broken))


# --- steps: train_<precision>, fsdp (in one process: the imports once, each run its own Runner) ---------------------
PRECISIONS = {"fp32": ([], {}), "bf16": (["--amp"], {"optim_wrapper.dtype": "bfloat16"}), "fp16": (["--amp"], {})}


def load_tool(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"mim_zoo_tool_{name}", REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def train_configs(configs: list[Path], precision: str, work_dir: Path, epochs: int | None, fsdp: bool) -> int:
    """Train each config as ``tools/train.py`` does (its ``main``, or FlexibleRunner with the FSDP strategy base),
    one JSON line per run in ``WORK_DIR/results.jsonl``; exit status 1 if any failed."""
    train = load_tool("train")
    work_dir.mkdir(parents=True, exist_ok=True)
    results = work_dir / "results.jsonl"
    results.unlink(missing_ok=True)
    failed = 0
    for config in configs:
        name, run_dir = run_name(config), work_dir / run_name(config)
        options = {"experiment_name": f"device_check_{precision}{'_fsdp' * fsdp}_{name}", **PRECISIONS[precision][1]}
        options |= {"train_cfg.max_epochs": epochs} if epochs else {}
        argv = [str(config), "--work-dir", str(run_dir), *PRECISIONS[precision][0], "--cfg-options",
                *(f"{key}={value}" for key, value in options.items())]
        run = partial(fsdp_run, config, run_dir, options) if fsdp else partial(train.main, argv)
        record = train_one(name, config, precision, run_dir, run)
        with open(results, "a") as f:
            f.write(json.dumps(record) + "\n")
        print(f"[device_check] {precision}{' fsdp' * fsdp} {name}: {record['status']} in {record['seconds']:.1f} s, "
              f"loss {record.get('first_loss')} -> {record.get('last_loss')} {record['detail'][-300:]}", flush=True)
        failed += record["status"] != "ok"
    return int(failed > 0)


def train_one(name: str, config: Path, precision: str, run_dir: Path, run: Callable[[], None]) -> dict[str, Any]:
    """One training run: status, seconds, the logged losses, the precision it trained in, peak GPU memory."""
    import math

    import torch
    from mmengine.config import Config

    from mim_zoo.engine.visualization import read_scalars

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    start, status, detail = time.monotonic(), "ok", ""
    try:
        run()
    except SystemExit as exit_:  # tools/train.py's one-line errors
        status, detail = "failed", str(exit_)
    except Exception:  # noqa: BLE001  (recorded; the next config still runs)
        status, detail = "failed", traceback.format_exc()[-1500:]
    record: dict[str, Any] = {"run": name, "config": str(config.relative_to(REPO)), "precision": precision,
                              "status": status, "seconds": round(time.monotonic() - start, 1), "detail": detail}
    losses = [r["loss"] for r in read_scalars(str(run_dir)) if "loss" in r]
    if losses:
        record.update(iterations=len(losses), first_loss=round(losses[0], 4), last_loss=round(losses[-1], 4))
    if status == "ok" and not (losses and all(math.isfinite(v) for v in losses)):
        record.update(status="failed", detail=f"losses logged: {losses}")
    dumped = sorted(run_dir.glob("*.py"))  # the resolved config the run saved: what it trained with
    if dumped:
        optim = Config.fromfile(str(dumped[0])).optim_wrapper
        record["optim_wrapper"] = f"{optim.get('type')} {optim.get('dtype') or ''}".strip()
    if torch.cuda.is_available():
        record["peak_memory_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return record


def fsdp_run(config: Path, run_dir: Path, options: dict[str, Any]) -> None:
    """``config`` with ``configs/_base_/strategies/fsdp.py``'s runner and strategy, as ``tools/train.py`` trains
    ``configs/mae/vitl_800e_fsdp.py`` (launched by torchrun)."""
    from mmengine.config import Config

    from mim_zoo.engine.config import prepare_config

    base = Config.fromfile(str(REPO / "configs" / "_base_" / "strategies" / "fsdp.py"))
    cfg = Config.fromfile(str(config))
    cfg.merge_from_dict(options)
    cfg.runner_type, cfg.strategy = base.runner_type, base.strategy
    cfg.launcher, cfg.work_dir = "pytorch", str(run_dir)
    prepare_config(cfg)
    cfg.runner_type.from_cfg(cfg).train()


# --- reading the results --------------------------------------------------------------------------------------------
def env_result(work: Path) -> tuple[str, Any]:
    report = json.loads((work / "env.json").read_text())
    device, packages = report["device"], report["packages"]
    ops = report["mmcv_ops"]
    line = (f"{device['name']}; torch {packages['torch']}, Python {report['python']}, numpy {packages['numpy']}; "
            f"native bf16: {device['native_bf16']}; mmcv ops: {ops['backend']} (CUDA kernels: {ops['cuda_kernels']}); "
            f"SDPA bf16: {report['sdpa'].get('bf16')}")
    return line, report


def pytest_result(log: Path) -> tuple[str, Any]:
    lines = [line for line in log.read_text(errors="replace").splitlines() if re.search(r"\d+ (passed|failed)", line)]
    if not lines:
        raise ValueError("pytest printed no result line")
    summary = re.sub(r"[=\s]+$|^[=\s]+", "", lines[-1])
    return summary, {"summary": summary}


def train_result(work_dir: Path) -> tuple[str, Any]:
    records = [json.loads(line) for line in (work_dir / "results.jsonl").read_text().splitlines() if line]
    ok = [r for r in records if r["status"] == "ok"]
    bad = [f"{r['run']}: {r['detail'][-120:]}" for r in records if r["status"] != "ok"]
    line = f"{len(ok)}/{len(records)} runs ok" + (f"; failed: {'; '.join(bad)}" if bad else "")
    return line, records


def downstream_result(work_dir: Path) -> tuple[str, Any]:
    from mim_zoo.engine.benchmark import results_row  # the metric columns of tools/benchmark.py's results file

    row = results_row(json.loads((work_dir / "results.json").read_text()))
    columns = {k: v for k, v in row.items() if k not in ("method", "epochs") and v is not None}
    return ", ".join(f"{k} {v}" for k, v in columns.items()), columns


def throughput_result(path: Path) -> tuple[str, Any]:
    report = json.loads(path.read_text())
    rows = {}
    for name, subject in report["subjects"].items():
        for dtype, measured in subject["dtypes"].items():
            summary = measured["summary"]
            memory = (subject.get("memory") or {}).get(dtype) or {}
            rows[f"{name} {dtype}"] = {
                "gflops_per_image": round(subject["flops_per_image"][dtype] / 1e9, 2),
                "img_per_s": round(summary["img_per_s"]["median"], 1),
                "utilisation": round(summary["utilisation"]["median"], 3),
                "peak_mib": round(memory["peak"] / 2**20) if memory.get("peak") else None,
                "compiled": bool(subject["info"].get("compiled") or subject["info"].get("compile")),
                "eager": f"{eager_name(name)} {dtype}"}
    line = ", ".join(f"{name} {row['img_per_s']} img/s" for name, row in rows.items())
    return line, rows


def eager_name(name: str) -> str:
    """The subject a compiled twin of ``benchmarks/throughput.py --compile`` twins: ``MAE [compile=default]`` ->
    ``MAE``, ``MAE [mask_ratio=0.9, compile=default]`` -> ``MAE [mask_ratio=0.9]``; other names unchanged."""
    return re.sub(r" \[compile=[\w-]+\]$", "", re.sub(r", compile=[\w-]+(?=\]$)", "", name))


def pipeline_result(path: Path) -> tuple[str, Any]:
    report = json.loads(path.read_text())
    rows = {}
    for name, subject in report["subjects"].items():
        for workers, summary in subject["summary"].items():
            rows[f"{name} workers={workers}"] = {"img_per_s": round(summary["img_per_s"]["median"], 1),
                                                 "per_core": round(summary["per_core"]["median"], 1)}
    return ", ".join(f"{name} {row['img_per_s']} img/s" for name, row in rows.items()), rows


# --- the summary ----------------------------------------------------------------------------------------------------
def table(headers: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join("—" if v is None else str(v) for v in row) + " |" for row in rows])


def steps_table(outcomes: list[Outcome]) -> str:
    rows = [[o.name, o.status.upper() if o.status in ("failed", "timeout") else o.status,
             f"{o.seconds:.0f}" + (f" / {o.limit:.0f}" if o.limit else ""), o.result.replace("|", "/")[:400]]
            for o in outcomes]
    return table(["step", "status", "s / limit", "result"], rows)


def training_table(outcomes: list[Outcome]) -> str | None:
    columns = [o for o in outcomes if (o.name.startswith("train_") or o.name == "fsdp") and isinstance(o.data, list)]
    if not columns:
        return None
    runs = list(dict.fromkeys(r["run"] for o in columns for r in o.data))
    cells = {(o.name, r["run"]): r for o in columns for r in o.data}

    def cell(record: dict | None) -> str | None:
        if record is None:
            return None
        if record["status"] != "ok":
            return "FAILED"
        return f"{record.get('first_loss')} → {record.get('last_loss')} ({record['seconds']:.0f} s)"

    rows = [[run, *(cell(cells.get((o.name, run))) for o in columns)] for run in runs]
    return table(["tiny run: loss first → last", *(o.name for o in columns)], rows)


def throughput_table(outcomes: list[Outcome]) -> str | None:
    """Eager and compiled rates side by side. A row is compiled by what the benchmark says of its subject, not by the
    step that timed it (a compile step times eager subjects too: the peers, or the twins' eager originals)."""
    steps = sorted((o for o in outcomes if (o.name == "throughput" or o.name.startswith("compile_")) and o.data),
                   key=lambda o: o.name != "throughput")  # the eager step's rows first
    eager: dict[str, dict] = {}
    compiled: dict[str, dict] = {}
    for outcome in steps:
        for key, row in outcome.data.items():
            (compiled if row["compiled"] else eager).setdefault(row.get("eager", key), row)
    if not eager and not compiled:
        return None
    rows = []
    for name in dict.fromkeys([*eager, *compiled]):
        e, c = eager.get(name, {}), compiled.get(name, {})
        rows.append([name, e.get("gflops_per_image", c.get("gflops_per_image")), e.get("img_per_s"),
                     c.get("img_per_s"), e.get("utilisation"), c.get("utilisation"), e.get("peak_mib")])
    return table(["subject", "GFLOPs/img", "img/s", "img/s compiled", "of matmul peak", "compiled", "peak MiB"], rows)


def pipeline_table(outcomes: list[Outcome]) -> str | None:
    data = next((o.data for o in outcomes if o.name == "pipeline" and o.data), None)
    if not data:
        return None
    return table(["pipeline", "img/s", "img/s per core"], [[k, v["img_per_s"], v["per_core"]] for k, v in data.items()])


def summary_markdown(outcomes: list[Outcome], device: str) -> str:
    env_line = next((o.result for o in outcomes if o.name == "env" and o.status == "ok"), "environment: not read")
    parts = [f"# mim_zoo device check ({device}, {time.strftime('%Y-%m-%d %H:%M:%S')})", "", env_line]
    for title, text in (("Tiny runs", training_table(outcomes)), ("Training cost", throughput_table(outcomes)),
                        ("Input pipeline", pipeline_table(outcomes)), ("Steps", steps_table(outcomes))):
        if text:
            parts += ["", f"## {title}", "", text]
    return "\n".join(parts) + "\n"


def archive(work: Path, out: Path, limit: int = 15 * 2**20) -> Path:
    """Every log and result file of ``work`` (no checkpoints) in ``OUT/logs.tar.gz``; pictures dropped if it would
    exceed ``limit`` (the device tool returns files of at most 16 MiB)."""
    path = out / "logs.tar.gz"
    files = sorted(p for p in work.rglob("*") if p.is_file() and p.suffix != ".pth" and p.name != "last_checkpoint")
    for keep in (lambda p: True, lambda p: p.suffix != ".png"):
        with tarfile.open(path, "w:gz") as tar:
            for file in filter(keep, files):
                tar.add(file, arcname=str(file.relative_to(work)))
        if path.stat().st_size <= limit:
            break
    return path


def write_summary(outcomes: list[Outcome], work: Path, out: Path, device: str) -> str:
    out.mkdir(parents=True, exist_ok=True)
    text = summary_markdown(outcomes, device)
    record = {"device": device, "outcomes": [dataclasses.asdict(o) for o in outcomes]}
    for folder in (out, work):
        (folder / "summary.md").write_text(text)
        (folder / "summary.json").write_text(json.dumps(record, indent=2, default=str))
    archive(work, out)
    return text


def merged(earlier: Path, outcomes: list[Outcome]) -> list[Outcome]:
    """A rerun's outcomes in place of the same steps of the last full run (``WORK/summary.json``)."""
    if not earlier.exists():
        return outcomes
    new = {o.name: o for o in outcomes}
    old = [Outcome(**o) for o in json.loads(earlier.read_text())["outcomes"]]
    return [new.pop(o.name, o) for o in old] + list(new.values())


# --- command line ---------------------------------------------------------------------------------------------------
def default_official_mae() -> str | None:
    carried = REPO / ".whl" / "official_mae"  # tools/prepare_device_wheels.sh --official-mae
    return str(carried) if carried.is_dir() else os.environ.get("MIM_ZOO_MAE_CHECKOUT")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # as mim_zoo.engine.cli.tool_parser, without importing mim_zoo before the arguments are parsed
    parser.add_argument("--debug", action="store_true", help="on an error, show the full traceback instead of one line")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="every step, as tools/device_check.sh runs them")
    run.add_argument("--device", choices=("cuda", "cpu"), default="cuda", help="cpu: the CPU twin")
    run.add_argument("--out", default=os.environ.get("OUT") or str(REPO / "work_dirs" / "device_check" / "out"),
                     help="summary.md, summary.json, logs.tar.gz (default: $OUT, else work_dirs/device_check/out)")
    run.add_argument("--work-dir", default=str(REPO / "work_dirs" / "device_check" / "work"))
    run.add_argument("--budget", type=float, default=450.0, help="seconds for all steps together")
    run.add_argument("--steps", help="comma-separated steps to run again (the others keep their last outcome)")
    run.add_argument("--official-mae", default=default_official_mae(),
                     help="a facebookresearch/mae checkout (default: .whl/official_mae, else $MIM_ZOO_MAE_CHECKOUT)")
    env = sub.add_parser("env", help="the environment report (step env)")
    env.add_argument("--out", type=Path, required=True)
    for name in ("train", "fsdp"):
        command = sub.add_parser(name, help=f"step {name}: train tiny configs in this process")
        command.add_argument("configs", nargs="+", type=Path)
        command.add_argument("--work-dir", type=Path, required=True)
        command.add_argument("--epochs", type=int)
        if name == "train":
            command.add_argument("--precision", choices=tuple(PRECISIONS), default="fp32")
    return parser.parse_args(argv)


def run_command(args: argparse.Namespace) -> int:
    import shutil

    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("error: no CUDA device here; `bash tools/device_check.sh --cpu` runs the CPU twin")
    work, out = Path(args.work_dir).resolve(), Path(args.out).resolve()
    steps = plan(args, work)
    only = set(args.steps.split(",")) if args.steps else None
    unknown = sorted((only or set()) - {s.name for s in steps})
    if unknown:
        sys.exit(f"error: unknown step(s) {unknown}; steps: {', '.join(s.name for s in steps)}")
    if only is None and work.exists():
        shutil.rmtree(work)  # a full run starts clean; a rerun keeps what the others wrote (checkpoints, results)
    work.mkdir(parents=True, exist_ok=True)
    outcomes = run_steps(steps, work, args.budget, only)
    if only is not None:
        outcomes = merged(work / "summary.json", outcomes)
    device = torch.cuda.get_device_name() if args.device == "cuda" else "CPU twin"
    print("\n" + write_summary(outcomes, work, out, device), flush=True)
    return int(any(o.status in ("failed", "timeout") for o in outcomes))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from mim_zoo.engine.cli import one_line_errors

    with one_line_errors(args.debug):
        return command(args)


def command(args: argparse.Namespace) -> int:
    if args.command == "run":
        return run_command(args)
    if args.command == "env":
        return env_command(args.out)
    epochs = args.epochs
    return train_configs(args.configs, getattr(args, "precision", "fp32"), args.work_dir, epochs,
                         fsdp=args.command == "fsdp")


if __name__ == "__main__":
    sys.exit(main())
