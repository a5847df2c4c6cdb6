"""The pieces of the comparison study that run in worker processes: one pretraining run and its evaluation, the
labelled evaluation data, and the reference rows (raw pixels, colour statistics, random-init encoders, a
supervised encoder).

Every method's run goes through the mmengine Runner with the method's tiny config, so its hooks (EMA momentum,
loss-weight ramps) run exactly as in ``tools/train.py``; :func:`study_config` imposes the shared settings.
"""

from __future__ import annotations

import functools
import math
import multiprocessing
import statistics
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.hooks import Hook
from PIL import Image
from torch import Tensor, nn

from mim_zoo.engine.probes import (
    MEAN,
    chunks,
    depth_features,
    extract_features,
    knn_accuracy,
    linear_probe,
    pool,
    probe_depths,
)

from .common import REPO, count_parameters, load_config, quiet_mmengine, total_loss
from .measure import flops_per_image
from .teachers import export_teacher_file

IMAGENET_NORM = ([123.675, 116.28, 103.53], [58.395, 57.12, 57.375])


@dataclass
class Study:
    """The settings every method shares (see ``compare.py``)."""

    methods: dict[str, tuple[Path, dict[str, Any]]]
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    epochs: int = 12
    warmup_epochs: int = 1
    batch_size: int = 32
    lr: float = 4e-3
    weight_decay: float = 0.05
    threads: int = 1  # per worker process
    jobs: int = 2  # worker processes
    train_limit: int | None = None  # pretraining images per epoch (None: the whole train split)
    eval_per_class: int | None = None  # evaluation images per class and split (None: all)
    baselines: bool = True
    supervised: bool = False
    work_root: Path = REPO / "work_dirs" / "compare"
    # the equal-compute view: pretraining FLOPs per run, a method's name (its compute at `epochs`), or None (off)
    budget: float | str | None = "MAE"
    teachers: str = "study"  # MR-MAE's teachers: "study" (the study's MAE / BootMAE encoders) or "config" (random)
    depth_probe: bool = True  # probe every block / stage of each equal-epoch run


@dataclass(frozen=True)
class Job:
    """One unit of work: ``kind`` is ``"pretrain"`` (a method and seed), ``"pixels"`` or ``"supervised"``.

    A pretraining job runs ``epochs`` (0: the study's), belongs to a ``view`` (``"epochs"``: equal epochs,
    ``"compute"``: equal compute), probes every depth if ``depth_probe`` and, with ``export_teacher``, writes its
    encoder there as a teacher file for MR-MAE (:mod:`benchmarks.teachers`).
    """

    kind: str
    name: str = ""
    config: Path | None = None
    options: dict[str, Any] = field(default_factory=dict, hash=False)
    seed: int = 0
    with_random_init: bool = False
    epochs: int = 0
    view: str = "epochs"
    depth_probe: bool = False
    export_teacher: str | None = None
    after_teachers: bool = False  # waits for the jobs that export the study's teachers


# --- pretraining ---------------------------------------------------------------------------------------------------
class RunRecorder(Hook):
    """Records the total loss of every iteration and the wall time of the training loop."""

    priority = "VERY_LOW"

    def __init__(self) -> None:
        self.losses: list[float] = []
        self.images = 0
        self.start = self.seconds = 0.0

    def before_train(self, runner: Any) -> None:
        self.start = time.perf_counter()

    def after_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: Any = None) -> None:
        self.losses.append(float(outputs["loss"].detach()) if isinstance(outputs["loss"], Tensor) else outputs["loss"])
        self.images += len(data_batch["inputs"])

    def after_train(self, runner: Any) -> None:
        self.seconds = time.perf_counter() - self.start


