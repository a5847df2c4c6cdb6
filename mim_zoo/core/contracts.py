"""The plugin contracts as code: one :class:`typing.Protocol` per seam, and the one check that holds a plugin to it.

Every seam an algorithm plugs a part into has a protocol here (PEP 544, all ``@runtime_checkable``):

* :class:`MaskGeneratorProtocol`: the ``MASK_GENERATORS`` entries; every algorithm draws its masks through one.
* :class:`TargetProtocol`: the ``TARGET_GENERATORS`` entries, bound and checked by ``BaseMIM.build_target``;
  :class:`PixelTargetProtocol` adds ``to_pixels`` (pictures of reconstructions, BootMAE's pixel loss).
* :class:`EncoderProtocol`: every encoder adapter (what ``BaseMIM`` requires by default), refined by
  :class:`PlainEncoderProtocol` (ViT-style, ``ViTEncoder``: MAE, MR-MAE, BootMAE, SimMIM, ``MomentumTarget``) and
  :class:`HierarchicalEncoderProtocol` (multi-stage, ``MixMIMEncoder``: MixMAE). An algorithm names the one it
  drives in ``BaseMIM.encoder_protocol``.
* :class:`DecoderProtocol`: MAE-style decoders (``MAEDecoder``, BootMAE's target-aware decoders).
* :class:`LayerDepthProtocol`: downstream backbones that support layer-wise learning-rate decay.

A plugin is checked once, where it meets the algorithm that uses it (``BaseMIM.__init__`` for the encoder and the
mask generator, ``BaseMIM.build_target`` for targets, the algorithm for its decoders), by :func:`check_plugin`:
a missing member fails there with one line naming the plugin, the protocol and every missing member. Code that uses
a plugin afterwards calls its members directly; code that serves plugins of more than one kind asks
``isinstance(plugin, SomeProtocol)`` (e.g. "is this a pixel target?"), never ``hasattr``.

Members are checked for presence (and methods for being callable), not for their signatures: the signatures and
shapes below are the documented contract, which the tests in ``tests/test_protocols.py`` exercise for every
registered plugin. Shapes: ``B`` batch, ``L`` output tokens (``grid_size[0] * grid_size[1]``), ``K`` visible tokens,
``P`` prefix (class) tokens, ``D`` channels, ``p`` pixels per side of one output token.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

GridSize = tuple[int, int]


class ContractError(TypeError):
    """A plugin lacks members of the protocol its slot requires."""


# --- masking ------------------------------------------------------------------------------------------------------
@runtime_checkable
class MaskGeneratorProtocol(Protocol):
    """Draws which tokens are masked. Base class: :class:`mim_zoo.core.masking.MaskGenerator`.

    ``context_keys`` names the per-batch inputs the generator reads from ``**context`` (``()`` for the
    data-independent ones; ``("attention",)`` for attention-guided masking). An algorithm supplies them from its
    ``mask_context`` step (``BaseMIM.mask_context``) and declares which it can supply (``BaseMIM.mask_context_keys``);
    the pairing is checked when the algorithm is built.
    """

    context_keys: tuple[str, ...]

    def __call__(self, batch_size: int, grid_size: GridSize, *, device: torch.device | str = "cpu",
                 generator: torch.Generator | None = None, **context: Any) -> Tensor:
        """``[B, L]`` bool on ``device``, True = masked (for mixing: taken from the partner image), raster order;
        reproducible under a seeded ``generator`` (the global RNG without one)."""

    def num_masked(self, grid_size: GridSize) -> int | None:
        """Masked tokens per sample when the strategy fixes the count exactly, else ``None``; raises
        ``ValueError`` when the grid cannot honour the configuration (called when the algorithm is built)."""


# --- targets ------------------------------------------------------------------------------------------------------
@runtime_checkable
class TargetProtocol(Protocol):
    """A no-grad ``nn.Module`` mapping images to per-token targets. Base class:
    :class:`mim_zoo.core.targets.TargetGenerator`.

    ``bind`` is called once, by the algorithm's constructor, and sets ``dim``; a momentum target copies the encoder
    there. ``update`` is the only mutation (EMA targets; a no-op elsewhere), with a momentum scheduled outside the
    model.
    """

    dim: int

    def bind(self, encoder: EncoderProtocol) -> None:
        """Read and check the geometry of ``encoder`` (patch size, grid), set ``dim``."""

    def __call__(self, images: Tensor, encoder: EncoderProtocol | None = None) -> Tensor:
        """``[B, 3, H, W] -> [B, L, dim]``, computed without gradients; ``encoder`` is the online encoder."""

    def normalize_prediction(self, pred: Tensor) -> Tensor:
        """Apply to predictions the normalisation the target applied to itself (identity for most)."""

    def update(self, encoder: EncoderProtocol, momentum: float) -> None:
        """Follow the online encoder: ``ema = momentum * ema + (1 - momentum) * online`` (EMA targets only)."""


@runtime_checkable
class PixelTargetProtocol(TargetProtocol, Protocol):
    """A target made of pixels, so predictions can be shown as images (``PixelTarget``)."""

    patch_size: int

    def to_pixels(self, pred: Tensor, images: Tensor) -> Tensor:
        """Undo the target's normalisation with the statistics of ``images``: ``[B, L, p*p*3] -> [B, L, p*p*3]``."""


