"""Read a mim_zoo pretraining checkpoint and recover its encoder, and nothing else.

A pretraining checkpoint written by mmengine holds the whole algorithm (encoder, decoders, momentum encoders,
teachers) under ``state_dict`` and the resolved config as text under ``meta['cfg']``. Every mim_zoo algorithm keeps
its encoder at ``model.encoder``, so the encoder is rebuilt from ``cfg.model.encoder`` alone and loaded *strictly*
from the ``encoder.*`` keys: decoders, teachers and momentum copies are never built (MR-MAE's teacher files may be
absent where the benchmark runs). The result, :class:`PretrainedEncoder`, carries the encoder's canonical state dict
(``encoder.export_state_dict()``: plain timm keys for ViTs, mmpretrain ``MixMIMTransformer`` keys for MixMAE) that
the downstream converters (:mod:`mim_zoo.core.checkpoints.layouts`) map to mmpretrain/mmseg/mmdet layouts.

The saved config is *parsed*, never executed: ``meta['cfg']`` is mmengine's ``pretty_text``, a list of
``name = <literal>`` assignments with ``dict(...)`` calls, and classes of pure-Python configs appear as dotted
strings (``type='mim_zoo.core.encoders.ViTEncoder'``). :func:`parse_config_text` evaluates exactly that grammar, so a
checkpoint opened with ``torch.load(weights_only=True)`` cannot run code through its config either.
"""

from __future__ import annotations

import ast
import importlib
import os
import os.path as osp
import pickle
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from mmengine.registry import Registry
from torch import Tensor, nn

from ..contracts import ContractError, EncoderProtocol, check_plugin
from ..registry import MASK_GENERATORS, MODELS, TARGET_GENERATORS

ENCODER_PREFIX = "encoder."


class CheckpointError(ValueError):
    """A file is not a usable mim_zoo pretraining checkpoint (or its encoder does not load)."""


@dataclass
class PretrainedEncoder:
    """The encoder of a pretraining checkpoint, ready for conversion.

    Attributes:
        encoder: the rebuilt encoder adapter with the checkpoint's weights (e.g. ``ViTEncoder``).
        state_dict: ``encoder.export_state_dict()``, the canonical layout named by ``canonical``.
        canonical: ``"timm"`` (ViT) or ``"mmpretrain"`` (MixMIM Swin).
        method: the algorithm's class name from the saved config (``"MAE"``, ``"BootMAE"``, ...).
        epoch, iteration: training progress recorded by mmengine (``None`` if absent).
        encoder_cfg: the encoder config as saved.
        source: the checkpoint path.
        components: ``{slot: type name}`` of the algorithm's other configured parts (``masking``, ``target``,
            ``decoder``, ...; those saved with a ``type``), which tell a combo from its base algorithm.
    """

    encoder: nn.Module
    state_dict: dict[str, Tensor]
    canonical: str
    method: str
    epoch: int | None
    iteration: int | None
    encoder_cfg: dict
    source: str
    components: dict[str, str] = field(default_factory=dict)


# --- the saved config ------------------------------------------------------------------------------------------
class _NotLiteral(ValueError):
    """A node of the saved config that is not a plain literal (a call, a name, an expression)."""


