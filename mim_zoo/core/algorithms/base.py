"""The glue every MIM algorithm shares with mmengine: forward modes, the mask path, plugin checks, schedules, export.

An algorithm subclasses :class:`BaseMIM` and implements ``loss(images, mask) -> dict`` top-down (STYLE R10) and
``reconstruct(images, mask) -> dict`` for pictures. The returned loss dict holds each *weighted* term as
``loss_<term>`` (mmengine's ``parse_losses`` sums every key containing "loss" into the logged ``loss``) and
detached diagnostics under names without "loss" (e.g. ``stat_mask_ratio``).

One mask path for every algorithm (:meth:`BaseMIM.forward`)::

    context = self.mask_context(images)                  # {} unless the algorithm computes something first
    mask = self.resolve_mask(images, mask, data_samples, context=context)   # explicit > data samples > drawn
    losses = self.loss(images, mask, **context)           # or reconstruct(images, mask)

A mask generator that reads per-batch inputs (``context_keys``, e.g. attention-guided masking) gets them from
``mask_context``; an algorithm declares which it can supply in ``mask_context_keys`` and the pairing is checked when
it is built. Whatever ``mask_context`` computed reaches ``loss`` as keyword arguments, so a teacher pass that yields
the attention for the mask also yields the features the loss regresses, once (MR-MAE).

The plugins are held to their protocols (:mod:`mim_zoo.core.contracts`) when the algorithm is built: the encoder to
``encoder_protocol``, the mask generator to ``MaskGeneratorProtocol``, each target to the protocol its slot needs.
"""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar

import torch
from mmengine.model import BaseModel
from mmengine.registry import Registry
from torch import Tensor, nn