def study_config(config: Path, options: dict[str, Any], study: Study, seed: int, work_dir: Path,
                 epochs: int = 0) -> Any:
    """The method's tiny config with the study's shared training settings imposed (types by registered name, so
    the Runner can dump the config), for ``epochs`` (0: the study's)."""
    epochs = epochs or study.epochs
    cfg = load_config(config, options)
    # one process x the study's batch, its lr as given (not scaled), its epochs; prepare_config derives the rest
    cfg.recipe.update(batch_per_gpu=study.batch_size, base_lr=study.lr, lr_scaling="none", epochs=epochs)
    cfg.train_dataloader.dataset.pop("indices", None)
    if study.train_limit:
        cfg.train_dataloader.dataset.indices = study.train_limit
    cfg.optim_wrapper.optimizer.update(weight_decay=study.weight_decay, betas=(0.9, 0.95))
    if "AdamW" in str(cfg.optim_wrapper.optimizer.type):
        cfg.optim_wrapper.optimizer.fused = True  # same update, one pass over each tensor
    warmup = min(study.warmup_epochs, epochs)
    cfg.param_scheduler = [  # the study's own schedule shape (warm-up from 1e-3 of the lr), the same for every method
        dict(type="LinearLR", start_factor=1e-3, by_epoch=True, begin=0, end=warmup, convert_to_iter_based=True),
        dict(type="CosineAnnealingLR", eta_min=0.0, by_epoch=True, begin=warmup, end=max(epochs, warmup + 1),
             convert_to_iter_based=True),
    ]
    cfg.randomness = dict(seed=seed, diff_rank_seed=False, deterministic=False)
    cfg.work_dir, cfg.experiment_name, cfg.log_level = str(work_dir), f"compare_{uuid.uuid4().hex[:8]}", "WARNING"
    cfg.default_hooks.checkpoint = dict(type="CheckpointHook", interval=-1, save_last=False)
    cfg.default_hooks.logger = dict(type="LoggerHook", interval=10**9)
    cfg.visualizer = dict(type="Visualizer", vis_backends=[dict(type="LocalVisBackend")])
    cfg.env_cfg.mp_cfg.mp_start_method = multiprocessing.get_start_method()  # keep the worker's (no data workers)
    return cfg


def pretrain(config: Path, options: dict[str, Any], study: Study, seed: int, work_dir: Path,
             epochs: int = 0) -> tuple[nn.Module, dict]:
    """Train one method with the mmengine Runner; return the model (eval mode) and what the run recorded (its
    losses, speed and the evidence of :class:`mim_zoo.engine.hooks.RunEvidenceHook`)."""
    from mmengine.model import is_model_wrapper
    from mmengine.runner import Runner

    from mim_zoo.engine.config import prepare_config
    from mim_zoo.engine.hooks import RunEvidenceHook

    cfg = prepare_config(study_config(config, options, study, seed, work_dir, epochs))
    runner = Runner.from_cfg(cfg)
    recorder = RunRecorder()
    runner.register_hook(recorder)
    runner.train()
    model = runner.model.module if is_model_wrapper(runner.model) else runner.model
    tail = recorder.losses[-max(1, len(recorder.losses) // 20):]  # the last 5% of iterations
    proof = next(h for h in runner.hooks if isinstance(h, RunEvidenceHook)).record()
    record = {"losses": recorder.losses, "seconds": recorder.seconds, "images": recorder.images,
              "img_per_s": recorder.images / max(recorder.seconds, 1e-9), "final_loss": statistics.mean(tail),
              "norm": normalisation(cfg), "random_teachers": uses_random_teachers(cfg),
              "epochs": cfg.train_cfg.max_epochs, "config_hash": proof["config_hash"],
              "utilisation": proof["sessions"][-1]["utilisation"], "git_commit": proof["git_commit"]}
    return model.eval(), record


def uses_random_teachers(cfg: Any) -> bool:
    """Whether any of the model's teachers is a random file of :func:`mim_zoo.synthetic.teachers.generate_teachers`
    (the tiny configs'; the study's own teachers replace them, :mod:`benchmarks.teachers`)."""
    from mim_zoo.synthetic.teachers import generate_teachers

    random_files = {Path(teacher["path"]) for spec in cfg.get("synthetic_data") or []
                    if spec.get("type") is generate_teachers for teacher in spec["specs"]}
    teachers = (cfg.model.get("teachers") or {}).values()
    return any(Path(teacher["checkpoint"]) in random_files for teacher in teachers)


def normalisation(cfg: Any) -> tuple[list[float], list[float]]:
    """The data preprocessor's mean and std (0-255, RGB order), which evaluation applies too."""
    pre = cfg.model.get("data_preprocessor") or cfg.get("data_preprocessor") or {}
    return list(pre.get("mean", [0.0, 0.0, 0.0])), list(pre.get("std", [255.0, 255.0, 255.0]))


# --- evaluation data -----------------------------------------------------------------------------------------------
@dataclass
class LabelledSplits:
    """uint8 RGB images ``[N, 3, H, W]`` and labels of the train and val splits."""

    train: Tensor
    train_labels: Tensor
    val: Tensor
    val_labels: Tensor
    classes: list[str]

    def normalised(self, norm: tuple[list[float], list[float]]) -> tuple[Tensor, Tensor]:
        mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in norm)
        return (self.train.float() - mean) / std, (self.val.float() - mean) / std


@functools.lru_cache(maxsize=2)
def load_splits(root: Path, per_class: int | None = None) -> LabelledSplits:
    """Both splits of an ImageNet-layout folder (``root/{train,val}/<class>/*.JPEG``), classes in sorted order."""
    classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    splits = []
    for split in ("train", "val"):
        images, labels = [], []
        for label, name in enumerate(classes):
            files = sorted((root / split / name).glob("*.JPEG"))[:per_class]
            images += [np.asarray(Image.open(f).convert("RGB")) for f in files]
            labels += [label] * len(files)
        splits += [torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous(), torch.tensor(labels)]
    return LabelledSplits(*splits, classes=classes)


def evaluate(encoder: nn.Module, data: LabelledSplits, norm: tuple[list[float], list[float]], seed: int,
             depth: bool = False) -> dict:
    """Linear-probe and k-NN top-1 of an encoder's frozen features (:mod:`mim_zoo.engine.probes`); with ``depth``
    also the same probe on every block / stage (``"depth_probe"``: one row per layer), whose final-norm mean row is
    the linear probe."""
    train, val = data.normalised(norm)
    if not depth:
        return evaluate_features(extract_features(encoder, train), extract_features(encoder, val), data, seed)
    f_train, f_val = depth_features(encoder, chunks(train)), depth_features(encoder, chunks(val))
    rows = probe_depths(f_train, data.train_labels, f_val, data.val_labels, seed=seed)
    final = max(layer for layer in f_train if layer.pooling == MEAN)  # the final norm, mean of the patch tokens
    row = next(r for r in rows if (r["depth"], r["pooling"]) == (final.depth, MEAN))
    return {**evaluate_features(f_train[final], f_val[final], data, seed, linear=row), "depth_probe": rows}


def evaluate_features(f_train: Tensor, f_val: Tensor, data: LabelledSplits, seed: int = 0,
                      linear: dict | None = None) -> dict:
    """Linear probe (or the given row of :func:`probe_depths`) and k-NN on ``[N, D]`` features."""
    probe = linear_probe(f_train, data.train_labels, f_val, data.val_labels, seed=seed) if linear is None else {
        "top1": linear["top1"] / 100, "weight_decay": linear["weight_decay"]}
    return {"linear_top1": probe["top1"], "linear_weight_decay": probe["weight_decay"],
            "knn_top1": knn_accuracy(f_train, data.train_labels, f_val, data.val_labels),
            "feature_dim": int(f_val.shape[1])}


def pixel_baselines(data: LabelledSplits) -> dict[str, dict]:
    """Raw pixels (ImageNet-normalised, flattened) and per-image colour statistics (mean and std per channel):
    the second shows how far colour alone goes (the generator draws colours independently of the class)."""
    train, val = data.normalised(IMAGENET_NORM)

    def colour(x: Tensor) -> Tensor:
        return torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3))], dim=1)  # [N, 6]

    return {"raw pixels": evaluate_features(train.flatten(1), val.flatten(1), data),
            "colour statistics": evaluate_features(colour(train), colour(val), data)}


