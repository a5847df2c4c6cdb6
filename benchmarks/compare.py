"""The comparison study: every method pretrained with identical tiny settings on the embedded shapes dataset, then
evaluated with the same linear probe and k-NN on the held-out labelled split, over several seeds.

    python -m benchmarks.compare                      # every method, 3 seeds: <= 20 min on 2 quiet cores
    python -m benchmarks.compare --methods MAE --seeds 0 --epochs 2 --out-dir /tmp/c     # a quick look

Methods: every algorithm and every combo of the catalogue with its tiny CPU config (architecture as there), and
``--method NAME=CONFIG``. Identical for all: the data
(the 2000-image train split with the config's augmentation), epochs, batch size, AdamW and its learning rate,
warm-up + cosine schedule, seeds, and the evaluation (``benchmarks/probe.py``) on the 500-image val split.
References on the same evaluation: raw pixels, colour statistics and every method's encoder at its random
initialisation bound the table from below; ``--supervised`` adds MAE's encoder trained with labels, from above.

Runs are independent jobs spread over ``--jobs`` worker processes of ``--threads`` threads each (tiny models use
two cores better as two one-thread processes than as one two-thread process). Writes ``OUT_DIR/NAME.{md,json}``,
``NAME_loss.png`` (loss curves) and ``NAME_accuracy.png`` (accuracy against pretraining compute).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python benchmarks/compare.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    __package__ = "benchmarks"

import torch  # noqa: E402

from mim_zoo.engine.cli import HelpFormatter  # noqa: E402

from .common import CATALOGUE, REPO, load_config, parse_assignments, replace_readme_section  # noqa: E402
from .compare_report import write_reports  # noqa: E402
from .runs import Job, Study, load_splits, run_job  # noqa: E402


def default_methods() -> dict[str, tuple[Path, dict[str, Any]]]:
    """``{name: (tiny config, options)}``: the catalogue's algorithms, then its combos."""
    return {name: (CATALOGUE.tiny_config(name), {}) for name in [*CATALOGUE.algorithms(), *CATALOGUE.combos()]}


def dataset_root(study: Study) -> Path:
    """The embedded dataset every method trains on (generated here if missing); all methods must share it."""
    from mim_zoo.synthetic.shapes import make_shapes_dataset

    specs = {}
    for name, (config, options) in study.methods.items():
        cfg = load_config(config, options)
        shapes = [dict(spec) for spec in cfg.get("synthetic_data") or [] if spec.get("type") is make_shapes_dataset]
        if len(shapes) != 1:
            raise ValueError(f"method {name!r} ({config}) does not train on the embedded shapes dataset (no "
                             "make_shapes_dataset in its synthetic_data); the study compares methods on identical data")
        specs[name] = json.dumps({k: v for k, v in shapes[0].items() if k != "type"}, sort_keys=True)
    if len(set(specs.values())) != 1:
        raise ValueError(f"the methods train on different embedded datasets: {specs}")
    return Path(make_shapes_dataset(**json.loads(next(iter(specs.values())))))


def make_jobs(study: Study) -> list[Job]:
    """The reference jobs first, then every (method, seed), seed-major so that parallel workers mix methods; each
    method's first seed also evaluates its encoder at initialisation (inits differ between methods)."""
    jobs = [Job("pixels")] if study.baselines else []
    if study.supervised:  # MAE's encoder (the baseline's), else the first method's
        name = "MAE" if "MAE" in study.methods else next(iter(study.methods))
        config, options = study.methods[name]
        jobs.append(Job("supervised", name=name, config=config, options=options, seed=study.seeds[0]))
    for seed in study.seeds:
        for name, (config, options) in study.methods.items():
            jobs.append(Job("pretrain", name=name, config=config, options=options, seed=seed,
                            with_random_init=study.baselines and seed == study.seeds[0]))
    return jobs


def run_jobs(study: Study, jobs: list[Job], root: Path) -> list[dict[str, Any]]:
    """Run every job, in ``study.jobs`` spawned worker processes (or here when 1); results in job order."""
    if study.jobs <= 1:
        return [run_job(study, job, root) for job in jobs]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=study.jobs, mp_context=context) as pool:
        futures = [pool.submit(run_job, study, job, root) for job in jobs]
        return [future.result() for future in futures]


def run_study(study: Study) -> dict[str, Any]:
    """Every job of the study, gathered into the results document."""
    start = time.perf_counter()
    root = dataset_root(study)
    jobs = make_jobs(study)
    print(f"{len(jobs)} jobs ({len(study.methods)} methods x {len(study.seeds)} seeds, {study.epochs} epochs) "
          f"on {study.jobs} worker(s) x {study.threads} thread(s)", flush=True)
    outputs = run_jobs(study, jobs, root)
    methods: dict[str, Any] = {}
    baselines: dict[str, Any] = {}
    supervised = None
    cpu_seconds = [out.pop("cpu_seconds") for out in outputs]
    for job, out in zip(jobs, outputs):
        if job.kind == "pixels":
            baselines.update(out)
        elif job.kind == "supervised":
            supervised = {"method": job.name, **out}
        else:
            entry = methods.setdefault(job.name, {
                "config": str(job.config.relative_to(REPO) if job.config.is_relative_to(REPO) else job.config),
                "options": job.options, "encoder": out["encoder"], "params": out["params"],
                "encoder_params": out["encoder_params"], "flops_per_image": out["flops_per_image"],
                "random_teachers": out["random_teachers"], "runs": []})
            if "random_init" in out:
                entry["random_init"] = out.pop("random_init")
            entry["runs"].append({"seed": job.seed, **out})
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(study).items() if k != "methods"}
    data = load_splits(root, study.eval_per_class)
    return {"settings": settings, "data": {"root": str(root), "train": len(data.train), "val": len(data.val),
                                           "classes": data.classes},
            "methods": methods, "baselines": baselines, "supervised": supervised,
            "seconds": time.perf_counter() - start, "cpu_seconds": sum(cpu_seconds),
            "quiet_estimate_seconds": quiet_estimate(cpu_seconds, study.jobs), "torch": torch.__version__}


