"""Training cost per algorithm: images/s of a full training step, FLOPs/image, achieved FLOP/s against the same
run's measured matmul peak, peak memory; mim_zoo's MAE against mmpretrain's and facebookresearch/mae's.

    python -m benchmarks.throughput                                   # every algorithm, paper size
    python -m benchmarks.throughput --algos MAE --official-mae ~/src/mae --threads 2 --batch-size 8
    python -m benchmarks.throughput --tiny --iters 1 --repeats 1      # smoke run on the tiny CPU configs
    python -m benchmarks.throughput --algos MAE --compile default,max-autotune-no-cudagraphs   # compiled twins

Every subject (algorithm, config variant, peer) is built once and timed in turns, A B C A B C ..., for
``--repeats`` rounds of ``--iters`` steps after ``--warmup`` steps; each round also re-measures the matmul peak,
so the utilisation of a round is taken against the peak of that same round. Ratios between subjects are
min / median / max over rounds of the per-round ratio. ``--compile MODES`` adds, per algorithm, a twin built the
same way and ``torch.compile``-d with each mode, timed in the same rounds. After the rounds, one profiled step per
subject says where its time goes (``benchmarks/breakdown.py``). Results go to ``OUT_DIR/NAME.json`` and
``NAME.md``. See benchmarks/README.md for what the numbers mean and the reference command.
"""

from __future__ import annotations

import argparse
import ast
import resource
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python benchmarks/throughput.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    __package__ = "benchmarks"

import torch  # noqa: E402
import torch._inductor.config  # noqa: E402

from .breakdown import step_breakdown  # noqa: E402
from .common import (  # noqa: E402
    CATALOGUE,
    REPO,
    bf16_supported,
    build_algorithm,
    build_optimizer,
    count_parameters,
    describe_encoder,
    input_size,
    load_config,
    machine_info,
    parse_assignments,
    quiet_mmengine,
    replace_readme_section,
    total_loss,
)
from .measure import Subject, matmul_peak, step_flops, step_peak_memory, timed_step  # noqa: E402
from .peers import MAEGeometry, mmpretrain_mae, official_mae  # noqa: E402
from .throughput_report import summarise, to_markdown, write_reports  # noqa: E402

# The measured targets (issue "Training cost per algorithm") hold at this reference setting.
REFERENCE = {"device": "cpu", "threads": 2, "dtype": "fp32", "batch_size": 8}
# Cheaper variants measured automatically wherever a config has the key (MR-MAE's bf16 teachers).
AUTO_VARIANTS = {"teacher_dtype": "bfloat16"}
# torch.compile modes --compile accepts ("default": torch.compile's default mode).
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


@dataclass
class Settings:
    algos: list[str]
    configs: dict[str, str] = field(default_factory=dict)
    tiny: bool = False
    batch_size: int = 8
    iters: int = 3
    warmup: int = 1
    repeats: int = 5
    device: str = "cpu"
    threads: int | None = None
    dtypes: list[str] = field(default_factory=lambda: ["fp32", "bf16"])
    peers: list[str] = field(default_factory=lambda: ["mmpretrain"])
    official_mae: str | None = None
    variants: list[str] = field(default_factory=list)
    auto_variants: bool = True
    compile: list[str] = field(default_factory=list)
    memory: bool = True
    profile: bool = True
    seed: int = 0


# --- building the subjects -----------------------------------------------------------------------------------------
def config_for(algorithm: str, settings: Settings) -> Path:
    if algorithm in settings.configs:
        return Path(settings.configs[algorithm])
    return CATALOGUE.tiny_config(algorithm) if settings.tiny else CATALOGUE.paper_config(algorithm)


def algorithm_subject(algorithm: str, settings: Settings, device: torch.device,
                      options: dict[str, Any] | None = None, compile_mode: str | None = None) -> Subject:
    """A mim_zoo algorithm as its config trains it: model, the config's optimizer, EMA updates after each step.

    ``compile_mode``: ``torch.compile`` the model's ``__call__`` (forward, and through AOTAutograd its backward)
    with this mode, as ``compile = dict(mode=...)`` in a config does to the Runner's ``train_step``.
    """
    path = config_for(algorithm, settings)
    cfg = load_config(path, options)
    model, notes = build_algorithm(cfg)
    model = model.to(device)
    optimizer = build_optimizer(model, cfg.optim_wrapper)
    if compile_mode is not None:
        model.compile(mode=None if compile_mode == "default" else compile_mode)

    def loss(images: torch.Tensor) -> torch.Tensor:
        return total_loss(model(images, mode="loss"))

    def after_step() -> None:
        model.momentum_update(0.999)  # EMA targets follow the encoder (cost only; the value is the schedule's)

    labels = [f"{k.rsplit('.', 1)[-1]}={v}" for k, v in (options or {}).items()]
    eager_name = f"{algorithm} [{', '.join(labels)}]" if labels else algorithm
    labels += [f"compile={compile_mode}"] if compile_mode else []
    name = f"{algorithm} [{', '.join(labels)}]" if labels else algorithm
    optimizer_cfg = {k: v for k, v in cfg.optim_wrapper.optimizer.items() if k not in ("lr",)}
    encoder = model.encoder
    info = {"config": str(path.relative_to(REPO) if path.is_relative_to(REPO) else path), "options": options or {},
            "optimizer": {k: getattr(v, "__name__", v) for k, v in optimizer_cfg.items()}, "notes": notes,
            "encoder": describe_encoder(encoder)}
    if compile_mode:
        info["compile"] = compile_mode

    return Subject(name=name, model=model, loss=loss, optimizer=optimizer, after_step=after_step,
                   image_size=input_size(model.encoder), group=algorithm, info=info,
                   flops_of=eager_name if compile_mode else None)


