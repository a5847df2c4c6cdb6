"""The convert-in direction: every checkpoint layout mim_zoo reads, registered by name.

A :class:`SourceLayout` says what a layout is, which files it expects, what it becomes and how: ``convert`` maps the
*whole* loaded file (``model``, ``model_ema``, ``state_dict``, ...: a converter picks the entries it needs, e.g.
BootMAE's EMA) to mim_zoo's keys. ``tools/convert_checkpoint.py --list`` prints this table and
:func:`mim_zoo.core.checkpoints.convert.convert_checkpoint` applies an entry and records the config the result
belongs to. The layouts register themselves in :mod:`.mae`, :mod:`.bootmae`, :mod:`.mixmim`, :mod:`.own` (mim_zoo's
own files) and :mod:`.teachers`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .keys import StateDict

KINDS = ("algorithm", "teacher")


def official_epoch(checkpoint: Any) -> int | None:
    """Epochs completed by an official training file: its ``epoch`` entry is the index of the last finished epoch
    (facebookresearch/mae ``util/misc.py:load_model`` resumes at ``epoch + 1``); released weights carry none."""
    epoch = checkpoint.get("epoch") if isinstance(checkpoint, Mapping) else None
    return epoch + 1 if isinstance(epoch, int) and not isinstance(epoch, bool) else None


def mmengine_epoch(checkpoint: Any) -> int | None:
    """Epochs completed by an mmengine checkpoint (``meta['epoch']``, set after the epoch ended)."""
    meta = checkpoint.get("meta") if isinstance(checkpoint, Mapping) else None
    epoch = meta.get("epoch") if isinstance(meta, Mapping) else None
    return epoch if isinstance(epoch, int) and not isinstance(epoch, bool) else None


def no_epoch(checkpoint: Any) -> None:
    """Files that record no training progress (released teachers)."""
    return None


@dataclass(frozen=True)
class SourceLayout:
    """One checkpoint layout mim_zoo converts from.

    Attributes:
        name: the ``--from`` name.
        summary: what the layout is, one line.
        files: the files it expects (released names, the code that writes them).
        convert: the loaded file (any object ``torch.load`` returns) -> mim_zoo state dict.
        kind: ``"algorithm"`` (the state of a mim_zoo algorithm: a pretraining checkpoint of one of its configs) or
            ``"teacher"`` (a timm ViT for :class:`mim_zoo.core.targets.TeacherTarget`).
        algorithm: the registered algorithm whose state the files hold (``"MAE"``); when no config is given, its
            paper-size configs (base, then large: ``mim_zoo.engine.catalogue``) are tried and the first whose model
            loads every converted tensor is recorded.
        cfg_options: overrides of the recorded config that make the model compute what the source code computed
            (e.g. mmpretrain's MixMIM decoder eps).
        absent: prefixes of the algorithm's state that files of this layout do not hold (``decoder.`` of an
            encoder-only release): a run continued from it initialises them.
        epoch: the epochs the file had completed, for the converted file's ``meta['epoch']``.
        arch: for teachers, the timm architecture (family) of the converted state dict.
        own_config: the files carry their mim_zoo config (``meta['cfg']``), kept when no config is given.
    """

    name: str
    summary: str
    files: str
    convert: Callable[[Any], StateDict]
    kind: str = "algorithm"
    algorithm: str | None = None
    cfg_options: Mapping[str, Any] = field(default_factory=dict)
    absent: tuple[str, ...] = ()
    epoch: Callable[[Any], int | None] = official_epoch
    arch: str | None = None
    own_config: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"source layout {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
        if (self.kind == "teacher") != (self.arch is not None):
            raise ValueError(f"source layout {self.name!r}: teacher layouts, and only they, name their timm `arch`")
        if self.kind == "teacher" and self.algorithm is not None:
            raise ValueError(f"source layout {self.name!r}: a teacher file belongs to no algorithm")


SOURCES: dict[str, SourceLayout] = {}


def register_source(layout: SourceLayout) -> SourceLayout:
    """Add ``layout`` to :data:`SOURCES` (a name is registered once)."""
    if layout.name in SOURCES:
        raise KeyError(f"a source layout named {layout.name!r} is already registered")
    SOURCES[layout.name] = layout
    return layout


def source_layout(name: str) -> SourceLayout:
    if name not in SOURCES:
        raise KeyError(f"no converter for layout {name!r}; available: {', '.join(sorted(SOURCES))}")
    return SOURCES[name]


def convert_state_dict(name: str, checkpoint: Any) -> StateDict:
    """Convert a loaded file (or its state dict) of layout ``name`` into mim_zoo's keys."""
    return source_layout(name).convert(checkpoint)