# --- encoders -----------------------------------------------------------------------------------------------------
@runtime_checkable
class EncoderProtocol(Protocol):
    """An ``nn.Module`` adapter over a canonical implementation (timm, mmpretrain), what every algorithm needs.

    ``canonical`` names the library whose model ``build_canonical()`` returns; ``export_state_dict()`` loads into it
    with no missing or unexpected key (the contract tests check this for every config).
    """

    canonical: str
    grad_checkpointing: bool

    @property
    def embed_dim(self) -> int:
        """Width ``D`` of the output tokens."""

    @property
    def patch_size(self) -> int:
        """Pixels per side of one output token (the output stride): the target patch size."""

    @property
    def grid_size(self) -> GridSize:
        """The output token grid ``(H / p, W / p)``: the grid masks and targets live on."""

    @property
    def num_prefix_tokens(self) -> int:
        """Tokens before the patch tokens in :meth:`__call__`'s output (1: the class token; 0 for none)."""

    def check_input(self, imgs: Tensor) -> None:
        """Raise ``ValueError`` naming the expected size when ``imgs`` is not ``[B, 3, H, W]`` at the built size."""

    def patchify(self, imgs: Tensor) -> Tensor:
        """``[B, 3, H, W] -> [B, L, p*p*3]`` (MAE's order)."""

    def unpatchify(self, x: Tensor) -> Tensor:
        """``[B, L, p*p*3] -> [B, 3, H, W]``."""

    def __call__(self, imgs: Tensor) -> Tensor:
        """Plain, unmasked features: ``[B, 3, H, W] -> [B, P + L, D]`` after the final norm."""

    def export_state_dict(self) -> dict[str, Tensor]:
        """The encoder alone as a plain state dict of its canonical implementation."""

    def build_canonical(self) -> nn.Module:
        """A fresh, randomly initialised canonical model of this architecture."""


@runtime_checkable
class PlainEncoderProtocol(EncoderProtocol, Protocol):
    """A ViT-style (plain, single-scale) encoder with a class token: ``ViTEncoder``.

    Three entry points cover the masked-image-modeling families: :meth:`forward_visible` (MAE-style: drop the masked
    tokens), :meth:`forward_masked` (SimMIM-style: replace them by a mask token) and :meth:`forward_full` (momentum
    and teacher features of the whole image). Each adds the positions, the class token, runs the blocks (with
    gradient checkpointing when enabled) exactly as the plain forward does.
    """

    @property
    def depth(self) -> int:
        """Number of blocks (the keys ``0 .. depth - 1`` of ``return_blocks``)."""

    def forward_visible(self, imgs: Tensor, keep_idx: Tensor | None,
                        return_blocks: Sequence[int] = ()) -> tuple[Tensor, dict[int, Tensor]]:
        """Encode the tokens at ``keep_idx [B, K]`` (all for ``None``): ``latent [B, P + K, D]`` after the final
        norm and ``{block: [B, P + K, D]}`` raw outputs of ``return_blocks``, keyed as given."""

    def forward_masked(self, imgs: Tensor, mask: Tensor, mask_token: Tensor) -> Tensor:
        """Encode every token, the patch embeddings at ``mask [B, L]`` (True) replaced by ``mask_token [1, 1, D]``
        before positions are added: ``[B, P + L, D]`` after the final norm."""

    def forward_full(self, imgs: Tensor, block: int = -1, norm: bool = False) -> Tensor:
        """Patch tokens of the unmasked image after ``block``: ``[B, L, D]`` (final norm only when ``norm``)."""


