"""The comparison study: every method pretrained with identical tiny settings on the embedded shapes dataset, then
evaluated with the same linear probe and k-NN on the held-out labelled split, over several seeds, in two views:
equal epochs, and equal pretraining compute.

    python -m benchmarks.compare                      # every method, 3 seeds, both views: <= 25 min on 2 quiet cores
    python -m benchmarks.compare --methods MAE --seeds 0 --epochs 2 --budget none --out-dir /tmp/c   # a quick look
    python -m benchmarks.compare --budget 2e14        # every method gets 2e14 FLOPs of pretraining
    python -m benchmarks.compare --ablate MAE --vary model.decoder.depth=1,2,4 --vary model.masking.ratio=0.5,0.9

Methods: every algorithm and every combo of the catalogue with its tiny CPU config (architecture as there), and
``--method NAME=CONFIG``. Identical for all: the data (the 2000-image train split with the config's augmentation),
batch size, AdamW and its learning rate, warm-up + cosine schedule, seeds, and the evaluation
(:mod:`mim_zoo.engine.probes`) on the 500-image val split.

* **Equal epochs**: every method trains ``--epochs``; each run also probes every block / stage of its encoder (the
  depth probe: class token and mean of the patch tokens, one L-BFGS probe each).
* **Equal compute**: every method gets the same pretraining FLOPs per run, ``--budget`` (default: MAE's compute at
  ``--epochs``), as matmul FLOPs of its training step (``mim_zoo.engine.flops``, the throughput benchmark's counter;
  teachers and momentum encoders included) times the images it sees; its epochs are the budget over its cost per
  epoch, rounded (so every run is within half an epoch of the budget; at least one epoch). A method whose epochs
  equal ``--epochs`` reuses its equal-epoch runs.
* **MR-MAE's teachers** (``--teachers study``, the default): the study's own label-free MAE and BootMAE encoders
  (seed 0, equal epochs), exported once per study (:mod:`benchmarks.teachers`); ``--teachers config`` keeps the
  tiny config's random ones.
* **Ablation** (``--ablate METHOD --vary KEY=V1,V2,...``): one confound of one method at a time (decoder depth, mask
  ratio, a loss weight), every other setting at the method's config; a table and plot of its own.

References on the same evaluation: raw pixels, colour statistics and every method's encoder at its random
initialisation bound the table from below; ``--supervised`` adds MAE's encoder trained with labels, from above.
Every run records its evidence (config hash, git commit, images/s and matmul utilisation of the pretraining run,
wall time; package versions and the machine once per study) and each method the paper's numbers.

Runs are independent jobs spread over ``--jobs`` worker processes of ``--threads`` threads each (tiny models use
two cores better as two one-thread processes than as one two-thread process). Writes ``OUT_DIR/NAME.{md,json}``,
``NAME_loss.png`` (loss curves), ``NAME_accuracy.png`` (accuracy against pretraining compute, both views) and
``NAME_depth.png`` (accuracy against depth).
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
from mim_zoo.engine.evidence import environment  # noqa: E402
from mim_zoo.engine.flops import matmul_peak  # noqa: E402

from .common import CATALOGUE, REPO, load_config, parse_assignments, quiet_mmengine, replace_readme_section  # noqa: E402
from .compare_report import write_ablation_reports, write_reports  # noqa: E402
from .runs import Job, Study, load_splits, method_flops, run_job  # noqa: E402
from .teachers import TEACHERS, stand_in_files, teacher_options, teacher_path, uses_teachers  # noqa: E402


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


def images_per_epoch(study: Study, root: Path) -> int:
    """Pretraining images per epoch: the train split (or ``train_limit``), in whole batches (``drop_last``)."""
    available = sum(1 for _ in (root / "train").glob("*/*.JPEG"))
    return min(study.train_limit or available, available) // study.batch_size * study.batch_size


def resolve_budget(budget: float | str | None, flops: dict[str, float], per_epoch: int, epochs: int) -> float | None:
    """The equal-compute view's FLOPs per run: a number, a method's compute at ``epochs``, or ``None`` (no view)."""
    if budget is None or budget == "none":
        return None
    if isinstance(budget, str) and budget in flops:
        return flops[budget] * per_epoch * epochs
    try:
        return float(budget)
    except ValueError:
        raise ValueError(f"--budget must be FLOPs per run (e.g. 4.5e14), a method of the study ({', '.join(flops)}) "
                         f"or none; got {budget!r} (the default is MAE's compute: pass --budget with a subset "
                         "of methods without MAE)") from None


def compute_epochs(budget: float, flops: dict[str, float], per_epoch: int) -> dict[str, int]:
    """Each method's epochs at ``budget`` FLOPs per run: the budget over its FLOPs per epoch, rounded, at least 1."""
    return {name: max(1, round(budget / (f * per_epoch))) for name, f in flops.items()}