def variant_options(settings: Settings, algorithm: str) -> list[dict[str, Any]]:
    """Config variants of ``algorithm``: ``--variant ALGO:key=value,...`` and the automatic ones."""
    options = []
    for spec in settings.variants:
        algo, sep, assignments = spec.partition(":")
        if not sep:
            raise ValueError(f"--variant must look like ALGO:key=value[,key=value], got {spec!r}")
        if algo == algorithm:
            options.append({k: _literal(v) for k, v in parse_assignments(assignments.split(","), "--variant").items()})
    if settings.auto_variants:
        model_cfg = load_config(config_for(algorithm, settings)).model
        for key, value in AUTO_VARIANTS.items():
            if key in model_cfg and model_cfg[key] != value:
                options.append({f"model.{key}": value})
    return options


def _literal(text: str) -> Any:
    """``"True"`` -> True, ``"3"`` -> 3, ``"bfloat16"`` -> "bfloat16"."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def build_subjects(settings: Settings, device: torch.device) -> list[Subject]:
    subjects = []
    for algorithm in settings.algos:
        torch.manual_seed(settings.seed)
        subject = algorithm_subject(algorithm, settings, device)
        subjects.append(subject)
        if algorithm == "MAE":
            subjects += peer_subjects(settings, subject, device)
        for options in variant_options(settings, algorithm):
            subjects.append(algorithm_subject(algorithm, settings, device, options))
        for mode in settings.compile:
            torch.manual_seed(settings.seed)
            subjects.append(algorithm_subject(algorithm, settings, device, compile_mode=mode))
    return subjects


def peer_subjects(settings: Settings, mae: Subject, device: torch.device) -> list[Subject]:
    geo = MAEGeometry.of(mae.model)
    peers = []
    if "mmpretrain" in settings.peers:
        peers.append(mmpretrain_mae(geo, device))
    if settings.official_mae:
        peers.append(official_mae(settings.official_mae, geo, device))
    return peers


# --- measuring -----------------------------------------------------------------------------------------------------
def make_batches(subjects: list[Subject], batch_size: int, device: torch.device, seed: int) -> dict[str, torch.Tensor]:
    """One fixed batch per input size (normalised-image statistics: N(0, 1))."""
    generator = torch.Generator().manual_seed(seed)
    batches = {}
    for size in sorted({s.image_size for s in subjects}):
        batches[str(size)] = torch.randn(batch_size, 3, *size, generator=generator).to(device)
    return batches


def measure_dtype(subjects: list[Subject], batches: dict, settings: Settings, dtype: str,
                  device: torch.device) -> dict[str, Any]:
    """FLOPs, warm-up, interleaved timed rounds, peak memory and a profile breakdown of every subject at one dtype.

    A compiled twin reports the FLOPs of its eager subject and the wall time of its warm-up steps (the first one
    compiles).
    """
    data: dict[str, Any] = {"peaks": [], "subjects": {s.name: {"rounds": []} for s in subjects}}
    for subject in subjects:
        images, record = batches[str(subject.image_size)], data["subjects"][subject.name]
        if subject.flops_of is None:
            record["flops"] = step_flops(subject, images, dtype)
        record["warmup_s"] = [timed_step(subject, images, dtype)["wall"] for _ in range(settings.warmup)]
    for subject in subjects:
        if subject.flops_of is not None:
            data["subjects"][subject.name]["flops"] = data["subjects"][subject.flops_of]["flops"]
    sizes = (1024, 2048, 4096) if device.type == "cpu" else (4096, 8192)
    for round_index in range(settings.repeats):
        data["peaks"].append(matmul_peak(device, dtype, sizes))
        for subject in subjects:
            images = batches[str(subject.image_size)]
            steps = [timed_step(subject, images, dtype) for _ in range(settings.iters)]
            data["subjects"][subject.name]["rounds"].append(steps)
            print(f"  [{dtype} round {round_index + 1}/{settings.repeats}] {subject.name}: "
                  f"{settings.batch_size * len(steps) / sum(s['wall'] for s in steps):.2f} img/s", flush=True)
    for subject in subjects:
        images, record = batches[str(subject.image_size)], data["subjects"][subject.name]
        if settings.memory:
            record["memory"] = step_peak_memory(subject, images, dtype)
        if settings.profile:
            record["profile"] = step_breakdown(subject, images, dtype)
    return data


def run(settings: Settings) -> dict[str, Any]:
    """Build every subject, measure it at every dtype, and return the raw and summarised results."""
    quiet_mmengine()
    device = torch.device(settings.device)
    if settings.threads:
        torch.set_num_threads(settings.threads)
    dtypes = [d for d in settings.dtypes if d == "fp32" or bf16_supported(device)]
    if settings.compile:  # name inductor's fused CPU kernels in the profile (cpp_fused_*), else they are anonymous
        torch._inductor.config.cpp.enable_kernel_profile = True
    subjects = build_subjects(settings, device)
    batches = make_batches(subjects, settings.batch_size, device, settings.seed)
    raw = {}
    for dtype in dtypes:
        print(f"measuring {len(subjects)} subjects at {dtype} on {device}", flush=True)
        raw[dtype] = measure_dtype(subjects, batches, settings, dtype, device)
    meta = {s.name: {"group": s.group, "info": s.info, "params": count_parameters(s.model),
                     "image_size": list(s.image_size)} for s in subjects}
    settings_dict = dict(vars(settings), dtypes=dtypes, threads=torch.get_num_threads())
    machine = machine_info(device, torch.get_num_threads())
    machine["process_max_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # every subject built
    return summarise(raw, meta, settings_dict, machine, REFERENCE)


# --- command line --------------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> tuple[Settings, Path, str, bool]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algos", help="comma-separated algorithms or combos (default: the catalogue's algorithms)")
    parser.add_argument("--combos", action="store_true", help="add every combo of the catalogue")
    parser.add_argument("--config", action="append", default=[], metavar="ALGO=PATH",
                        help="config of an algorithm (default: its paper-size config, or tiny_cpu.py with --tiny)")
    parser.add_argument("--tiny", action="store_true", help="use every algorithm's tiny CPU config (smoke runs)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--iters", type=int, default=3, help="timed steps per subject per round")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per subject before timing")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds over all subjects")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--dtypes", default="fp32,bf16", help="fp32 and/or bf16 (autocast; skipped if unsupported)")
    parser.add_argument("--peers", default="mmpretrain", help="MAE peers to time: mmpretrain (comma list; '' none)")
    parser.add_argument("--official-mae", metavar="PATH", help="a facebookresearch/mae checkout: time its MAE too")
    parser.add_argument("--variant", action="append", default=[], metavar="ALGO:KEY=VALUE[,KEY=VALUE]",
                        help="also time a config variant, e.g. MAE:model.encoder.grad_checkpointing=True")
    parser.add_argument("--no-auto-variants", action="store_true", help="skip the automatic cheaper variants")
    parser.add_argument("--compile", nargs="?", const="default", default="", metavar="MODE[,MODE]",
                        help="also time each algorithm torch.compile-d with these modes (default: torch.compile's "
                             f"default mode; any of {', '.join(COMPILE_MODES)}), as compiled twins in the same rounds")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory step")
    parser.add_argument("--no-profile", action="store_true", help="skip the profiled step (time per op category)")
    parser.add_argument("--out-dir", default=str(REPO / "benchmarks" / "results"))
    parser.add_argument("--name", help="output file stem (default: throughput_<device type>[_tiny])")
    parser.add_argument("--update-readme", action="store_true", help="put the report in benchmarks/README.md")
    args = parser.parse_args(argv)
    algos = args.algos.split(",") if args.algos else CATALOGUE.algorithms()
    algos += [c for c in CATALOGUE.combos() if args.combos and c not in algos]
    compile_modes = [m for m in args.compile.split(",") if m]
    if set(compile_modes) - set(COMPILE_MODES):
        parser.error(f"unknown --compile mode(s) {sorted(set(compile_modes) - set(COMPILE_MODES))}; choose from "
                     f"{', '.join(COMPILE_MODES)}")
    unknown = sorted(set(algos) - set(CATALOGUE.algorithms()) - set(CATALOGUE.combos()))
    if unknown:
        parser.error(f"unknown algorithm(s) or combo(s) {unknown}; algorithms: {CATALOGUE.algorithms()}, "
                     f"combos: {CATALOGUE.combos()}")
    settings = Settings(
        algos=algos, configs=parse_assignments(args.config, "--config"), tiny=args.tiny, batch_size=args.batch_size,
        iters=args.iters, warmup=args.warmup, repeats=args.repeats, device=args.device, threads=args.threads,
        dtypes=[d for d in args.dtypes.split(",") if d], peers=[p for p in args.peers.split(",") if p],
        official_mae=args.official_mae, variants=args.variant, auto_variants=not args.no_auto_variants,
        compile=compile_modes, memory=not args.no_memory, profile=not args.no_profile)
    name = args.name or f"throughput_{torch.device(args.device).type}" + ("_tiny" if args.tiny else "")
    return settings, Path(args.out_dir), name, args.update_readme


def main(argv: list[str] | None = None) -> dict[str, Any]:
    settings, out_dir, name, update_readme = parse_args(argv)
    results = run(settings)
    json_path, md_path = write_reports(results, out_dir, name)
    print(md_path.read_text())
    print(f"wrote {json_path} and {md_path}")
    if update_readme:
        replace_readme_section(REPO / "benchmarks" / "README.md", "throughput", to_markdown(results, level=4))
    return results


if __name__ == "__main__":
    main()
