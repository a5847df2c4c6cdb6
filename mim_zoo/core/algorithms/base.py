"""The glue every MIM algorithm shares with mmengine: forward modes, mask sourcing, schedules, export.

An algorithm subclasses :class:`BaseMIM` and implements ``loss(images, mask) -> dict`` top-down (STYLE R10) and
``reconstruct(images, mask) -> dict`` for pictures. The returned loss dict holds each *weighted* term as
``loss_<term>`` (mmengine's ``parse_losses`` sums every key containing "loss" into the logged ``loss``) and
detached diagnostics under names without "loss" (e.g. ``stat_mask_ratio``).
"""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar

import torch
from mmengine.model import BaseModel
from torch import Tensor, nn

from ..registry import MASK_GENERATORS, MODELS, TARGET_GENERATORS, build
from ..targets import TargetGenerator


class BaseMIM(BaseModel, metaclass=ABCMeta):
    """Base class of the registered algorithms.

    Args:
        encoder: an encoder adapter (e.g. :class:`mim_zoo.core.encoders.ViTEncoder`) or its config.
        masking: a mask generator or its config (``mim_zoo.core.masking``).
        data_preprocessor: mmengine data preprocessor config (normalisation, BGR->RGB).
        init_cfg: mmengine init config.

    A subclass states the parts it is defined with in :attr:`default_parts` and builds each through
    :meth:`part_config`, so the defaults are written once: the constructor uses them, and a checkpoint whose config
    swaps one for another type is told apart from the algorithm (``mim_zoo.engine.benchmark.method_label``).
    """

    #: ``{constructor argument: config used when the argument is not given}``, e.g. MAE's
    #: ``{"masking": {"type": "RandomMasking", "ratio": 0.75}, ...}``.
    default_parts: ClassVar[Mapping[str, Mapping[str, Any]]] = MappingProxyType({})

    @classmethod
    def part_config(cls, slot: str, given: Any = None) -> Any:
        """What to build for the part ``slot``: ``given`` if it is built or names a ``type``; otherwise the default
        config, updated with the arguments of ``given`` (a dict without ``type`` keeps the default's type)."""
        if given is not None and not (isinstance(given, Mapping) and "type" not in given):
            return given
        return {**cls.default_parts[slot], **(given or {})}

    @classmethod
    def default_types(cls) -> dict[str, str]:
        """``{slot: class name}`` of :attr:`default_parts` (``{"masking": "RandomMasking", ...}``)."""
        return {slot: _type_name(cfg["type"]) for slot, cfg in cls.default_parts.items()}

    def __init__(self, encoder: nn.Module | dict, masking: Any, data_preprocessor: dict | None = None,
                 init_cfg: dict | None = None) -> None:
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.encoder = build(MODELS, encoder)
        self.masking = build(MASK_GENERATORS, masking)
        self.masking.num_masked(self.encoder.grid_size)  # fail now on a ratio the grid cannot honour
        self.loss_weights: dict[str, float] = {}

    def build_target(self, target: nn.Module | dict) -> TargetGenerator:
        """Build a target generator and bind it to the encoder (sets its ``dim``)."""
        target = build(TARGET_GENERATORS, target)
        target.bind(self.encoder)
        return target

    # --- mmengine entry point ----------------------------------------------------------------------------------
    def forward(self, inputs: Tensor | list[Tensor], data_samples: list | None = None, mode: str = "loss",
                mask: Tensor | None = None) -> Any:
        """mmengine's three modes: ``loss`` (training), ``predict`` (reconstructions), ``tensor`` (features).

        Args:
            inputs: ``[B, 3, H, W]`` normalised images (or a one-element list of them).
            data_samples: mmpretrain ``DataSample`` s; a ``mask`` field there (from a masking transform) is used.
            mask: ``[B, L]`` bool, True = masked; overrides any other source. ``None`` draws one on the device.
        """
        images = self._single_view(inputs)
        if mode == "tensor":
            return self.encoder(images)
        mask = self.resolve_mask(images, mask, data_samples)
        if mode == "loss":
            return self.loss(images, mask)
        if mode == "predict":
            return self.reconstruct(images, mask)
        raise ValueError(f"unknown forward mode {mode!r}; expected 'loss', 'predict' or 'tensor'")

    @staticmethod
    def _single_view(inputs: Tensor | list[Tensor]) -> Tensor:
        if isinstance(inputs, (list, tuple)):
            if len(inputs) != 1:
                raise ValueError(f"MIM pretraining takes one view per image, got {len(inputs)} views")
            inputs = inputs[0]
        return inputs

    def resolve_mask(self, images: Tensor, mask: Tensor | None, data_samples: list | None = None,
                     generator: torch.Generator | None = None) -> Tensor:
        """The explicit mask if given (checked), else one from the data samples, else a fresh draw."""
        if mask is None and data_samples and "mask" in data_samples[0]:
            mask = torch.stack([torch.as_tensor(s.mask).flatten() for s in data_samples])
        if mask is None:
            return self.masking(images.shape[0], self.encoder.grid_size, device=images.device, generator=generator)
        mask = mask.to(images.device).flatten(1).bool()
        expected = (images.shape[0], self.encoder.grid_size[0] * self.encoder.grid_size[1])
        if tuple(mask.shape) != expected:
            raise ValueError(
                f"an explicit mask must be [B, L] = {list(expected)} for this encoder "
                f"({self.encoder.grid_size[0]}x{self.encoder.grid_size[1]} tokens), got {list(mask.shape)}"
            )
        return mask

    def check_batch_size(self, batch_size: int) -> None:
        """Raise ``ValueError`` if the algorithm cannot train on a per-process batch of ``batch_size`` (checked by
        ``PreflightHook`` before the first iteration, for every batch size the loader yields)."""
        if batch_size < 1:
            raise ValueError(f"a batch must hold at least one image, got {batch_size}")

    @abstractmethod
    def loss(self, images: Tensor, mask: Tensor) -> dict[str, Tensor]:
        """``{"loss_<term>": weighted scalar, ..., "stat_<name>": detached diagnostic}``."""

    @abstractmethod
    def reconstruct(self, images: Tensor, mask: Tensor) -> dict[str, Tensor]:
        """``{"mask": [B, L], "reconstruction": [B, 3, H, W] in the input's normalised space, ...}``."""

    # --- schedules, passed in from outside (STYLE R16) -----------------------------------------------------------
    def targets(self) -> list[TargetGenerator]:
        return [m for m in self.children() if isinstance(m, TargetGenerator)]

    @torch.no_grad()
    def momentum_update(self, momentum: float) -> None:
        """EMA step of every momentum target, called by ``MIMScheduleHook`` after each optimizer step."""
        for target in self.targets():
            target.update(self.encoder, momentum)

    def set_loss_weights(self, **weights: float) -> None:
        """Scheduled loss weights (e.g. BootMAE's feature-loss ramp), set by ``MIMScheduleHook``."""
        self.loss_weights.update(weights)

    def loss_weight(self, name: str, default: float = 1.0) -> float:
        return self.loss_weights.get(name, default)

    # --- export ------------------------------------------------------------------------------------------------
    def export_encoder(self) -> dict[str, Tensor]:
        """The encoder alone as a plain state dict of its canonical implementation (``encoder.canonical``: timm for
        ViTs), loadable into ``encoder.build_canonical()`` without missing keys."""
        return self.encoder.export_state_dict()


def _type_name(type_: Any) -> str:
    """The class name of a config ``type``: a class, a registered name or a dotted path."""
    return type_.__name__ if isinstance(type_, type) else str(type_).rsplit(".", 1)[-1]
