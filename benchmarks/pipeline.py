"""The pretraining input pipeline alone: images/s per CPU core of decode + RandomResizedCrop(0.2-1, 224, bicubic) +
flip + packing into a batch, for each implementation of the ImageNet config, side by side.

    python -m benchmarks.pipeline                                    # 256 ImageNet-like JPEGs, 0 / 1 / 2 workers
    python -m benchmarks.pipeline --images ~/photos --workers 0,4,8  # your photographs (any folder of images)
    python -m benchmarks.pipeline --device cuda                      # nvjpeg decodes on the GPU, as in training
    python -m benchmarks.pipeline --num-images 16 --rounds 1 --workers 0,1 --out-dir /tmp/p   # smoke run

A *subject* is one ``pipeline_impl`` of ``configs/_base_/datasets/imagenet_pretrain.py`` (``mmpretrain``: what the
config trained with before, ``fast``, ``nvjpeg``), built exactly as training builds it (the config's pipeline,
sampler and collate function through ``Runner.build_dataloader``, its data preprocessor), optionally with arguments
of its first step changed: ``fast:dct_headroom=1`` decodes at the smallest DCT scale that keeps the crop >= 224,
``fast:dct_headroom=None`` every JPEG at full resolution. ``nvjpeg`` decodes in its data preprocessor, on
``--device``: on a CPU that is torchvision's libjpeg-turbo decoder, so only its loader columns (reading files and
sampling boxes: what the workers of a GPU run do) mean there what they mean on a GPU machine. The images are
photograph-like JPEGs of ImageNet's size and file-size distribution (``mim_zoo.synthetic.photos``, written once to
``data/generated/pipeline_photos/``) or ``--images DIR``.

For every worker count, each round times one epoch of every subject in turn (A B C A B C ...), after a warm-up epoch
of each (persistent workers, as the config has them, so worker start-up is not timed). Per epoch: images/s (wall),
the loader's CPU time (the process's ``getrusage`` and its workers' from ``/proc``, so Linux only) and from it the
**images/s per core** (images / CPU seconds), which a busy machine distorts less than wall time, and ``cpu_busy``
(CPU time / (wall x processes), ~1 on a quiet machine). The data preprocessor (normalisation; nvjpeg's decoding) is
timed apart, on ``--device``: on a GPU it runs there, not on the loader's cores. A fidelity pass compares every
subject's pixels with mmpretrain's under the same seed (identical crop boxes and flips by construction), and the
decode alone is timed as the floor of any CPU pipeline. Results: ``OUT_DIR/NAME.json`` and ``NAME.md``; see
benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import ast
import math
import os
import resource
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python benchmarks/pipeline.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    __package__ = "benchmarks"

import numpy as np  # noqa: E402
import torch  # noqa: E402

from .common import REPO, machine_info, quiet_mmengine, replace_readme_section  # noqa: E402
from .pipeline_report import summarise, to_markdown, write_reports  # noqa: E402

DATASET_CONFIG = REPO / "configs" / "_base_" / "datasets" / "imagenet_pretrain.py"
PHOTO_CACHE = REPO / "data" / "generated" / "pipeline_photos"
REFERENCE = "mmpretrain"  # the pipeline the others are compared with (the config's pipeline before this benchmark)


@dataclass
class Settings:
    images: str | None = None
    photo_dir: str = str(PHOTO_CACHE)
    max_side: int | None = None
    num_images: int = 256
    seed: int = 0
    quality: int = 90
    subjects: list[str] = field(default_factory=lambda: ["mmpretrain", "fast", "fast:dct_headroom=1",
                                                         "fast:dct_headroom=None", "nvjpeg"])
    workers: list[int] = field(default_factory=lambda: [0, 1, 2])
    batch_size: int = 32
    rounds: int = 3
    device: str = "cpu"
    fidelity_images: int = 64
    published_rate: float = 2000.0  # MAE ViT-B/16 img/s per A100 (DailyMAE, arXiv 2404.00509)


@dataclass
class Subject:
    """One pipeline: its label, ``pipeline_impl``, overridden first-step arguments, and what the config builds."""

    name: str
    impl: str
    overrides: dict[str, Any]
    loader_cfg: Any
    preprocessor: Any
    _dataset: Any = None

    def dataset(self) -> Any:
        """The dataset with this subject's pipeline (built once)."""
        from mmengine.registry import DATASETS

        if self._dataset is None:
            self._dataset = DATASETS.build(self.loader_cfg.dataset)
        return self._dataset


