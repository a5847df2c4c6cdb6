"""Initialise a downstream backbone from a pretraining checkpoint, checked key by key.

OpenMMLab's ``init_cfg=dict(type='Pretrained')`` loads with ``strict=False`` and only logs what did not match, so a
checkpoint of another layout leaves the backbone silently random. Here every parameter of the backbone must either
come from the checkpoint or be one of the backbone's declared *new* parameters (``new_keys``: e.g. BEiT's layer
scale and relative position bias, which the segmentation recipe adds and initialises itself); every converted
checkpoint tensor must find a parameter of the same shape. Anything else raises, listing the keys.

A backbone opts in with :class:`PretrainedBackboneMixin`: it names the layouts it accepts and how to convert one,
and calls :meth:`PretrainedBackboneMixin.load_pretraining` at the end of its ``init_weights``.
"""

from __future__ import annotations

import re
from abc import ABCMeta, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mmengine.logging import print_log
from mmengine.runner.checkpoint import CheckpointLoader
from torch import Tensor, nn

from ..checkpoints.layouts import Converted
from ..checkpoints.read import CheckpointError, PretrainedEncoder, load_pretrained_encoder
from ..contracts import EncoderProtocol
from .pos_embed import square_grid


@dataclass
class LoadReport:
    """What :func:`load_checked` did. ``loaded``: keys taken from the checkpoint; ``initialised``: declared new
    parameters left to the backbone's own init; ``dropped``: checkpoint keys not used, with reasons; ``resized``:
    ``key -> (old shape, new shape)``."""

    source: str
    loaded: list[str] = field(default_factory=list)
    initialised: list[str] = field(default_factory=list)
    dropped: dict[str, str] = field(default_factory=dict)
    resized: dict[str, tuple] = field(default_factory=dict)

    def summary(self) -> str:
        lines = [f"loaded {len(self.loaded)} encoder tensors from {self.source}"]
        for key, (old, new) in self.resized.items():
            lines.append(f"  resized {key}: {tuple(old)} -> {tuple(new)}")
        if self.initialised:
            lines.append(f"  new in the downstream model (own init): {_short(self.initialised)}")
        reasons: dict[str, list[str]] = {}
        for key, reason in self.dropped.items():
            reasons.setdefault(reason, []).append(key)
        for reason, keys in reasons.items():
            lines.append(f"  not used ({reason}): {_short(keys)}")
        return "\n".join(lines)


def _short(keys: Sequence[str], limit: int = 6) -> str:
    keys = list(keys)
    return ", ".join(keys[:limit]) + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


def load_checked(module: nn.Module, converted: Converted, new_keys: Sequence[str], source: str,
                 resized: dict[str, tuple] | None = None) -> LoadReport:
    """Load ``converted.state_dict`` into ``module``; raise unless every key is accounted for (module docstring).

    Args:
        module: the downstream backbone.
        converted: checkpoint tensors in ``module``'s names, and the keys dropped on purpose.
        new_keys: regular expressions (full match) of ``module`` keys that may be absent from the checkpoint.
        source: the checkpoint path, for messages.
        resized: keys whose tensors were resized to fit, ``key -> (old shape, new shape)``, for the report.
    """
    own = module.state_dict()
    given = converted.state_dict
    missing = [k for k in own if k not in given]
    not_new = [k for k in missing if not any(re.fullmatch(p, k) for p in new_keys)]
    unexpected = [k for k in given if k not in own]
    shapes = [f"{k} {tuple(given[k].shape)} vs {tuple(own[k].shape)}" for k in given
              if k in own and given[k].shape != own[k].shape]
    if not_new or unexpected or shapes:
        lines = [f"{type(module).__name__} cannot be initialised from {source}:"]
        if not_new:
            lines.append(f"  backbone parameters the checkpoint lacks: {_short(not_new)}")
        if unexpected:
            lines.append(f"  checkpoint tensors the backbone lacks: {_short(unexpected)}")
        if shapes:
            lines.append(f"  shape mismatch (checkpoint vs backbone): {_short(shapes, 4)}")
        lines.append("Make the downstream config's backbone (width, depth, heads, patch size) match the pretrained "
                     "encoder, or use the benchmark config of that encoder (tools/benchmark.py picks it).")
        raise CheckpointError("\n".join(lines))
    module.load_state_dict(given, strict=False)
    return LoadReport(source=source, loaded=list(given), initialised=missing, dropped=dict(converted.dropped),
                      resized=dict(resized or {}))