# --- reference encoders --------------------------------------------------------------------------------------------
def encoder_key(model: nn.Module) -> str:
    encoder = model.encoder
    return (f"{type(encoder).__name__} dim {encoder.embed_dim}, "
            f"{count_parameters(encoder)['total'] / 1e6:.2f}M params")


def build_initialised(config: Path, options: dict[str, Any], study: Study, seed: int) -> tuple[nn.Module, Any]:
    """The method's model as the Runner initialises it (seeded), and its prepared study config."""
    from mim_zoo.engine.config import prepare_config
    from mim_zoo.registry import MODELS

    cfg = prepare_config(study_config(config, options, study, seed, study.work_root / "init"))
    torch.manual_seed(seed)
    model = MODELS.build(cfg.model)
    model.init_weights()
    return model, cfg


def method_flops(config: Path, options: dict[str, Any], study: Study) -> float:
    """Matmul FLOPs per image of one training step of a method as the study builds it (as measured after training,
    :func:`pretrain_and_evaluate`; teachers and momentum encoders included), before any training."""
    model, _ = build_initialised(config, options, study, seed=0)
    size = model.encoder.grid_size[0] * model.encoder.patch_size
    images = torch.randn(8, 3, size, size, generator=torch.Generator().manual_seed(0))
    return flops_per_image(lambda x: total_loss(model.train()(x, mode="loss")), images)