def quiet_estimate(cpu_seconds: list[float], workers: int) -> float:
    """The study's wall time on a quiet machine: the jobs' CPU times (one thread each) packed greedily, longest
    first, onto ``workers`` cores. A busy machine stretches wall time but not CPU time."""
    loads = [0.0] * max(workers, 1)
    for seconds in sorted(cpu_seconds, reverse=True):
        loads[loads.index(min(loads))] += seconds
    return max(loads)


def parse_args(argv: list[str] | None = None) -> tuple[Study, Path, str, bool, Path | None]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter)
    parser.add_argument("--methods", help="comma-separated subset of the methods (default: all)")
    parser.add_argument("--method", action="append", default=[], metavar="NAME=CONFIG", help="add a method")
    parser.add_argument("--seeds", default="0,1,2",
                        help="comma-separated seeds; each method is pretrained and evaluated once per seed")
    parser.add_argument("--epochs", type=int, default=Study.epochs,
                        help=f"pretraining epochs of every method ({Study.warmup_epochs} of warm-up)")
    parser.add_argument("--batch-size", type=int, default=Study.batch_size,
                        help="pretraining batch of every method (even: MixMAE pairs images)")
    parser.add_argument("--lr", type=float, default=Study.lr,
                        help="AdamW peak learning rate of every method (warm-up, then cosine to 0)")
    parser.add_argument("--jobs", type=int, default=Study.jobs,
                        help="worker processes running pretraining jobs in parallel")
    parser.add_argument("--threads", type=int, default=Study.threads, help="torch threads per worker")
    parser.add_argument("--train-limit", type=int, help="pretraining images per epoch (default: the whole split)")
    parser.add_argument("--eval-per-class", type=int, help="evaluation images per class and split (default: all)")
    parser.add_argument("--no-baselines", action="store_true", help="skip the pixel and random-init rows")
    parser.add_argument("--supervised", action="store_true", help="add the supervised reference (+1 job)")
    parser.add_argument("--work-dir", default=str(Study.work_root), help="where the Runner's logs go")
    parser.add_argument("--out-dir", default=str(REPO / "benchmarks" / "results"),
                        help="where <name>.json, <name>.md and the plots are written")
    parser.add_argument("--name", default="compare", help="output file stem")
    parser.add_argument("--update-readme", action="store_true",
                        help="put the table and plots in benchmarks/README.md (with the default --out-dir)")
    parser.add_argument("--render", metavar="JSON", help="only redo the reports of a finished study's JSON")
    args = parser.parse_args(argv)
    methods = default_methods()
    methods.update({k: (Path(v), {}) for k, v in parse_assignments(args.method, "--method").items()})
    if args.methods:
        wanted = args.methods.split(",")
        unknown = sorted(set(wanted) - set(methods))
        if unknown:
            parser.error(f"unknown method(s) {unknown}; known: {sorted(methods)}")
        methods = {k: methods[k] for k in wanted}
    study = Study(methods=methods, seeds=[int(s) for s in args.seeds.split(",")], epochs=args.epochs,
                  batch_size=args.batch_size, lr=args.lr, jobs=args.jobs, threads=args.threads,
                  train_limit=args.train_limit, eval_per_class=args.eval_per_class, baselines=not args.no_baselines,
                  supervised=args.supervised, work_root=Path(args.work_dir))
    return study, Path(args.out_dir), args.name, args.update_readme, args.render and Path(args.render)


def readme_section(markdown: str, out_dir: Path, name: str) -> str:
    """The study's table and plots for benchmarks/README.md (image links relative to the README)."""
    body = markdown.split("\n", 1)[1]  # without the "# ..." title line
    title = markdown.split("\n", 1)[0].lstrip("# ")
    rel = out_dir.resolve().relative_to((REPO / "benchmarks").resolve())
    return (f"**{title}**\n{body}\n![loss curves]({rel}/{name}_loss.png)\n"
            f"![accuracy against pretraining compute]({rel}/{name}_accuracy.png)\n")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    study, out_dir, name, update_readme, render = parse_args(argv)
    results = json.loads(render.read_text()) if render else run_study(study)
    paths = write_reports(results, out_dir, name)
    print(paths[1].read_text())
    print("wrote " + ", ".join(str(p) for p in paths))
    if update_readme:
        replace_readme_section(REPO / "benchmarks" / "README.md", "compare", readme_section(
            paths[1].read_text(), out_dir, name))
    return results


if __name__ == "__main__":
    main()