# --- the images --------------------------------------------------------------------------------------------------
def image_root(settings: Settings) -> Path:
    """An ImageNet-layout root (``root/train/<class>/...``): the synthetic photos, or links to ``--images``."""
    from mim_zoo.synthetic.photos import write_photo_folder

    if settings.images is None:
        stem = f"n{settings.num_images}_seed{settings.seed}_q{settings.quality}"
        root = Path(settings.photo_dir) / (stem + (f"_max{settings.max_side}" if settings.max_side else ""))
        write_photo_folder(root, settings.num_images, seed=settings.seed, quality=settings.quality,
                           max_side=settings.max_side)
        return root
    return link_images(Path(settings.images), settings.num_images)


def link_images(folder: Path, limit: int) -> Path:
    """Symbolic links to the first ``limit`` images under ``folder`` (recursively), in one class folder."""
    from mim_zoo.engine.config_checks import IMAGE_EXTENSIONS

    if not folder.is_dir():
        raise FileNotFoundError(f"--images {str(folder)!r} is not a directory")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)[:limit]
    if not files:
        raise FileNotFoundError(f"--images {str(folder)!r} holds no files with the extensions {IMAGE_EXTENSIONS}")
    root = Path(tempfile.mkdtemp(prefix="pipeline_images_"))
    (root / "train" / "images").mkdir(parents=True)
    for index, path in enumerate(files):
        (root / "train" / "images" / f"{index:06d}{path.suffix.lower()}").symlink_to(path.resolve())
    return root


def image_files(root: Path) -> list[Path]:
    return sorted(p for p in (root / "train").glob("*/*") if p.is_file())


def describe_images(files: list[Path]) -> dict[str, Any]:
    """Count, sizes, file sizes and formats of the benchmark's images (headers only)."""
    from PIL import Image

    sizes, formats = [], {}
    for path in files:
        with Image.open(path) as image:
            sizes.append(image.size)
            formats[image.format] = formats.get(image.format, 0) + 1
    width, height = np.array(sizes, dtype=float).T
    kib = np.array([p.stat().st_size for p in files]) / 1000
    return {"count": len(files), "mean_width": width.mean(), "mean_height": height.mean(),
            "median_size": [float(np.median(width)), float(np.median(height))],
            "mean_megapixels": float((width * height).mean() / 1e6), "mean_kb": float(kib.mean()),
            "kb_p10_p90": [float(x) for x in np.percentile(kib, [10, 90])], "formats": formats}


