"""Does a checkpoint fit its model? Parameter counts, and every key that does not load (``--check``).

:func:`fit_report` compares a state dict with a built model key by key; :func:`check_checkpoint` rebuilds the model
a converted (or mim_zoo) file belongs to, from the file alone, and reports: a pretraining checkpoint is loaded into
its algorithm (built from the config saved in it, :func:`~.read.build_saved_algorithm`), a teacher file into its
:class:`~mim_zoo.core.targets.TeacherTarget`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from torch import Tensor, nn

from ..targets import TeacherTarget
from .read import CheckpointError, build_saved_algorithm, read_checkpoint, saved_model_config


@dataclass
class FitReport:
    """How a state dict fits a model.

    Attributes:
        model: the model's class name.
        parameters: parameter count of the whole model (``"total"``, ``"trainable"``) and of each top-level part.
        loaded: keys taken from the file; ``loaded_values``: the number of values they hold.
        missing: model keys the file lacks; ``absent``: those its layout is known not to hold (a run initialises them).
        unexpected: file keys the model lacks; ``shapes``: ``"key [file] vs [model]"`` of shared keys.
    """

    model: str
    parameters: dict[str, int]
    loaded: list[str] = field(default_factory=list)
    loaded_values: int = 0
    missing: list[str] = field(default_factory=list)
    absent: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    shapes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every file tensor loads and every model tensor comes from the file (or is known to be absent)."""
        return not (self.missing or self.unexpected or self.shapes)

    def summary(self) -> str:
        parts = ", ".join(f"{name} {n:,}" for name, n in self.parameters.items() if name not in ("total", "trainable"))
        lines = [f"{self.model}: {self.parameters['total']:,} parameters ({parts}), "
                 f"{self.parameters['trainable']:,} trainable",
                 f"loaded from the file: {len(self.loaded)} tensors, {self.loaded_values:,} values"]
        if self.absent:
            lines.append(f"not in files of this layout (initialised by a run): {_grouped(self.absent)}")
        lines.append(f"missing in the file: {_grouped(self.missing) if self.missing else 'none'}")
        if self.unexpected:
            lines.append(f"not in the model: {_grouped(self.unexpected)}")
        if self.shapes:
            lines.append(f"shape mismatch (file vs model): {', '.join(self.shapes[:6])}"
                         + (f", ... ({len(self.shapes)} in all)" if len(self.shapes) > 6 else ""))
        return "\n".join(lines)


def _grouped(keys: Sequence[str], limit: int = 3) -> str:
    """Keys, those of a top-level part with more than ``limit`` of them as ``part.* (n tensors)``."""
    parts: dict[str, list[str]] = {}
    for key in keys:
        parts.setdefault(key.split(".", 1)[0], []).append(key)
    return ", ".join(f"{part}.* ({len(group)} tensors)" if len(group) > limit else ", ".join(group)
                     for part, group in parts.items())


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """``{"total", "trainable", <top-level part>: count}`` of ``model``'s parameters."""
    counts = {"total": sum(p.numel() for p in model.parameters()),
              "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad)}
    for name, child in model.named_children():
        count = sum(p.numel() for p in child.parameters())
        if count:
            counts[name] = count
    return counts


def fit_report(model: nn.Module, state_dict: Mapping[str, Tensor], absent: Sequence[str] = ()) -> FitReport:
    """Compare ``state_dict`` with ``model.state_dict()``; ``absent``: prefixes the file is known not to hold."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    known = [k for k in missing if k.startswith(tuple(absent))]
    shapes = [f"{k} {list(state_dict[k].shape)} vs {list(own[k].shape)}" for k in own
              if k in state_dict and tuple(state_dict[k].shape) != tuple(own[k].shape)]
    loaded = [k for k in own if k in state_dict and tuple(state_dict[k].shape) == tuple(own[k].shape)]
    return FitReport(model=type(model).__name__, parameters=parameter_counts(model), loaded=loaded,
                     loaded_values=sum(state_dict[k].numel() for k in loaded),
                     missing=[k for k in missing if k not in known], absent=known,
                     unexpected=[k for k in state_dict if k not in own], shapes=shapes)


def teacher_of(state_dict: Mapping[str, Tensor], info: Mapping, path: str) -> TeacherTarget:
    """The :class:`TeacherTarget` of the recorded architecture that loads the converted teacher file ``path``."""
    kwargs = dict(info["model_kwargs"])
    if "head.weight" in state_dict:  # CLIP's image-text projection
        kwargs["num_classes"] = state_dict["head.weight"].shape[0]
    return TeacherTarget(info["arch"], checkpoint=path, project="num_classes" in kwargs, model_kwargs=kwargs)


def check_checkpoint(path: str | os.PathLike) -> FitReport:
    """Load a converted (or mim_zoo) checkpoint into the model it belongs to and report the fit.

    The model comes from the file alone: the algorithm of the config saved in it, or, for a converted teacher, the
    ``TeacherTarget`` of its timm architecture (which loads it strictly itself).
    """
    source = os.fspath(path)
    ckpt = read_checkpoint(source)
    info = ckpt.get("meta", {}).get("mim_zoo", {})
    if info.get("kind") == "teacher":
        return fit_report(teacher_of(ckpt["state_dict"], info, source).teacher, ckpt["state_dict"])
    model_cfg = saved_model_config(ckpt, source)
    try:
        model = build_saved_algorithm(model_cfg)
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError) as err:  # a constructor refusing the saved arguments
        raise CheckpointError(f"the algorithm saved in {source} cannot be built: {err}") from err
    return fit_report(model, ckpt["state_dict"], absent=info.get("absent", ()))
