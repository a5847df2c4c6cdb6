"""A converted checkpoint that continues, evaluates, exports and benchmarks like one ``tools/train.py`` wrote.

:func:`convert_checkpoint` applies a :class:`~.sources.SourceLayout` to a loaded file and, for algorithm layouts,
records the mim_zoo config the weights belong to: the first of the candidate configs whose model loads every
converted tensor (an explicit one, or the paper-size configs of the layout's algorithm, which ``tools/`` take from
the catalogue), with the layout's ``cfg_options`` applied. The result is an mmengine-style checkpoint:
``state_dict`` in mim_zoo's keys and ``meta['cfg']`` (that config's text, as the Runner saves it), so
``load_pretrained_encoder`` (``tools/export.py``, ``tools/benchmark.py``, every downstream backbone) rebuilds its
encoder, and ``load_from`` continues it. Teacher layouts give a timm state dict instead.
"""

from __future__ import annotations

import os.path as osp
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mmengine.config import Config
from mmengine.utils import import_modules_from_strings
from torch import nn

from ..registry import MODELS
from .check import FitReport, fit_report
from .keys import ConversionError, StateDict
from .read import CheckpointError, build_saved_algorithm, saved_model_config
from .sources import SourceLayout, source_layout
from .teachers import model_kwargs_of, teacher_model


@dataclass
class ConversionResult:
    """``checkpoint``: the object to ``torch.save``; ``report``: how it fits its model; ``config``: the recorded
    config file (``None`` for teachers and for mim_zoo files that keep their own)."""

    checkpoint: dict[str, Any]
    report: FitReport
    layout: SourceLayout
    config: str | None = None


def _model_of(config: str, cfg_options: dict) -> tuple[Config, nn.Module]:
    cfg = Config.fromfile(config)
    cfg.merge_from_dict(dict(cfg_options))
    if cfg.get("custom_imports"):  # a project's plugins (pure-Python configs do not import them by themselves)
        import_modules_from_strings(**cfg.custom_imports)
    return cfg, MODELS.build(cfg.model)


def fit_config(state_dict: StateDict, layout: SourceLayout, configs: Sequence[str]) -> tuple[Config, str, FitReport]:
    """The first of ``configs`` whose model takes every tensor of ``state_dict`` (``layout.absent`` aside)."""
    if not configs:
        raise CheckpointError(f"no config to record for a {layout.name!r} file: pass the mim_zoo config of its "
                              "architecture (--config configs/<algorithm>/<config>.py)")
    failures = []
    for config in configs:
        cfg, model = _model_of(config, layout.cfg_options)
        report = fit_report(model, state_dict, layout.absent)
        if report.ok:
            return cfg, config, report
        failures.append(f"{config}:\n  " + report.summary().replace("\n", "\n  "))
    raise CheckpointError(f"the converted {layout.name!r} weights fit none of the configs tried; pass the config of "
                          "this architecture with --config.\n" + "\n".join(failures))


def convert_checkpoint(checkpoint: Any, layout: str, source: str, configs: Sequence[str] = ()) -> ConversionResult:
    """Convert a loaded file of ``layout`` (read from ``source``) and record what it belongs to (module docstring).

    Args:
        checkpoint: what ``torch.load`` returned (or a TorchScript archive's state dict, for teachers).
        layout: a :data:`~.sources.SOURCES` name.
        source: the file's path, recorded in the meta.
        configs: candidate configs, tried in order; files that carry their own config keep it when none is given.
    """
    entry = source_layout(layout)
    try:
        state = entry.convert(checkpoint)
    except (KeyError, ValueError) as err:  # ConversionError and the converters' table checks
        raise ConversionError(f"{source!r} is not a {entry.name} checkpoint: {err}") from err
    info = dict(converted_from=osp.basename(source), layout=entry.name, kind=entry.kind)
    if entry.kind == "teacher":
        return _teacher(state, entry, info)
    if entry.own_config and not configs:
        return _with_own_config(checkpoint, state, entry, info, source)
    cfg, config, report = fit_config(state, entry, configs)
    info.update(config=config, absent=list(entry.absent), cfg_options=dict(entry.cfg_options))
    meta = dict(cfg=cfg.pretty_text, epoch=entry.epoch(checkpoint), mim_zoo=info)
    return ConversionResult(dict(state_dict=state, meta=meta), report, entry, config)


def _teacher(state: StateDict, entry: SourceLayout, info: dict) -> ConversionResult:
    """A timm state dict, its architecture and sizes in ``meta['mim_zoo']`` (for ``--check``)."""
    info.update(arch=entry.arch, model_kwargs=model_kwargs_of(state))
    report = fit_report(teacher_model(entry.arch, info["model_kwargs"], state), state)
    return ConversionResult(dict(state_dict=state, meta=dict(mim_zoo=info)), report, entry)


def _with_own_config(checkpoint: Any, state: StateDict, entry: SourceLayout, info: dict,
                     source: str) -> ConversionResult:
    """A file that carries its config (mim_zoo's own): checked against it, its meta kept."""
    report = fit_report(build_saved_algorithm(saved_model_config(checkpoint, source)), state)
    if not report.ok:
        raise CheckpointError(f"{source} does not fit the config saved in it:\n{report.summary()}")
    meta = dict(checkpoint["meta"], mim_zoo=dict(checkpoint["meta"].get("mim_zoo", {}), **info))
    return ConversionResult(dict(state_dict=state, meta=meta), report, entry)
