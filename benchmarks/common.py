"""What both benchmark scripts share: the catalogue's algorithms, combos and configs, building them as training runs
them, random stand-ins for teacher files, markdown tables and a record of the machine.

Which algorithms and combos exist and which config is each one's tiny or paper-size one is the catalogue's answer
(``CATALOGUE``, this checkout's ``model-index.yml``; :mod:`mim_zoo.engine.catalogue`), so an algorithm merged later
is benchmarked without editing this file; ``--config ALGO=PATH`` overrides either config.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import platform
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.optim import OptimWrapper, build_optim_wrapper
from torch import Tensor, nn

from mim_zoo.engine.catalogue import load_catalogue, replace_readme_section  # noqa: F401  (the scripts' too)
from mim_zoo.engine.env import cpu_model
from mim_zoo.engine.flops import bf16_supported  # noqa: F401  (the scripts' too)

REPO = Path(__file__).resolve().parents[1]
CATALOGUE = load_catalogue(REPO)
TEACHER_CACHE = REPO / "data" / "generated" / "benchmark_teachers"


def quiet_mmengine() -> None:
    """Make mmengine's current logger print warnings only (init and param-wise messages flood the output)."""
    if not MMLogger.check_instance_created("mim_zoo_benchmarks"):
        MMLogger.get_instance("mim_zoo_benchmarks", log_level="WARNING")
    MMLogger.get_current_instance().setLevel(logging.WARNING)