# --- the subjects ------------------------------------------------------------------------------------------------
def parse_subject(spec: str) -> tuple[str, dict[str, Any]]:
    """``"fast:dct_headroom=2,interpolation=bilinear"`` -> ``("fast", {"dct_headroom": 2, ...})``."""
    impl, _, args = spec.partition(":")
    overrides = {}
    for item in filter(None, args.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"subject {spec!r}: arguments look like IMPL:key=value[,key=value]")
        try:
            overrides[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            overrides[key] = value
    return impl, overrides


def build_subject(spec: str, root: Path, settings: Settings) -> Subject:
    """The config's pipeline ``impl`` (as :func:`mim_zoo.engine.pipeline.select_pipeline` installs it) on ``root``."""
    from mmengine.config import Config

    from mim_zoo.engine.pipeline import select_pipeline
    from mim_zoo.registry import MODELS

    impl, overrides = parse_subject(spec)
    cfg = Config.fromfile(str(DATASET_CONFIG))
    if impl not in cfg.pipelines:
        raise ValueError(f"unknown subject {impl!r}: the config's pipelines are {', '.join(cfg.pipelines)}")
    select_pipeline(cfg, impl)
    loader = cfg.train_dataloader
    loader.dataset.pipeline[0].update(overrides)
    classes = sorted(p.name for p in (root / "train").iterdir())
    loader.dataset.update(data_root=str(root), metainfo=dict(classes=classes))
    loader.update(batch_size=settings.batch_size, drop_last=False, pin_memory=settings.device.startswith("cuda"))
    preprocessor = MODELS.build(dict(cfg.data_preprocessor, type=cfg.pipelines[impl].data_preprocessor))
    return Subject(spec, impl, overrides, loader, preprocessor.to(settings.device))


def build_loader(subject: Subject, workers: int, seed: int) -> Any:
    from mmengine.runner import Runner

    from mim_zoo.engine.pipeline import resolve_workers

    cfg = subject.loader_cfg.to_dict()
    cfg["num_workers"] = workers
    resolve_workers(cfg)
    return Runner.build_dataloader(cfg, seed=seed)


# --- measuring ---------------------------------------------------------------------------------------------------
def _cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def children_cpu_seconds() -> float:
    """CPU seconds of this process's children: the live ones (persistent DataLoader workers, from ``/proc``) and
    the reaped ones (``getrusage``). Linux only."""
    me, tick = os.getpid(), os.sysconf("SC_CLK_TCK")
    total = _cpu_seconds(resource.RUSAGE_CHILDREN)
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:  # exited meanwhile
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) ": state, ppid, ..., utime (11), stime (12)
        if int(fields[1]) == me:
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def time_epoch(loader: Any) -> dict[str, float]:
    """One epoch: images, wall seconds, CPU seconds of this process and of its workers."""
    cpu_self, cpu_children = _cpu_seconds(resource.RUSAGE_SELF), children_cpu_seconds()
    start, images = time.perf_counter(), 0
    for batch in loader:
        images += len(batch["data_samples"])
    wall = time.perf_counter() - start
    return {"images": images, "wall": wall, "cpu_main": _cpu_seconds(resource.RUSAGE_SELF) - cpu_self,
            "cpu_workers": children_cpu_seconds() - cpu_children}


def time_preprocessor(subject: Subject, loader: Any, device: torch.device, batches: int = 3,
                      repeats: int = 3) -> dict[str, float]:
    """Wall and CPU seconds per image of the data preprocessor on ``device`` (best of ``repeats``)."""
    data = [batch for _, batch in zip(range(batches), loader, strict=False)]
    images = sum(len(b["data_samples"]) for b in data)
    best = {"wall_per_image": float("inf"), "cpu_per_image": float("inf")}
    with torch.no_grad():
        for _ in range(repeats):
            _sync(device)
            cpu, start = time.process_time(), time.perf_counter()
            for batch in data:
                subject.preprocessor(batch, True)
            _sync(device)
            best["wall_per_image"] = min(best["wall_per_image"], (time.perf_counter() - start) / images)
            best["cpu_per_image"] = min(best["cpu_per_image"], (time.process_time() - cpu) / images)
    return best


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def decode_floor(files: list[Path], repeats: int = 3) -> dict[str, float]:
    """CPU seconds per image of OpenCV's decode alone, best of ``repeats`` passes over ``files``: in full colour (what
    a full-resolution pipeline pays before cropping) and at 1/8 in greyscale (close to the entropy decoding alone,
    which no DCT scale or crop avoids: the floor of any CPU pipeline that decodes these files)."""
    import cv2

    data = [np.frombuffer(p.read_bytes(), np.uint8) for p in files]
    out = {}
    for name, flag in (("full_colour", cv2.IMREAD_COLOR), ("eighth_grey", cv2.IMREAD_REDUCED_GRAYSCALE_8)):
        best = math.inf
        for _ in range(repeats):
            start = time.process_time()
            for blob in data:
                cv2.imdecode(blob, flag)
            best = min(best, (time.process_time() - start) / len(data))
        out[name] = best
    return out