from ..contracts import EncoderProtocol, MaskGeneratorProtocol, TargetProtocol, check_plugin
from ..registry import MASK_GENERATORS, MODELS, TARGET_GENERATORS, build, config_entry


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

    encoder_protocol: type = EncoderProtocol  # the encoder contract the algorithm drives (contracts.py)
    mask_context_keys: tuple[str, ...] = ()  # the mask-generator context keys :meth:`mask_context` can supply

    #: ``{constructor argument: config used when the argument is not given}``, e.g. MAE's
    #: ``{"masking": {"type": "RandomMasking", "ratio": 0.75}, ...}``.
    default_parts: ClassVar[Mapping[str, Mapping[str, Any]]] = MappingProxyType({})

    #: What each column of a reconstruction figure shows (``{column: note}``, columns named as
    #: ``mim_zoo.engine.visualization.reconstruction_panels`` names them: ``reconstruct``'s keys, ``_`` as space),
    #: the figure's caption. A subclass whose loss or outputs differ states its own.
    reconstruction_notes: ClassVar[Mapping[str, str]] = MappingProxyType({
        "masked": "grey = the patches hidden from the encoder",
        "reconstruction": "the decoder's prediction of every patch; the loss scores the masked patches only, so the "
                          "visible ones are never trained (hence their speckle)",
        "reconstruction + visible": "the prediction with the visible patches pasted back from the original",
    })

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
        name = type(self).__name__
        with config_entry("encoder"):
            self.encoder = build(MODELS, encoder)
            check_plugin(self.encoder, self.encoder_protocol, f"{name}'s encoder")
        with config_entry("masking"):
            self.masking = build(MASK_GENERATORS, masking)
            check_plugin(self.masking, MaskGeneratorProtocol, f"{name}'s masking")
            unsupplied = [key for key in self.masking.context_keys if key not in self.mask_context_keys]
            if unsupplied:
                raise ValueError(
                    f"{type(self.masking).__name__} draws its mask from {unsupplied}, which {name} does not compute "
                    f"(its mask context: {list(self.mask_context_keys) or 'none'}); use a data-independent mask "
                    "generator, or an algorithm that supplies it (e.g. MRMAE with focus_teacher for 'attention')"
                )
            self.masking.num_masked(self.encoder.grid_size)  # fail now on a ratio the grid cannot honour
        self.loss_weights: dict[str, float] = {}

    def build_part(self, slot: str, registry: Registry, given: Any = None, **default_args: Any) -> Any:
        """Build the part ``slot`` from :meth:`part_config` (``default_args`` fill in what the algorithm knows, e.g.
        the encoder's width); an error names the config entry (``decoder.embed_dim: ...``)."""
        with config_entry(slot):
            return build(registry, self.part_config(slot, given), **default_args)

    def build_target(self, target: nn.Module | dict, protocol: type = TargetProtocol,
                     slot: str = "target") -> nn.Module:
        """Build a target generator, check it against ``protocol`` and bind it to the encoder (sets its ``dim``).

        Args:
            target: the target or its config (``TARGET_GENERATORS``).
            protocol: what the slot needs (e.g. ``PixelTargetProtocol`` for a loss on pixels).
            slot: the argument it came from, named in the error.
        """
        with config_entry(slot):
            target = build(TARGET_GENERATORS, target)
            role = f"{type(self).__name__}'s {slot}"
            check_plugin(target, protocol, role, ignore=("dim",))  # bind sets dim
            target.bind(self.encoder)
            check_plugin(target, protocol, role)
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
        if mode not in ("loss", "predict"):
            raise ValueError(f"unknown forward mode {mode!r}; expected 'loss', 'predict' or 'tensor'")
        context = self.mask_context(images)
        mask = self.resolve_mask(images, mask, data_samples, context=context)
        if mode == "loss":
            return self.loss(images, mask, **context)
        return self.reconstruct(images, mask)

    @staticmethod
    def _single_view(inputs: Tensor | list[Tensor]) -> Tensor:
        if isinstance(inputs, (list, tuple)):
            if len(inputs) != 1:
                raise ValueError(f"MIM pretraining takes one view per image, got {len(inputs)} views")
            inputs = inputs[0]
        return inputs

    def mask_context(self, images: Tensor) -> dict[str, Any]:
        """What the algorithm computes from the batch before its mask is drawn; nothing by default.

        The entries named in the mask generator's ``context_keys`` go to the generator (each must be one of
        :attr:`mask_context_keys`); all entries go to :meth:`loss` as keyword arguments, so work done here (e.g. a
        teacher pass) is not repeated there.
        """
        return {}

    def resolve_mask(self, images: Tensor, mask: Tensor | None = None, data_samples: list | None = None,
                     generator: torch.Generator | None = None, context: dict[str, Any] | None = None) -> Tensor:
        """The batch's mask, ``[B, L]`` bool (True = masked): the explicit ``mask`` if given (checked), else the one
        in the data samples, else a fresh draw (:meth:`draw_mask`)."""
        if mask is None and data_samples and "mask" in data_samples[0]:
            mask = torch.stack([torch.as_tensor(s.mask).flatten() for s in data_samples])
        if mask is None:
            return self.draw_mask(images, generator, context)
        mask = mask.to(images.device).flatten(1).bool()
        expected = (images.shape[0], self.encoder.grid_size[0] * self.encoder.grid_size[1])
        if tuple(mask.shape) != expected:
            raise ValueError(
                f"an explicit mask must be [B, L] = {list(expected)} for this encoder "
                f"({self.encoder.grid_size[0]}x{self.encoder.grid_size[1]} tokens), got {list(mask.shape)}"
            )
        return mask

    def draw_mask(self, images: Tensor, generator: torch.Generator | None = None,
                  context: dict[str, Any] | None = None) -> Tensor:
        """A fresh ``[B, L]`` mask from the mask generator, on the images' device.

        The generator receives the entries of ``context`` it names in ``context_keys``; when it names any and
        ``context`` is not given, ``context`` is :meth:`mask_context` of ``images``.
        """
        keys = self.masking.context_keys
        if keys and context is None:
            context = self.mask_context(images)
        absent = [key for key in keys if key not in (context or {})]
        if absent:
            raise ValueError(f"{type(self).__name__}.mask_context() gave no {absent} for "
                             f"{type(self.masking).__name__} (it gave {sorted(context or {})})")
        given = {key: context[key] for key in keys}
        return self.masking(images.shape[0], self.encoder.grid_size, device=images.device, generator=generator,
                            **given)

    def check_batch_size(self, batch_size: int) -> None:
        """Raise ``ValueError`` if the algorithm cannot train on a per-process batch of ``batch_size`` (checked for
        ``train_dataloader.batch_size`` by ``tools/train.py``'s config checks before anything is written, and by
        ``PreflightHook`` before the first iteration for every batch size the loader yields)."""
        if batch_size < 1:
            raise ValueError(f"a batch must hold at least one image, got {batch_size}")

    @abstractmethod
    def loss(self, images: Tensor, mask: Tensor) -> dict[str, Tensor]:
        """``images [B, 3, H, W]``, ``mask [B, L]`` -> ``{"loss_<term>": weighted scalar, ..., "stat_<name>":
        detached diagnostic}``. An algorithm that overrides :meth:`mask_context` also receives its entries as
        keyword arguments (optional ones: ``loss(images, mask)`` must work on its own)."""

    @abstractmethod
    def reconstruct(self, images: Tensor, mask: Tensor) -> dict[str, Tensor]:
        """``{"mask": [B, L], "reconstruction": [B, 3, H, W] in the input's normalised space, ...}``."""

    # --- schedules, passed in from outside (STYLE R16) -----------------------------------------------------------
    def targets(self) -> list[nn.Module]:
        """The target generators held directly by the algorithm (EMA targets among them follow the encoder)."""
        return [m for m in self.children() if isinstance(m, TargetProtocol)]

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