def study_methods(study: Study) -> dict[str, tuple[Path, dict[str, Any]]]:
    """The methods with MR-MAE's study teachers swapped in (``--teachers study``; :mod:`benchmarks.teachers`)."""
    if study.teachers != "study":
        return dict(study.methods)
    students = [name for name, (config, options) in study.methods.items() if uses_teachers(config, options)]
    files = {name: teacher_path(study, name) for name in TEACHERS}
    cached = all(path.is_file() for path in files.values())  # exported by a study with the same settings
    if students and not set(TEACHERS) <= set(study.methods) and not cached:
        raise ValueError(f"{', '.join(students)} mimic the study's own {' and '.join(TEACHERS)} encoders: include "
                         f"{', '.join(TEACHERS)} in --methods (or run such a study first, with the same settings), or "
                         "pass --teachers config (random teachers)")
    return {name: (config, {**options, **teacher_options(study, config, files)}) if name in students
            else (config, options) for name, (config, options) in study.methods.items()}


def plan(study: Study, root: Path) -> dict[str, Any]:
    """FLOPs per image of every method (before training; teachers as stand-ins of the same architecture), the
    budget of the equal-compute view and each method's epochs there."""
    quiet_mmengine()
    methods = study_methods(study)
    counted = dict(methods)
    if study.teachers == "study":  # the teachers do not exist yet: count with random files of their architecture
        stand_ins = stand_in_files(study)
        counted = {name: (config, {**options, **teacher_options(study, config, stand_ins)})
                   if "model.teachers" in options else (config, options) for name, (config, options) in methods.items()}
    flops = {name: method_flops(config, options, study) for name, (config, options) in counted.items()}
    per_epoch = images_per_epoch(study, root)
    budget = resolve_budget(study.budget, flops, per_epoch, study.epochs)
    epochs = compute_epochs(budget, flops, per_epoch) if budget else {}
    return {"methods": methods, "flops_per_image": flops, "images_per_epoch": per_epoch, "budget": budget,
            "compute_epochs": epochs}


def make_jobs(study: Study, planned: dict[str, Any] | None = None) -> list[Job]:
    """The reference jobs first, then every (method, seed) of the equal-epoch view, then those of the equal-compute
    view whose epochs differ, seed-major so that parallel workers mix methods. Each method's first seed also
    evaluates its encoder at initialisation (inits differ between methods); the first seed of MAE and BootMAE
    exports the teachers, which the MR-MAE jobs wait for."""
    methods = planned["methods"] if planned else study.methods
    students = {name for name, (_, options) in methods.items() if "model.teachers" in options}
    jobs = [Job("pixels")] if study.baselines else []
    if study.supervised:  # MAE's encoder (the baseline's), else the first method's
        name = "MAE" if "MAE" in methods else next(iter(methods))
        config, options = study.methods[name]
        jobs.append(Job("supervised", name=name, config=config, options=options, seed=study.seeds[0]))
    runs = []
    for seed in study.seeds:
        for name, (config, options) in methods.items():
            teacher = seed == study.seeds[0] and name in TEACHERS and bool(students)
            runs.append(Job("pretrain", name=name, config=config, options=options, seed=seed,
                            with_random_init=study.baselines and seed == study.seeds[0], epochs=study.epochs,
                            depth_probe=study.depth_probe, after_teachers=name in students,
                            export_teacher=str(teacher_path(study, name)) if teacher else None))
    for seed in study.seeds:
        for name, epochs in (planned or {}).get("compute_epochs", {}).items():
            if epochs != study.epochs:
                config, options = methods[name]
                runs.append(Job("pretrain", name=name, config=config, options=options, seed=seed, epochs=epochs,
                                view="compute", after_teachers=name in students))
    return jobs + sorted(runs, key=lambda j: j.export_teacher is None)  # the teachers' runs start first