class PretrainedBackboneMixin(metaclass=ABCMeta):
    """A downstream backbone initialised from a mim_zoo pretraining checkpoint.

    Subclasses set ``accepted_layouts`` (canonical layouts, e.g. ``("timm",)``), ``new_keys`` (regexes of their
    own new parameters) and implement :meth:`convert_pretrained`.
    """

    accepted_layouts: tuple[str, ...] = ()
    new_keys: tuple[str, ...] = ()

    @abstractmethod
    def convert_pretrained(self, pretrained: PretrainedEncoder) -> tuple[Converted, dict[str, tuple]]:
        """Checkpoint tensors in this backbone's names (resized to its geometry) and the resized keys."""

    def load_pretraining(self, checkpoint: str | None) -> LoadReport:
        """Load the encoder of a mim_zoo pretraining ``checkpoint`` into this backbone, checked (module docstring)."""
        if not checkpoint:
            raise CheckpointError(
                f"{type(self).__name__} has no pretraining checkpoint: set model.backbone.mim_checkpoint="
                "work_dirs/<pretrain cfg>/epoch_N.pth (tools/benchmark.py sets it); a downstream benchmark never "
                "starts from a random encoder"
            )
        pretrained = load_pretrained_encoder(checkpoint)
        if pretrained.canonical not in self.accepted_layouts:
            raise CheckpointError(
                f"{checkpoint} holds a {pretrained.method} encoder in the {pretrained.canonical!r} layout, but "
                f"{type(self).__name__} takes {' or '.join(self.accepted_layouts)} encoders; use the benchmark "
                "config made for that encoder (configs/benchmarks/, or let tools/benchmark.py choose)"
            )
        converted, resized = self.convert_pretrained(pretrained)
        report = load_checked(self, converted, self.new_keys, checkpoint, resized)
        print_log(report.summary(), logger="current")
        return report

    def load_exported(self, init_cfg: Mapping[str, Any]) -> LoadReport:
        """Load an encoder already in this backbone's names (a ``tools/export.py`` file) from mmengine's
        ``init_cfg=dict(type='Pretrained', checkpoint=FILE, prefix=...)``, checked key by key like
        :meth:`load_pretraining` (mmengine's own ``Pretrained`` init loads with ``strict=False`` and only logs)."""
        path, prefix = init_cfg["checkpoint"], init_cfg.get("prefix") or ""
        checkpoint = CheckpointLoader.load_checkpoint(path, map_location="cpu")
        state = checkpoint.get("state_dict", checkpoint)
        if prefix:
            state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        report = load_checked(self, Converted(state), self.new_keys, path)
        print_log(report.summary(), logger="current")
        return report


def is_pretrained_init(init_cfg: Any) -> bool:
    """``init_cfg`` is mmengine's ``dict(type='Pretrained', checkpoint=...)``."""
    return isinstance(init_cfg, Mapping) and init_cfg.get("type") == "Pretrained" and bool(init_cfg.get("checkpoint"))


def pretrained_grid(pretrained: PretrainedEncoder, num_prefix_tokens: int = 1) -> tuple[int, int]:
    """The token grid a ViT encoder was pretrained at (from the adapter, else from the ``pos_embed`` length)."""
    if isinstance(pretrained.encoder, EncoderProtocol):
        return tuple(pretrained.encoder.grid_size)
    return square_grid(pretrained.state_dict["pos_embed"].shape[1] - num_prefix_tokens)


def resize_if_needed(state_dict: dict[str, Tensor], key: str, target: Tensor, resize: Callable[[Tensor], Tensor],
                     resized: dict[str, tuple]) -> None:
    """Replace ``state_dict[key]`` by ``resize(tensor)`` when its shape differs from ``target``'s; record it."""
    if key in state_dict and state_dict[key].shape != target.shape:
        old = state_dict[key].shape
        state_dict[key] = resize(state_dict[key])
        resized[key] = (old, state_dict[key].shape)