@runtime_checkable
class HierarchicalEncoderProtocol(EncoderProtocol, Protocol):
    """A multi-stage encoder whose token grid shrinks stage by stage: ``MixMIMEncoder``.

    The entry point for masked or mixed inputs is :meth:`encode`: it takes stage-1 tokens from :meth:`embed` that the
    algorithm may have edited (MixMAE mixes two images; a SimMIM-style method writes mask tokens) and adds the
    positions itself, so edits happen before positions, as in the papers.
    """

    @property
    def stage_grids(self) -> list[GridSize]:
        """Token grid of each stage, the last one being ``grid_size``."""

    def embed(self, imgs: Tensor) -> Tensor:
        """Stage-1 patch tokens without positions: ``[B, 3, H, W] -> [B, L_1, C_1]``."""

    def encode(self, tokens: Tensor, source_masks: Sequence[Tensor] | None = None) -> Tensor:
        """Positions, every stage and the final norm: ``[B, L_1, C_1] -> [B, L, D]``; with ``source_masks`` (one
        ``[L_s]`` 0/1 label per stage) a token attends only to tokens of its own label."""

    def stage_masks(self, mask: Tensor) -> list[Tensor]:
        """A mask on the output grid, nearest-upsampled to every stage: ``[..., L] -> [[..., L_s]]``."""

    def forward_stages(self, imgs: Tensor) -> tuple[Tensor, list[Tensor]]:
        """The unmasked forward keeping every stage: the final-normed ``[B, L, D]`` and each stage's output before
        its patch merging ``[B, L_s, C_s]`` (the depth probe's layers)."""


# --- decoders -----------------------------------------------------------------------------------------------------
@runtime_checkable
class DecoderProtocol(Protocol):
    """An MAE-style decoder: visible latents (+ chosen encoder block outputs) -> a prediction for every token.

    The algorithm asks the encoder for ``required_blocks`` (``forward_visible(..., return_blocks=...)``) and passes
    their outputs on; MAE's decoder needs none, BootMAE's cross-attend to one.
    """

    required_blocks: tuple[int, ...]

    def __call__(self, latent: Tensor, restore_idx: Tensor, block_feats: dict[int, Tensor] | None = None) -> Tensor:
        """``latent [B, P + K, D_enc]``, ``restore_idx [B, L]`` (:func:`mim_zoo.core.tokens.mask_to_indices`) ->
        ``[B, L, out_dim]`` in raster order."""


# --- downstream backbones ---------------------------------------------------------------------------------------
@runtime_checkable
class LayerDepthProtocol(Protocol):
    """A model or backbone that places each parameter at a depth, for layer-wise lr decay (mmpretrain's
    ``get_layer_depth`` convention; mim_zoo's downstream ViT backbones implement it)."""

    def get_layer_depth(self, param_name: str, prefix: str = "") -> tuple[int, int]:
        """``(depth, num_layers)`` of the parameter ``param_name`` (stem 0, block ``i`` at ``i + 1``)."""


# Contracts whose plugins must also be ``nn.Module`` s (they hold state, move with the model, follow train/eval).
MODULE_PROTOCOLS = (TargetProtocol, EncoderProtocol, DecoderProtocol)


# --- the check ----------------------------------------------------------------------------------------------------
def protocol_members(protocol: type) -> tuple[str, ...]:
    """The members a protocol declares (methods, properties, annotated attributes), its bases' included."""
    names: set[str] = set()
    for cls in protocol.__mro__:
        if not cls.__dict__.get("_is_protocol") or cls is Protocol:
            continue
        declared = (*cls.__dict__, *cls.__dict__.get("__annotations__", {}))
        names.update(name for name in declared if not name.startswith("_") or name == "__call__")
    return tuple(sorted(names))


def _declared_methods(protocol: type) -> set[str]:
    return {name for cls in protocol.__mro__ if cls.__dict__.get("_is_protocol")
            for name, value in cls.__dict__.items() if callable(value) and not isinstance(value, type)}


_ABSENT = object()


def missing_members(plugin: object, protocol: type, ignore: Sequence[str] = ()) -> list[str]:
    """The members of ``protocol`` that ``plugin`` lacks (or, for methods, has but cannot call)."""
    methods = _declared_methods(protocol)
    missing = []
    for name in protocol_members(protocol):
        if name in ignore:
            continue
        value = getattr(plugin, name, _ABSENT)
        if value is _ABSENT or (name in methods and not callable(value)):
            missing.append(name)
    return missing


def check_plugin(plugin: object, protocol: type, role: str, ignore: Sequence[str] = ()) -> None:
    """Raise :class:`ContractError` unless ``plugin`` implements ``protocol``.

    Args:
        plugin: the built plugin.
        protocol: one of this module's protocols.
        role: what the plugin is for, quoted in the error (e.g. ``"MixMAE's encoder"``).
        ignore: members not checked yet (a target's ``dim``, which ``bind`` sets).
    """
    missing = missing_members(plugin, protocol, ignore)
    not_module = any(p in protocol.__mro__ for p in MODULE_PROTOCOLS) and not isinstance(plugin, nn.Module)
    if not missing and not not_module:
        return
    problems = ([f"missing {', '.join(missing)}"] if missing else []) + (["not an nn.Module"] if not_module else [])
    summary = " ".join((protocol.__doc__ or "").split()).split(". ")[0].replace("``", "")
    raise ContractError(
        f"{role} {type(plugin).__name__} does not implement {protocol.__name__} ({'; '.join(problems)}). "
        f"{protocol.__name__}: {summary}. Its members are documented in mim_zoo/core/contracts.py."
    )
