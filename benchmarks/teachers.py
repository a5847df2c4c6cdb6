"""MR-MAE in the comparison study with teachers that know something.

MR-MAE mimics frozen CLIP and DINO features; their weights cannot be downloaded here and its tiny config mimics
randomly initialised stand-ins, which says nothing about the method. The study instead gives every MR-MAE method
(``MRMAE`` and its combos) teachers pretrained *without labels* by the toolkit itself on the same embedded data: the
study's own MAE and BootMAE encoders (seed 0, the equal-epoch view), exported once per study to timm files
(``WORK_ROOT/teachers/<settings>/``) and loaded by :class:`mim_zoo.core.targets.TeacherTarget` like the real ones.
A supervised model of the same classes is never used: it would hand the student the labels the probes measure.

The teachers' own pretraining is not charged to MR-MAE's compute (as the papers do not charge CLIP's or DINO's);
running them is (their forward is in MR-MAE's FLOPs per image).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .common import CATALOGUE, load_config, random_teacher_file

TEACHERS = ("MAE", "BootMAE")  # the methods whose encoders teach, in this order
ENCODER_ONLY_KEYS = ("type", "pos_embed", "init", "grad_checkpointing", "sincos_layout")  # not timm arguments


def teacher_config(study: Any, method: str) -> Path:
    """A teacher method's tiny config: the study's (``--method`` may replace it), else the catalogue's."""
    return study.methods[method][0] if method in study.methods else CATALOGUE.tiny_config(method)


def teacher_dir(study: Any) -> Path:
    """Where one study's teacher files go: keyed by the settings that make the teachers (epochs, batch, lr, data,
    configs), so that an ablation of MR-MAE with the same settings finds them."""
    key = json.dumps([study.epochs, study.warmup_epochs, study.batch_size, study.lr, study.weight_decay,
                      study.train_limit, study.seeds[0], *(str(teacher_config(study, m)) for m in TEACHERS)],
                     default=str)
    return study.work_root / "teachers" / hashlib.sha1(key.encode()).hexdigest()[:10]


def teacher_path(study: Any, method: str) -> Path:
    return teacher_dir(study) / f"{method.lower()}_seed{study.seeds[0]}_{study.epochs}e.pth"


def uses_teachers(config: Path, options: dict[str, Any]) -> bool:
    """Whether a method's config builds MR-MAE (an algorithm that mimics teachers)."""
    model_type = load_config(config, options).model.type
    return (model_type if isinstance(model_type, str) else model_type.__name__).rsplit(".", 1)[-1] == "MRMAE"


def teacher_spec(config: Path, checkpoint: Path, student_norm: tuple[list[float], list[float]]) -> dict[str, Any]:
    """A ``TeacherTarget`` config for the encoder of ``config`` (a teacher method's tiny config) saved in
    ``checkpoint``: its timm architecture and sizes, its own input normalisation, the student's data normalisation."""
    cfg = load_config(config)
    encoder = dict(cfg.model.encoder)
    pre = cfg.model.get("data_preprocessor") or {}
    return dict(type="TeacherTarget", arch=encoder["arch"], checkpoint=str(checkpoint),
                model_kwargs={k: v for k, v in encoder.items() if k not in ENCODER_ONLY_KEYS and k != "arch"},
                mean=list(pre["mean"]), std=list(pre["std"]), input_mean=list(student_norm[0]),
                input_std=list(student_norm[1]), source=f"the study's own {config.parent.name} encoder")


def teacher_options(study: Any, student: Path, files: dict[str, Path]) -> dict[str, Any]:
    """The options that make an MR-MAE method mimic ``files`` (``{teacher method: timm file}``): its ``teachers``
    and one loss weight per teacher (1, as the config's two)."""
    pre = load_config(student).model.get("data_preprocessor") or {}
    norm = (list(pre["mean"]), list(pre["std"]))
    teachers = {name.lower(): teacher_spec(teacher_config(study, name), path, norm) for name, path in files.items()}
    return {"model.teachers": teachers,
            "model.loss_weights": {"rec": 1.0, **{f"mimic_{name}": 1.0 for name in teachers}}}


def stand_in_files(study: Any) -> dict[str, Path]:
    """Random-weight files of the teachers' architectures: the same FLOPs, for planning before the teachers exist."""
    files = {}
    for name in TEACHERS:
        spec = teacher_spec(teacher_config(study, name), Path("unused"), ([0.0] * 3, [1.0] * 3))
        files[name] = random_teacher_file(spec["arch"], spec["model_kwargs"], keep_head=False)
    return files


def export_teacher_file(encoder: nn.Module, path: Path) -> None:
    """Save an encoder's timm state dict (:meth:`export_state_dict`) as a teacher file, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(encoder.export_state_dict(), tmp)
    tmp.replace(path)