def _literal(node: ast.AST) -> Any:
    """Evaluate the literal grammar of mmengine's ``pretty_text`` (constants, containers, ``dict(k=v)``, unary -)."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        items = [_literal(e) for e in node.elts]
        return {ast.List: list, ast.Tuple: tuple, ast.Set: set}[type(node)](items)
    if isinstance(node, ast.Dict):
        if any(k is None for k in node.keys):
            raise _NotLiteral("dict unpacking")
        return {_literal(k): _literal(v) for k, v in zip(node.keys, node.values, strict=True)}
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict" and not node.args:
        if any(kw.arg is None for kw in node.keywords):
            raise _NotLiteral("dict(**kwargs)")
        return {kw.arg: _literal(kw.value) for kw in node.keywords}
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _literal(node.operand)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return -value if isinstance(node.op, ast.USub) else value
    raise _NotLiteral(ast.dump(node)[:80])


def parse_config_text(text: str) -> dict[str, Any]:
    """The top-level ``name = literal`` assignments of a config text (mmengine ``pretty_text``), without executing it.

    Assignments whose value is not a literal (never produced by ``pretty_text``, possible in hand-written text)
    are skipped; :func:`saved_model_config` fails if ``model`` is among them.
    """
    values: dict[str, Any] = {}
    for stmt in ast.parse(text).body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            try:
                values[stmt.targets[0].id] = _literal(stmt.value)
            except _NotLiteral:
                continue
    return values


def checkpoint_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` is not a complete checkpoint file, in a few words, or ``None`` if it is one.

    ``torch.save`` writes a zip archive whose central directory comes last, so a file cut short (a killed write, an
    interrupted copy) is no zip archive; this check reads that directory only (cheap even for multi-GB files).
    Legacy non-zip files are loaded: a complete one pickling objects ``weights_only`` refuses counts as complete
    (reading it is :func:`read_checkpoint`'s business).
    """
    path = os.fspath(path)
    if not osp.isfile(path):
        return "it does not exist" if not osp.exists(path) else "it is not a file"
    size = osp.getsize(path)
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                if any(name.endswith("data.pkl") for name in archive.namelist()):
                    return None
        except (zipfile.BadZipFile, OSError) as err:
            return f"its zip archive is damaged ({err})"
        return "it is a zip archive without pickled data (data.pkl), not a torch.save file"
    if size == 0:
        return "it is empty (0 bytes)"
    try:
        torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "Unsupported global" in str(err):  # complete, with globals weights_only refuses
            return None
        reason = type(err).__name__
    except Exception as err:  # noqa: BLE001 - any other failure means "not usable"
        reason = type(err).__name__
    else:
        return None
    return (f"it is truncated or damaged: no complete zip archive (torch.save's format), and it does not load as "
            f"a legacy torch file either ({reason}; {size} bytes)")