def fidelity(subjects: list[Subject], settings: Settings, device: torch.device) -> dict[str, Any]:
    """Pixels of every subject against :data:`REFERENCE` under the same seed per image: the crop boxes and flips
    are identical (the same numpy draws), so the difference is decoding and resizing alone.

    Returns per subject ``{"mean_abs", "max_abs", "frac_above_2", "psnr_db", "by_dct_scale": {s: {...}}}`` over
    uint8 BGR pixels, and the share of images decoded at each DCT scale.
    """
    reference = next((s for s in subjects if s.impl == REFERENCE and not s.overrides), None)
    if reference is None:
        return {}
    count = min(settings.fidelity_images, settings.num_images)
    ref_pixels = [_pixels(reference, i, settings.seed, device)[0] for i in range(count)]
    out = {}
    for subject in subjects:
        per_scale: dict[int, list[torch.Tensor]] = {}
        for index, expected in enumerate(ref_pixels):
            pixels, scale = _pixels(subject, index, settings.seed, device)
            per_scale.setdefault(scale, []).append((pixels.int() - expected.int()).abs())
        diffs = torch.stack([d for ds in per_scale.values() for d in ds])
        out[subject.name] = {**_diff_stats(diffs), "by_dct_scale": {
            str(s): {**_diff_stats(torch.stack(ds)), "images": len(ds)} for s, ds in sorted(per_scale.items())}}
    return out


def _pixels(subject: Subject, index: int, seed: int, device: torch.device) -> tuple[torch.Tensor, int]:
    """``[3, h, w]`` uint8 BGR of image ``index`` through ``subject``'s pipeline (and its device decoding), seeded;
    and the DCT scale its first step decoded at (1 if it does not say)."""
    from mim_zoo.engine.pipeline.device import decode_batch

    dataset = subject.dataset()
    np.random.seed(seed + index)
    results = dataset.pipeline.transforms[0](dataset.get_data_info(index))
    scale = int(results.get("dct_scale", 1))
    for transform in dataset.pipeline.transforms[1:]:
        results = transform(results)
    if subject.impl != "nvjpeg":
        return results["inputs"], scale
    return decode_batch([results["inputs"]], [results["data_samples"]], device)[0].cpu()[[2, 1, 0]], scale


def _diff_stats(diffs: torch.Tensor) -> dict[str, float]:
    mse = diffs.double().square().mean().item()
    return {"mean_abs": diffs.double().mean().item(), "max_abs": int(diffs.max()),
            "frac_above_2": (diffs > 2).double().mean().item(),
            "psnr_db": float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)}


def run(settings: Settings) -> dict[str, Any]:
    """Build every subject, time its epochs at every worker count in interleaved rounds, return the results."""
    import cv2

    quiet_mmengine()
    torch.set_num_threads(1)  # one core per process: what "per core" means; DataLoader workers use one each
    cv2.setNumThreads(0)  # as the configs' env_cfg (mp_cfg.opencv_num_threads=0) sets for training
    device = torch.device(settings.device)
    root = image_root(settings)
    subjects = [build_subject(spec, root, settings) for spec in settings.subjects]
    epochs: dict[str, dict[str, list]] = {s.name: {str(w): [] for w in settings.workers} for s in subjects}
    loaders = {(s.name, w): build_loader(s, w, settings.seed) for s in subjects for w in settings.workers}
    for loader in loaders.values():  # warm-up: page cache, lazy imports, decoders, the persistent workers' start
        time_epoch(loader)
    for round_index in range(settings.rounds):
        for workers in settings.workers:
            for subject in subjects:
                epoch = time_epoch(loaders[subject.name, workers])
                epochs[subject.name][str(workers)].append(epoch)
                print(f"  [round {round_index + 1}/{settings.rounds}, {workers} worker(s)] {subject.name}: "
                      f"{epoch['images'] / epoch['wall']:.0f} img/s", flush=True)
    preprocess = {s.name: time_preprocessor(s, loaders[s.name, settings.workers[0]], device) for s in subjects}
    raw = {"epochs": epochs, "preprocessor": preprocess, "fidelity": fidelity(subjects, settings, device),
           "decode_floor": decode_floor(image_files(root)),
           "subjects": {s.name: {"impl": s.impl, "overrides": s.overrides,
                                 "pipeline": [_step(t) for t in s.loader_cfg.dataset.pipeline]} for s in subjects}}
    machine = machine_info(device, torch.get_num_threads())
    return summarise(raw, dict(vars(settings)), machine, describe_images(image_files(root)), REFERENCE)