def run_jobs(study: Study, jobs: list[Job], root: Path) -> list[dict[str, Any]]:
    """Run every job, in ``study.jobs`` spawned worker processes (or here when 1); results in job order. Jobs that
    mimic the study's teachers are submitted once the jobs exporting them have finished."""
    order = sorted(range(len(jobs)), key=lambda i: jobs[i].after_teachers)  # stable: the waiting jobs last
    if study.jobs <= 1:
        done = {i: run_job(study, jobs[i], root) for i in order}
        return [done[i] for i in range(len(jobs))]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=study.jobs, mp_context=context) as pool:
        futures = {i: pool.submit(run_job, study, jobs[i], root) for i in order if not jobs[i].after_teachers}
        for i, job in enumerate(jobs):
            if job.export_teacher:
                futures[i].result()  # raises if a teacher failed
        futures.update({i: pool.submit(run_job, study, jobs[i], root) for i in order if jobs[i].after_teachers})
        return [futures[i].result() for i in range(len(jobs))]


def run_study(study: Study) -> dict[str, Any]:
    """Every job of the study, gathered into the results document."""
    start = time.perf_counter()
    root = dataset_root(study)
    planned = plan(study, root)
    jobs = make_jobs(study, planned)
    print(f"{len(jobs)} jobs ({len(study.methods)} methods x {len(study.seeds)} seeds, {study.epochs} epochs"
          + (f"; equal compute: {planned['budget']:.3g} FLOPs per run" if planned["budget"] else "")
          + f") on {study.jobs} worker(s) x {study.threads} thread(s)", flush=True)
    outputs = run_jobs(study, jobs, root)
    cpu_seconds = [out.pop("cpu_seconds") for out in outputs]
    methods, baselines, supervised = gather(study, planned, jobs, outputs)
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(study).items() if k != "methods"}
    data = load_splits(root, study.eval_per_class)
    return {"settings": settings, "data": {"root": str(root), "train": len(data.train), "val": len(data.val),
                                           "classes": data.classes, "images_per_epoch": planned["images_per_epoch"]},
            "budget": planned["budget"], "methods": methods, "baselines": baselines, "supervised": supervised,
            "teachers": {name: str(teacher_path(study, name)) for name in TEACHERS}
            if any("model.teachers" in o for _, o in planned["methods"].values()) else None,
            "seconds": time.perf_counter() - start, "cpu_seconds": sum(cpu_seconds),
            "quiet_estimate_seconds": quiet_estimate(cpu_seconds, study.jobs), "torch": torch.__version__,
            "evidence": {**environment(root=REPO), "peak_flops_per_s_one_thread": one_thread_peak()}}


def gather(study: Study, planned: dict[str, Any], jobs: list[Job], outputs: list[dict]) -> tuple[dict, dict, Any]:
    """The runs of every method (``runs``: equal epochs; ``compute``: equal compute), the references."""
    methods: dict[str, Any] = {}
    baselines: dict[str, Any] = {}
    supervised = None
    for job, out in zip(jobs, outputs, strict=True):
        if job.kind == "pixels":
            baselines.update(out)
        elif job.kind == "supervised":
            supervised = {"method": job.name, **out}
        else:
            entry = methods.setdefault(job.name, method_entry(study, planned, job, out))
            if "random_init" in out:
                entry["random_init"] = out.pop("random_init")
            (entry["runs"] if job.view == "epochs" else entry["compute"]["runs"]).append({"seed": job.seed, **out})
    for entry in methods.values():  # equal compute at the study's epochs: the equal-epoch runs themselves
        if entry.get("compute") and not entry["compute"]["runs"]:
            entry["compute"]["runs"] = entry["runs"]
            entry["compute"]["same_as_epochs"] = True
    return methods, baselines, supervised


def method_entry(study: Study, planned: dict[str, Any], job: Job, out: dict) -> dict[str, Any]:
    """What a method's rows share: its config, size, cost, teachers, the paper's numbers, its equal-compute plan."""
    name = job.name
    entry = {"config": str(job.config.relative_to(REPO) if job.config.is_relative_to(REPO) else job.config),
             "options": {k: v for k, v in job.options.items() if k != "model.teachers"},
             "encoder": out["encoder"], "params": out["params"], "encoder_params": out["encoder_params"],
             "flops_per_image": out["flops_per_image"], "random_teachers": out["random_teachers"],
             "teachers": list(TEACHERS) if "model.teachers" in job.options else None,
             "paper": paper_results(name), "runs": []}
    if planned["budget"]:
        epochs = planned["compute_epochs"][name]
        entry["compute"] = {"epochs": epochs, "flops": epochs * planned["images_per_epoch"] * out["flops_per_image"],
                            "runs": []}
    return entry