def _load_refusal(err: Exception) -> str:
    """What ``torch.load(weights_only=True)`` refused, in one line: the global it does not allow, else the first
    line of its message (without the terminal escapes torch puts in it)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err)).strip()
    refused = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if refused:
        return f"it pickles {refused.group(1)}, which weights_only refuses"
    return text.splitlines()[0].rstrip(".") if text else type(err).__name__


def read_checkpoint(path: str | os.PathLike) -> dict:
    """``torch.load(path, weights_only=True)`` with errors that say what to do."""
    path = os.fspath(path)
    if not osp.isfile(path):
        raise FileNotFoundError(f"pretraining checkpoint {path!r} does not exist (e.g. work_dirs/<cfg>/epoch_800.pth)")
    problem = checkpoint_problem(path)
    if problem:
        raise CheckpointError(f"{path!r} is not a usable checkpoint: {problem}. Copy it again, or pass another "
                              "checkpoint (tools/train.py writes complete ones: WORK_DIR/epoch_N.pth)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises UnpicklingError or RuntimeError depending on the version
        raise CheckpointError(
            f"{path!r} cannot be opened with torch.load(weights_only=True): {_load_refusal(err)}. mim_zoo "
            "checkpoints are weights-only loadable (mim_zoo.engine.compat); convert a file you trust from elsewhere "
            "with `tools/convert_checkpoint.py` (`--list` shows the layouts it reads)."
        ) from err
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        keys = list(ckpt)[:8] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(
            f"{path!r} is not an mmengine checkpoint (no 'state_dict'; found {keys}). Pass a checkpoint written by "
            "`tools/train.py` (work_dirs/<cfg>/epoch_N.pth); official releases are converted first with "
            "`tools/convert_checkpoint.py`."
        )
    return ckpt


def saved_model_config(ckpt: dict, source: str = "checkpoint") -> dict:
    """``cfg.model`` of the config saved in ``ckpt['meta']['cfg']`` (parsed, not executed)."""
    text = ckpt.get("meta", {}).get("cfg")
    if not isinstance(text, str):
        raise CheckpointError(
            f"{source} has no saved config (meta['cfg']), so its encoder cannot be rebuilt. Checkpoints of "
            "`tools/train.py` save it, and so does `tools/convert_checkpoint.py` (an official file converted by an "
            "older version: convert it again)."
        )
    model = parse_config_text(text).get("model")
    if not isinstance(model, dict) or not isinstance(model.get("encoder"), dict):
        raise CheckpointError(
            f"the config saved in {source} has no literal `model.encoder` dict; every mim_zoo algorithm keeps its "
            "encoder at model.encoder"
        )
    return model


# --- the encoder -----------------------------------------------------------------------------------------------
# Modules (and packages, with their submodules) that held plugin classes before the three-tier layout
# (CHANGELOG, 0.2.0), as checkpoints written then name them in their saved config.
MOVED_MODULES = {"mim_zoo.encoders": "mim_zoo.core.encoders", "mim_zoo.mixmim_encoder": "mim_zoo.core.encoders.mixmim",
                 "mim_zoo.algorithms": "mim_zoo.core.algorithms", "mim_zoo.masking": "mim_zoo.core.masking",
                 "mim_zoo.targets": "mim_zoo.core.targets"}
PLUGIN_REGISTRIES = (MODELS, MASK_GENERATORS, TARGET_GENERATORS)


def _moved(module: str) -> str:
    for old, new in MOVED_MODULES.items():
        if module == old or module.startswith(old + "."):
            return new + module[len(old):]
    return module


def resolve_type(type_name: Any, registries: tuple[Registry, ...] = (MODELS,)) -> type:
    """A registered mim_zoo class from a saved ``type`` (a name, ``scope.Name`` or a dotted import path).

    Only classes registered in ``registries`` (default :data:`mim_zoo.registry.MODELS`) are accepted: a checkpoint
    cannot name an arbitrary callable. A dotted path must lead, inside the ``mim_zoo`` package, to that registered
    class (the module a config imported it from, or a module of :data:`MOVED_MODULES`); nothing outside ``mim_zoo``
    is imported.
    """
    if not isinstance(type_name, str):
        raise CheckpointError(f"a saved type must be a string, got {type_name!r}")
    module, _, name = type_name.rpartition(".")
    cls = next((r.get(name) for r in registries if r.get(name) is not None), None)
    if cls is None:
        raise CheckpointError(
            f"type {type_name!r} of the checkpoint is not a registered mim_zoo model or plugin. If it comes from a "
            "project, import the module that registers it before loading (the `custom_imports` of its config)."
        )
    if module in ("", "mim_zoo") or _module_attribute(_moved(module), name) is cls:
        return cls
    raise CheckpointError(f"type {type_name!r} does not match the registered {cls.__module__}.{name}")


def _resolve_types(cfg: Any) -> Any:
    """``cfg`` with every ``type`` string replaced by its registered class (:func:`resolve_type`)."""
    if isinstance(cfg, dict):
        out = {k: _resolve_types(v) for k, v in cfg.items()}
        if isinstance(cfg.get("type"), str):
            out["type"] = resolve_type(cfg["type"], PLUGIN_REGISTRIES)
        return out
    if isinstance(cfg, (list, tuple)):
        return type(cfg)(_resolve_types(v) for v in cfg)
    return cfg


def build_saved_algorithm(model_cfg: dict) -> nn.Module:
    """The algorithm a saved ``cfg.model`` describes, built with registered mim_zoo classes only. Its data
    preprocessor (no weights; it may name other libraries' classes) is left out: mmengine's default stands in."""
    return MODELS.build(_resolve_types({k: v for k, v in model_cfg.items() if k != "data_preprocessor"}))


def _module_attribute(module: str, name: str) -> Any:
    """``module.name`` for a module of the mim_zoo package, else ``None``."""
    if module.split(".")[0] != "mim_zoo":
        return None
    try:
        return getattr(importlib.import_module(module), name, None)
    except ImportError:
        return None


def encoder_weights(state_dict: dict[str, Tensor], source: str = "checkpoint") -> dict[str, Tensor]:
    """The ``encoder.*`` entries of an algorithm state dict, prefix removed (decoders, targets, teachers dropped)."""
    weights = {}
    for key, value in state_dict.items():
        key = key[len("module."):] if key.startswith("module.") else key  # a DDP-wrapped save
        if key.startswith(ENCODER_PREFIX):
            weights[key[len(ENCODER_PREFIX):]] = value
    if not weights:
        prefixes = sorted({k.split(".", 1)[0] for k in state_dict})
        raise CheckpointError(
            f"{source} has no 'encoder.*' weights (top-level names: {', '.join(prefixes)}); mim_zoo algorithms keep "
            "their encoder at model.encoder. Is this a mim_zoo pretraining checkpoint?"
        )
    return weights


def load_encoder_strict(encoder: nn.Module, weights: dict[str, Tensor], source: str) -> None:
    """Load ``weights`` into ``encoder``: every key and shape must match, or a :class:`CheckpointError` lists why."""
    mismatch = describe_state_dict_mismatch(encoder.state_dict(), weights, limit=8)
    if mismatch:
        raise CheckpointError(
            f"the encoder weights of {source} do not fit the encoder its config describes: {mismatch}. "
            "The checkpoint was edited, or written by another algorithm/encoder size than its saved config.")
    encoder.load_state_dict(weights, strict=True)


def load_pretrained_encoder(path: str | os.PathLike) -> PretrainedEncoder:
    """Rebuild and load the encoder of a mim_zoo pretraining checkpoint (see the module docstring)."""
    source = os.fspath(path)
    ckpt = read_checkpoint(source)
    model_cfg = saved_model_config(ckpt, source)
    encoder_cfg = dict(model_cfg["encoder"])
    encoder_cls = resolve_type(encoder_cfg.get("type"))
    kwargs = {k: v for k, v in encoder_cfg.items() if k != "type"}
    encoder = encoder_cls(**kwargs)
    load_encoder_strict(encoder, encoder_weights(ckpt["state_dict"], source), source)
    encoder.eval()
    try:
        check_plugin(encoder, EncoderProtocol, f"the encoder of {source}")
    except ContractError as err:
        raise CheckpointError(str(err)) from err
    meta = ckpt.get("meta", {})
    return PretrainedEncoder(
        encoder=encoder, state_dict=encoder.export_state_dict(), canonical=encoder.canonical,
        method=_type_name(model_cfg),
        epoch=meta.get("epoch"), iteration=meta.get("iter"), encoder_cfg=encoder_cfg, source=source,
        components=model_components(model_cfg),
    )


def model_components(model_cfg: dict) -> dict[str, str]:
    """``{slot: class name}`` of the parts of a saved algorithm config that name a ``type``, the encoder excepted
    (``{'masking': 'BlockMasking', 'target': 'PixelTarget', 'data_preprocessor': ...}``)."""
    return {slot: _type_name(cfg) for slot, cfg in model_cfg.items()
            if slot != "encoder" and isinstance(cfg, dict) and "type" in cfg}


def _type_name(cfg: dict) -> str:
    """The class name of a saved ``type`` (``'mim_zoo.core.masking.BlockMasking'`` -> ``'BlockMasking'``)."""
    return str(cfg.get("type", "unknown")).rsplit(".", 1)[-1]


def describe_state_dict_mismatch(expected: Mapping[str, Tensor], given: Mapping[str, Tensor],
                                 limit: int = 6) -> str | None:
    """Missing, unexpected and shape-mismatched keys of ``given`` against ``expected``; ``None`` if they fit."""
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    shapes = sorted(k for k in set(expected) & set(given)
                    if tuple(expected[k].shape) != tuple(given[k].shape))
    if not (missing or unexpected or shapes):
        return None

    def show(keys: list[str]) -> str:
        return ", ".join(keys[:limit]) + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")

    lines = []
    if shapes:
        lines.append("shape mismatch (checkpoint vs model): " + show(
            [f"{k} {list(given[k].shape)} vs {list(expected[k].shape)}" for k in shapes]))
    if missing:
        lines.append(f"missing in the checkpoint: {show(missing)}")
    if unexpected:
        lines.append(f"not in the model: {show(unexpected)}")
    return "; ".join(lines)