def _step(step: Any) -> str:
    args = ", ".join(f"{k}={v!r}" for k, v in step.items() if k != "type")
    return f"{getattr(step['type'], '__name__', step['type'])}({args})"


# --- command line ------------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> tuple[Settings, Path, str, bool]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", help="a folder of photographs (searched recursively) instead of synthetic ones")
    parser.add_argument("--num-images", type=int, default=256, help="images per epoch")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quality", type=int, default=90, help="JPEG quality of the synthetic images")
    parser.add_argument("--photo-dir", default=str(PHOTO_CACHE), help="where the synthetic images are written once")
    parser.add_argument("--max-side", type=int, help="shrink the synthetic images to fit (smoke runs only)")
    parser.add_argument("--subjects", nargs="+", default=Settings().subjects,
                        metavar="IMPL[:KEY=VALUE,...]", help="pipeline_impl values, with arguments of their first step")
    parser.add_argument("--workers", default="0,1,2", help="DataLoader worker counts (0: the main process alone)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds over all subjects")
    parser.add_argument("--device", default="cpu", help="where the data preprocessor runs: cpu or cuda[:N]")
    parser.add_argument("--fidelity-images", type=int, default=64, help="images compared pixel by pixel")
    parser.add_argument("--published-rate", type=float, default=2000.0,
                        help="img/s per GPU to size cores for (MAE ViT-B/16 on an A100, DailyMAE arXiv 2404.00509)")
    parser.add_argument("--out-dir", default=str(REPO / "benchmarks" / "results"))
    parser.add_argument("--name", help="output file stem (default: pipeline_<device type>)")
    parser.add_argument("--update-readme", action="store_true", help="put the report in benchmarks/README.md")
    args = parser.parse_args(argv)
    for spec in args.subjects:
        parse_subject(spec)
    settings = Settings(images=args.images, photo_dir=args.photo_dir, max_side=args.max_side,
                        num_images=args.num_images, seed=args.seed, quality=args.quality,
                        subjects=args.subjects, workers=[int(w) for w in args.workers.split(",")],
                        batch_size=args.batch_size, rounds=args.rounds, device=args.device,
                        fidelity_images=args.fidelity_images, published_rate=args.published_rate)
    if any(w < 0 for w in settings.workers) or settings.rounds < 1 or settings.num_images < 1:
        parser.error("--workers must be >= 0, --rounds and --num-images >= 1")
    name = args.name or f"pipeline_{torch.device(args.device).type}"
    return settings, Path(args.out_dir), name, args.update_readme


def main(argv: list[str] | None = None) -> dict[str, Any]:
    settings, out_dir, name, update_readme = parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    results = run(settings)
    json_path, md_path = write_reports(results, out_dir, name)
    print(md_path.read_text())
    print(f"wrote {json_path} and {md_path}")
    if update_readme:
        replace_readme_section(REPO / "benchmarks" / "README.md", "pipeline", to_markdown(results, level=4))
    return results


if __name__ == "__main__":
    main()