def paper_results(name: str) -> list[dict]:
    """The catalogue's published numbers of a method (an algorithm; combos have none): per setting, its epochs and
    ``{column: value}`` with the sources."""
    collection = CATALOGUE.collection(name) if name in CATALOGUE.collections else None
    if collection is None or collection.is_combo:
        return []
    return [{"epochs": m.epochs, "encoder": m.encoder, **{k: v for r in m.results for k, v in r.metrics.items()},
             "source": "; ".join(sorted({r.source for r in m.results}))} for m in collection.models if m.results]


def one_thread_peak() -> float:
    """The matmul peak of one CPU thread (fp32): what a one-thread worker's utilisation is measured against."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return matmul_peak(torch.device("cpu"), "fp32", sizes=(512, 1024), reps=3)["flops_per_s"]
    finally:
        torch.set_num_threads(threads)


def quiet_estimate(cpu_seconds: list[float], workers: int) -> float:
    """The study's wall time on a quiet machine: the jobs' CPU times (one thread each) packed greedily, longest
    first, onto ``workers`` cores. A busy machine stretches wall time but not CPU time."""
    loads = [0.0] * max(workers, 1)
    for seconds in sorted(cpu_seconds, reverse=True):
        loads[loads.index(min(loads))] += seconds
    return max(loads)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter)
    parser.add_argument("--methods", help="comma-separated subset of the methods (default: every algorithm and combo "
                                          "of the catalogue)")
    parser.add_argument("--method", action="append", default=[], metavar="NAME=CONFIG",
                        help="add a method (a tiny config on the embedded shapes)")
    parser.add_argument("--seeds", default="0,1,2",
                        help="comma-separated seeds; each method is pretrained and evaluated once per seed")
    parser.add_argument("--epochs", type=int, default=Study.epochs,
                        help=f"pretraining epochs of the equal-epoch view ({Study.warmup_epochs} of warm-up)")
    parser.add_argument("--budget", default=Study.budget,
                        help="the equal-compute view's pretraining FLOPs per run: a number (2e14), a method (its "
                             "compute at --epochs) or none (no such view)")
    parser.add_argument("--teachers", choices=("study", "config"), default=Study.teachers,
                        help="MR-MAE's teachers: the study's own MAE and BootMAE encoders, or the tiny config's "
                             "random ones")
    parser.add_argument("--no-depth-probe", action="store_true", help="skip the probe of every block / stage")
    parser.add_argument("--batch-size", type=int, default=Study.batch_size,
                        help="pretraining batch of every method, one process (even: MixMAE pairs images)")
    parser.add_argument("--lr", type=float, default=Study.lr,
                        help="AdamW peak learning rate of every method, not scaled (warm-up, then cosine to 0)")
    parser.add_argument("--jobs", type=int, default=Study.jobs,
                        help="worker processes running pretraining jobs in parallel")
    parser.add_argument("--threads", type=int, default=Study.threads, help="torch threads per worker")
    parser.add_argument("--train-limit", type=int, help="pretraining images per epoch (default: the whole split)")
    parser.add_argument("--eval-per-class", type=int, help="evaluation images per class and split (default: all)")
    parser.add_argument("--no-baselines", action="store_true", help="skip the pixel and random-init rows")
    parser.add_argument("--supervised", action="store_true", help="add the supervised reference (+1 job)")
    parser.add_argument("--ablate", metavar="METHOD", help="vary one confound at a time for METHOD (with --vary)")
    parser.add_argument("--vary", action="append", default=[], metavar="KEY=V1,V2,...",
                        help="a config key of the ablated method and its values, e.g. model.masking.ratio=0.5,0.9")
    parser.add_argument("--work-dir", default=str(Study.work_root), help="where the Runner's logs go")
    parser.add_argument("--out-dir", default=str(REPO / "benchmarks" / "results"),
                        help="where <name>.json, <name>.md and the plots are written")
    parser.add_argument("--name", help="output file stem (default: compare, or ablation_<method>)")
    parser.add_argument("--update-readme", action="store_true",
                        help="put the table and plots in benchmarks/README.md (with the default --out-dir)")
    parser.add_argument("--render", metavar="JSON", help="only redo the reports of a finished study's JSON")
    args = parser.parse_args(argv)
    methods = default_methods()
    methods.update({k: (Path(v), {}) for k, v in parse_assignments(args.method, "--method").items()})
    wanted = args.methods.split(",") if args.methods else ([args.ablate] if args.ablate else list(methods))
    unknown = sorted(set(wanted) - set(methods))
    if unknown:
        parser.error(f"unknown method(s) {unknown}; known: {sorted(methods)}")
    if args.vary and not args.ablate:
        parser.error("--vary needs --ablate METHOD")
    args.variations = {key: [_value(v) for v in values.split(",")]
                       for key, values in parse_assignments(args.vary, "--vary").items()}
    args.study = Study(methods={k: methods[k] for k in wanted}, seeds=[int(s) for s in args.seeds.split(",")],
                       epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, jobs=args.jobs,
                       threads=args.threads, train_limit=args.train_limit, eval_per_class=args.eval_per_class,
                       baselines=not args.no_baselines and not args.ablate, supervised=args.supervised,
                       work_root=Path(args.work_dir), budget=None if args.ablate else args.budget,
                       teachers=args.teachers, depth_probe=not args.no_depth_probe and not args.ablate)
    args.name = args.name or (f"ablation_{args.ablate}" if args.ablate else "compare")
    return args


def _value(text: str) -> Any:
    """A ``--vary`` value: a number where it reads as one, else the string."""
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def readme_section(markdown: str, out_dir: Path, name: str) -> str:
    """The study's table and plots for benchmarks/README.md (image links relative to the README)."""
    body = markdown.split("\n", 1)[1]  # without the "# ..." title line
    title = markdown.split("\n", 1)[0].lstrip("# ")
    rel = out_dir.resolve().relative_to((REPO / "benchmarks").resolve())
    depth = (f"![accuracy against depth]({rel}/{name}_depth.png)\n"
             if "**Accuracy against depth**" in markdown else "")
    return (f"**{title}**\n{body}\n![loss curves]({rel}/{name}_loss.png)\n"
            f"![accuracy against pretraining compute]({rel}/{name}_accuracy.png)\n" + depth)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    out_dir = Path(args.out_dir)
    if args.ablate:
        results = json.loads(Path(args.render).read_text()) if args.render else run_ablation(
            args.study, args.ablate, args.variations)
        paths = write_ablation_reports(results, out_dir, args.name)
    else:
        results = json.loads(Path(args.render).read_text()) if args.render else run_study(args.study)
        paths = write_reports(results, out_dir, args.name)
    print(paths[1].read_text())
    print("wrote " + ", ".join(str(p) for p in paths))
    if args.update_readme and not args.ablate:
        replace_readme_section(REPO / "benchmarks" / "README.md", "compare", readme_section(
            paths[1].read_text(), out_dir, args.name))
    return results