def parse_assignments(items: Sequence[str], what: str) -> dict[str, str]:
    """``["A=x", "B=y"]`` -> ``{"A": "x", "B": "y"}``, with a clear error on a malformed item."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise ValueError(f"{what} must look like NAME=VALUE, got {item!r}")
        out[key] = value
    return out


def load_config(path: str | os.PathLike, options: dict[str, Any] | None = None) -> Config:
    """A config as ``tools/train.py`` reads it, with ``options`` (``{"model.masking.ratio": 0.6}``) set and the recipe
    resolved for them (:mod:`mim_zoo.engine.recipe`: batch, lr, schedule and loop from ``recipe`` and the world size).

    Unlike ``--cfg-options``, a dict value *replaces* the entry (``{"model.masking": dict(type=...)}`` swaps the
    mask generator instead of merging its arguments into the old one's).
    """
    from mim_zoo.engine.recipe import resolve_recipe

    if not Path(path).is_file():
        raise FileNotFoundError(f"config {str(path)!r} does not exist")
    cfg = Config.fromfile(str(path))
    for key, value in (options or {}).items():
        *parents, leaf = key.split(".")
        node = cfg
        for part in parents:
            if part not in node:
                raise KeyError(f"option {key!r}: {path} has no entry {part!r}")
            node = node[part]
        node[leaf] = value
    resolve_recipe(cfg, overrides=options)
    return cfg


def _type_name(value: Any) -> str:
    """``TeacherTarget`` for the class, its name, or its dotted path."""
    return value.rsplit(".", 1)[-1] if isinstance(value, str) else getattr(value, "__name__", "")


def walk_dicts(obj: Any) -> Iterator[dict]:
    """Every dict inside a (config) tree of dicts and lists, depth first."""
    if isinstance(obj, dict):
        yield obj
        for value in obj.values():
            yield from walk_dicts(value)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            yield from walk_dicts(value)


def random_teacher_file(arch: str, model_kwargs: dict, keep_head: bool) -> Path:
    """A timm-layout file of a RANDOMLY INITIALISED ``arch`` (same FLOPs as the real teacher), cached on disk.

    Stored in fp16 (half the size; loading casts to the model's dtype). Written once per architecture.
    """
    import timm

    key = json.dumps([arch, model_kwargs, keep_head], sort_keys=True, default=str)
    path = TEACHER_CACHE / f"random_{arch}_{hashlib.sha1(key.encode()).hexdigest()[:10]}.pth"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        head = {} if keep_head else {"num_classes": 0}
        model = timm.create_model(arch, pretrained=False, **head, **model_kwargs)
        tmp = path.with_suffix(".tmp")
        torch.save({k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}, tmp)
        tmp.replace(path)
    return path


def randomize_teachers(model_cfg: dict) -> list[str]:
    """Point every ``TeacherTarget`` of a model config at a random-weight file of the same architecture.

    For cost measurement only: the FLOPs and memory of a teacher do not depend on its weights, and the real files
    (OpenAI CLIP, DINO) are large downloads. Returns one note per replaced teacher, to be shown with the numbers.
    """
    notes = []
    for node in walk_dicts(model_cfg):
        if _type_name(node.get("type")) != "TeacherTarget":
            continue
        kwargs = dict(node.get("model_kwargs") or {})
        node["checkpoint"] = str(random_teacher_file(node["arch"], kwargs, bool(node.get("project", False))))
        notes.append(f"teacher {node['arch']} has RANDOM weights (same architecture and FLOPs as the real file)")
    return notes


def build_algorithm(cfg: Config, random_teachers: bool = True) -> tuple[nn.Module, list[str]]:
    """Build ``cfg.model`` from mim_zoo's registry (after :func:`randomize_teachers` if asked), in train mode."""
    import mim_zoo  # noqa: F401
    from mim_zoo.registry import MODELS

    model_cfg = copy.deepcopy(cfg.model)
    notes = randomize_teachers(model_cfg) if random_teachers else []
    model = MODELS.build(model_cfg)
    model.init_weights()  # what the Runner does before training (encoders keep their official init)
    return model.train(), notes


def build_optimizer(model: nn.Module, optim_cfg: dict) -> OptimWrapper:
    """The config's optimizer as the Runner builds it (param-wise decay rules included), in a plain
    ``OptimWrapper``: benchmarks apply autocast themselves, so ``AmpOptimWrapper`` is not needed (and bf16 needs no
    loss scaling)."""
    cfg = dict(optim_cfg.to_dict() if hasattr(optim_cfg, "to_dict") else optim_cfg)
    cfg["type"] = OptimWrapper
    for key in ("loss_scale", "dtype"):
        cfg.pop(key, None)
    return build_optim_wrapper(model, cfg)


def total_loss(losses: dict[str, Tensor]) -> Tensor:
    """mmengine's ``parse_losses`` rule: the sum of every entry whose name contains "loss"."""
    terms = [value for name, value in losses.items() if "loss" in name]
    if not terms:
        raise ValueError(f"the loss dict has no entry containing 'loss': {sorted(losses)}")
    return sum(terms)


def input_size(encoder: nn.Module) -> tuple[int, int]:
    """``(H, W)`` of the images an encoder was built for: its token grid times its output stride."""
    grid, patch = encoder.grid_size, encoder.patch_size
    return grid[0] * patch, grid[1] * patch


def describe_encoder(encoder: nn.Module) -> str:
    """What identifies an encoder's architecture, from its ``EncoderProtocol`` members (and its size)."""
    grid = encoder.grid_size
    return (f"{type(encoder).__name__}(dim {encoder.embed_dim}, {grid[0]}x{grid[1]} tokens of {encoder.patch_size} "
            f"px, {count_parameters(encoder)['total'] / 1e6:.1f}M params)")


def count_parameters(model: nn.Module) -> dict[str, int]:
    params = list(model.parameters())
    return {"total": sum(p.numel() for p in params), "trainable": sum(p.numel() for p in params if p.requires_grad)}


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub markdown table; ``None`` cells print as an em dash."""
    def cell(value: Any) -> str:
        return "—" if value is None else str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def machine_info(device: torch.device, threads: int) -> dict[str, Any]:
    """What the numbers were measured on: versions, processor or GPU, threads, load average."""
    info: dict[str, Any] = {
        "torch": torch.__version__, "python": platform.python_version(), "platform": platform.platform(),
        "device": str(device), "threads": threads, "cpu_count": os.cpu_count(), "cpu": cpu_model(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["compute_capability"] = ".".join(map(str, torch.cuda.get_device_capability(device)))
        info["cuda"] = torch.version.cuda
    return info