def supervised_reference(config: Path, options: dict[str, Any], study: Study, data: LabelledSplits,
                         seed: int) -> dict:
    """An upper reference: the method's encoder trained end to end with labels (average pool + linear head,
    cross-entropy), same epochs, batch, AdamW settings and schedule shape; random shift (pad 4 + crop) and flip."""
    model, cfg = build_initialised(config, options, study, seed)
    encoder, (train, val) = model.encoder.train(), data.normalised(normalisation(cfg))
    head = nn.Linear(extract_features(encoder, val[:2]).shape[1], len(data.classes))
    params = [p for p in [*encoder.parameters(), *head.parameters()] if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=study.lr, betas=(0.9, 0.95), weight_decay=study.weight_decay)
    steps_per_epoch = len(train) // study.batch_size
    total, warmup = study.epochs * steps_per_epoch, study.warmup_epochs * steps_per_epoch
    generator = torch.Generator().manual_seed(seed)
    for step in range(total):
        for group in optimizer.param_groups:
            group["lr"] = study.lr * (step / max(warmup, 1) if step < warmup else
                                      0.5 * (1 + math.cos(math.pi * (step - warmup) / max(total - warmup, 1))))
        idx = torch.randint(len(train), (study.batch_size,), generator=generator)
        images = _shift_and_flip(train[idx], generator)
        logits = head(pool(encoder, encoder(images)))
        loss = F.cross_entropy(logits, data.train_labels[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        end_to_end = (head(extract_features(encoder, val)).argmax(1) == data.val_labels).float().mean().item()
    return {"end_to_end_top1": end_to_end, **evaluate(encoder, data, normalisation(cfg), seed)}


def _shift_and_flip(images: Tensor, generator: torch.Generator, pad: int = 4) -> Tensor:
    """One random shift (reflect-pad, crop) and horizontal flip for the whole batch ``[B, 3, H, W]``."""
    h, w = images.shape[-2:]
    padded = F.pad(images, (pad,) * 4, mode="reflect")
    top, left = (int(v) for v in torch.randint(0, 2 * pad + 1, (2,), generator=generator))
    out = padded[:, :, top : top + h, left : left + w]
    return out.flip(3) if bool(torch.rand((), generator=generator) < 0.5) else out


# --- one job -------------------------------------------------------------------------------------------------------
def run_job(study: Study, job: Job, data_root: Path) -> dict[str, Any]:
    """Do one job in this process (a worker of ``compare.py``) and return its JSON-able record, with the job's
    ``cpu_seconds`` (process CPU time: with one thread per worker, the job's wall time on a quiet machine)."""
    cpu0 = time.process_time()
    torch.set_num_threads(study.threads)
    quiet_mmengine()
    import mim_zoo  # noqa: F401  (registers the plugins in a fresh worker)

    data = load_splits(data_root, study.eval_per_class)
    if job.kind == "pixels":
        record = pixel_baselines(data)
    elif job.kind == "supervised":
        record = supervised_reference(job.config, job.options, study, data, job.seed)
    else:
        record = pretrain_and_evaluate(study, job, data)
    return {**record, "cpu_seconds": time.process_time() - cpu0}


def pretrain_and_evaluate(study: Study, job: Job, data: LabelledSplits) -> dict[str, Any]:
    model, record = pretrain(job.config, job.options, study, job.seed, study.work_root / run_name(job), job.epochs)
    record.update(evaluate(model.encoder, data, record.pop("norm"), job.seed, job.depth_probe))
    size = model.encoder.grid_size[0] * model.encoder.patch_size
    images = torch.randn(8, 3, size, size, generator=torch.Generator().manual_seed(0))
    record.update(flops_per_image=flops_per_image(lambda x: total_loss(model.train()(x, mode="loss")), images),
                  encoder=encoder_key(model), params=count_parameters(model),
                  encoder_params=count_parameters(model.encoder), view=job.view)
    if job.export_teacher:
        export_teacher_file(model.encoder, Path(job.export_teacher))
    if job.with_random_init:
        initialised, cfg = build_initialised(job.config, job.options, study, job.seed)
        record["random_init"] = evaluate(initialised.encoder, data, normalisation(cfg), job.seed)
    print(f"  {job.name} seed {job.seed}, {record['epochs']} epochs ({job.view} view): loss "
          f"{record['final_loss']:.4f}, linear {record['linear_top1']:.1%}, k-NN {record['knn_top1']:.1%}, "
          f"{record['img_per_s']:.0f} img/s", flush=True)
    return record


def run_name(job: Job) -> str:
    """The job's work-dir name: method, seed, epochs."""
    return f"{job.name}_{job.seed}_{job.epochs or 'e'}".replace(" ", "_").replace("+", "")