def run_ablation(study: Study, method: str, variations: dict[str, list[Any]]) -> dict[str, Any]:
    """``method`` at its config and with each value of each varied key (one key at a time), every seed."""
    if not variations:
        raise ValueError("--ablate needs at least one --vary KEY=V1,V2,...")
    start = time.perf_counter()
    root = dataset_root(study)
    config, options = study_methods(study)[method]
    cases = [("default", None)] + [(key, value) for key, values in variations.items() for value in values]
    defaults = {key: config_value(load_config(config, options), key) for key in variations}
    jobs = [Job("pretrain", name=method, config=config, seed=seed, epochs=study.epochs,
                options={**options, **({} if key == "default" else {key: value})})
            for key, value in cases for seed in study.seeds]
    print(f"ablation of {method}: {len(cases)} settings x {len(study.seeds)} seeds, {study.epochs} epochs", flush=True)
    outputs = run_jobs(study, jobs, root)
    rows = []
    for i, (key, value) in enumerate(cases):
        runs = outputs[i * len(study.seeds):(i + 1) * len(study.seeds)]
        rows.append({"key": key, "value": value, "runs": runs})
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(study).items() if k != "methods"}
    return {"method": method, "config": str(config), "settings": settings, "defaults": defaults, "rows": rows,
            "seconds": time.perf_counter() - start, "evidence": environment(root=REPO)}


def config_value(cfg: Any, key: str) -> Any:
    """The value at a dotted key of a config (``None`` where it is not set: the algorithm's default applies)."""
    from mmengine.config import Config

    node = cfg.to_dict() if isinstance(cfg, Config) else cfg
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


if __name__ == "__main__":
    main()
