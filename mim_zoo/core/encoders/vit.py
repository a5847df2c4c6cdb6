"""Encoders: a thin adapter over timm's canonical ``VisionTransformer`` (STYLE R2, R3).

The adapter owns nothing but the glue MIM needs (the :class:`~mim_zoo.core.contracts.PlainEncoderProtocol`):
patchify, embed (patch tokens + positions), encode only the visible tokens (MAE), encode every token with the
masked ones replaced by a mask token (SimMIM), return chosen block outputs, and run the full image for
momentum/teacher targets. Parameters live in the wrapped timm model (``self.vit``) under timm's own names, so
:meth:`ViTEncoder.export_state_dict` is a plain timm state dict that ``timm.create_model(arch, num_classes=0)`` loads
with no missing key.

Positions: fixed 2-D sin-cos tables (facebookresearch/mae ``util/pos_embed.py``, or BootMAE's MoCo-v3 layout) with a
zero row for the class token, ``requires_grad=False``; or timm's learned ones. Weights: the initialisation of the
paper named by ``init``, which the algorithm's module registers in ``ENCODER_INITS`` (MAE's in
:mod:`mim_zoo.core.algorithms.mae`, BootMAE's in :mod:`mim_zoo.core.algorithms.bootmae`), or timm's own.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType

import torch
from mmengine.model import BaseModule, initialize
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from ..registry import ENCODER_INITS, MODELS, InvalidValueError, registered_names
from ..tokens import gather_tokens, patchify, sincos_pos_embed_2d, unpatchify


def _timm() -> ModuleType:
    """timm, imported when an encoder is built: ``import timm`` imports torchvision, whose ops import
    ``torch._dynamo`` (about as long as ``import torch``), which a registry lookup should not wait for."""
    import timm

    return timm


def _check_patches_tile(img_size: int | Sequence[int], patch_size: int) -> None:
    """Refuse an image side that is not a multiple of the patch size (timm would silently drop the remainder)."""
    sides = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
    for side in dict.fromkeys(sides):
        if side % patch_size:
            raise InvalidValueError(
                f"{side} is not a multiple of {patch_size} (img_size={img_size}, patch_size={patch_size}): the patches "
                "must tile the image; choose a patch_size that divides img_size, or an img_size that is a multiple of "
                "it (and the same crop size in the data pipeline)", "patch_size")


@MODELS.register_module()
class ViTEncoder(BaseModule):
    """A timm ViT with the MIM entry points.

    Args:
        arch: timm model name, e.g. ``vit_base_patch16_224`` (ViT-B/16) or ``vit_large_patch16_224``.
        img_size: input resolution.
        pos_embed: ``"sincos"`` (fixed, MAE/BootMAE) or ``"learned"`` (timm's trainable default).
        sincos_layout: channel order of the sin-cos table, ``"mae"`` or ``"mocov3"`` (BootMAE); see
            :func:`sincos_pos_embed_2d`.
        init: the paper whose initialisation the encoder gets: a name in ``ENCODER_INITS`` (``"mae"``: MAE's
            Xavier init, ``"bootmae"``: BootMAE's; each registered by its algorithm's module) or ``"timm"``
            (timm's own init).
        grad_checkpointing: recompute block activations in backward to save memory (large models).
        **timm_kwargs: forwarded to ``timm.create_model`` (e.g. ``patch_size``, ``embed_dim``, ``depth``,
            ``num_heads`` for tiny test models, ``drop_path_rate``).
    """

    def __init__(
        self,
        arch: str = "vit_base_patch16_224",
        img_size: int = 224,
        pos_embed: str = "sincos",
        init: str = "mae",
        grad_checkpointing: bool = False,
        sincos_layout: str = "mae",
        **timm_kwargs: object,
    ) -> None:
        super().__init__()
        if pos_embed not in ("sincos", "learned"):
            raise ValueError(f"pos_embed must be 'sincos' or 'learned', got {pos_embed!r}")
        init_fn = None if init == "timm" else ENCODER_INITS.get(init)
        if init != "timm" and init_fn is None:
            raise ValueError(f"init must be 'timm' or a registered encoder init "
                             f"({', '.join(map(repr, registered_names(ENCODER_INITS)))}), got {init!r}")
        self.arch = arch
        self.timm_kwargs = dict(img_size=img_size, **timm_kwargs)
        self.vit = _timm().create_model(arch, pretrained=False, num_classes=0, global_pool="", **self.timm_kwargs)
        _check_patches_tile(img_size, self.patch_size)
        if self.vit.cls_token is None or self.vit.num_prefix_tokens != 1 or self.vit.no_embed_class:
            raise ValueError(f"{arch}: mim_zoo's ViT adapter expects one class token with its own position")
        self.grad_checkpointing = grad_checkpointing
        if init_fn is not None:
            init_fn(self.vit)
        if pos_embed == "sincos":
            self.vit.pos_embed.data.copy_(sincos_pos_embed_2d(self.embed_dim, self.grid_size, layout=sincos_layout))
            self.vit.pos_embed.requires_grad_(False)

    def init_weights(self) -> None:
        """Keep the init done in ``__init__``.

        mmengine's Runner calls ``model.init_weights()`` before training; ``BaseModule``'s default would call timm's
        ``VisionTransformer.init_weights`` on ``self.vit`` and overwrite the sin-cos positions and the chosen init
        (and make the online encoder differ from a momentum copy taken at construction). Only an explicit
        ``init_cfg`` (e.g. ``Pretrained``) is applied.
        """
        if self.init_cfg:
            initialize(self, self.init_cfg)
        self._is_init = True

    # --- geometry --------------------------------------------------------------------------------------------
    @property
    def embed_dim(self) -> int:
        return self.vit.embed_dim

    @property
    def depth(self) -> int:
        return len(self.vit.blocks)

    @property
    def num_heads(self) -> int:
        return self.vit.blocks[0].attn.num_heads

    @property
    def patch_size(self) -> int:
        """Pixels per side of one output token (the target patch size)."""
        return self.vit.patch_embed.patch_size[0]

    @property
    def grid_size(self) -> tuple[int, int]:
        return tuple(self.vit.patch_embed.grid_size)

    @property
    def num_patches(self) -> int:
        return self.grid_size[0] * self.grid_size[1]

    @property
    def num_prefix_tokens(self) -> int:
        return self.vit.num_prefix_tokens

    def patchify(self, imgs: Tensor) -> Tensor:
        """``[B, 3, H, W] -> [B, L, p*p*3]``."""
        return patchify(imgs, self.patch_size)

    def unpatchify(self, x: Tensor) -> Tensor:
        """``[B, L, p*p*3] -> [B, 3, H, W]``."""
        return unpatchify(x, self.patch_size, self.grid_size)

    # --- forward paths ---------------------------------------------------------------------------------------
    def check_input(self, imgs: Tensor) -> None:
        expected = tuple(s * self.patch_size for s in self.grid_size)
        if imgs.dim() != 4 or tuple(imgs.shape[-2:]) != expected:
            raise ValueError(
                f"{self.arch} was built for {expected[0]}x{expected[1]} images, got a batch of shape "
                f"{tuple(imgs.shape)}; set the data pipeline's crop size (and the encoder's img_size) to match"
            )

    def embed(self, imgs: Tensor, mask: Tensor | None = None, mask_token: Tensor | None = None) -> Tensor:
        """Patch tokens with positions, without prefix tokens: ``[B, 3, H, W] -> [B, L, D]``.

        With ``mask [B, L]`` (True = masked) the patch embeddings there are replaced by ``mask_token [1, 1, D]``
        before the positions are added, so a mask token carries its position and nothing of the hidden pixels.
        """
        self.check_input(imgs)
        x = self.vit.patch_embed(imgs)  # [B, L, D]
        if mask is not None:
            if tuple(mask.shape) != tuple(x.shape[:2]):
                raise ValueError(f"a token mask must be [B, L] = {list(x.shape[:2])}, got {list(mask.shape)}")
            if mask_token is None:
                raise ValueError(f"a token mask needs the mask_token [1, 1, {x.shape[-1]}] that replaces the tokens")
            x = torch.where(mask.bool().unsqueeze(-1), mask_token.to(x.dtype), x)
        return x + self.vit.pos_embed[:, self.num_prefix_tokens :]

    def _prepend_cls(self, x: Tensor) -> Tensor:
        cls = self.vit.cls_token + self.vit.pos_embed[:, : self.num_prefix_tokens]  # [1, 1, D]
        return self.vit.norm_pre(torch.cat([cls.expand(x.shape[0], -1, -1), x], dim=1))

    def _run_blocks(self, x: Tensor, return_blocks: Sequence[int] = (),
                    stop_at: int | None = None) -> tuple[Tensor, dict[int, Tensor]]:
        feats: dict[int, Tensor] = {}
        bad = [b for b in return_blocks if not -self.depth <= b < self.depth]
        if bad:
            raise ValueError(f"block indices {bad} are out of range for a {self.depth}-block encoder")
        for i, blk in enumerate(self.vit.blocks):
            if self.grad_checkpointing and self.training and torch.is_grad_enabled():
                x = checkpoint(blk, x, use_reentrant=False)
            else:
                x = blk(x)
            for b in return_blocks:
                if b % self.depth == i:
                    feats[b] = x  # keyed as requested, so a caller asking for -1 finds it without knowing depth
            if stop_at is not None and i == stop_at:
                break
        return x, feats

    def forward_visible(self, imgs: Tensor, keep_idx: Tensor | None,
                        return_blocks: Sequence[int] = ()) -> tuple[Tensor, dict[int, Tensor]]:
        """Encode the visible tokens (MAE's ``forward_encoder`` without the masking step).

        Args:
            imgs: ``[B, 3, H, W]``.
            keep_idx: ``[B, K]`` visible token positions (``None`` = all tokens).
            return_blocks: block indices (negative allowed) whose raw outputs, before the final norm, to return.

        Returns:
            ``latent [B, 1 + K, D]`` after the final norm (class token first) and ``{block: [B, 1 + K, D]}``, keyed
            by the indices exactly as given in ``return_blocks`` (``-1`` stays ``-1``).
        """
        x = self.embed(imgs)  # [B, L, D]
        if keep_idx is not None:
            x = gather_tokens(x, keep_idx)  # [B, K, D]
        x, feats = self._run_blocks(self._prepend_cls(x), return_blocks)
        return self.vit.norm(x), feats

    def forward_masked(self, imgs: Tensor, mask: Tensor, mask_token: Tensor) -> Tensor:
        """Encode every token, the masked ones as ``mask_token`` (SimMIM's encoder: microsoft/SimMIM
        ``models/simmim.py:VisionTransformerForSimMIM.forward``, mask tokens written before positions are added).

        Args:
            imgs: ``[B, 3, H, W]``.
            mask: ``[B, L]``, True = masked (any number per row).
            mask_token: ``[1, 1, D]`` the learned token (the algorithm's parameter).

        Returns:
            ``[B, 1 + L, D]`` after the final norm, class token first; the pixels under the mask do not reach it.
        """
        x, _ = self._run_blocks(self._prepend_cls(self.embed(imgs, mask, mask_token)))
        return self.vit.norm(x)

    def forward_full(self, imgs: Tensor, block: int = -1, norm: bool = False) -> Tensor:
        """All patch tokens of the unmasked image after ``block`` (momentum/teacher features).

        Returns:
            ``[B, L, D]``: the raw output of ``block`` (class token dropped), LayerNormed by the final norm only when
            ``norm`` (BootMAE's target is the last block *before* the final norm).
        """
        block = block % self.depth
        x, _ = self._run_blocks(self._prepend_cls(self.embed(imgs)), stop_at=block)
        if norm:
            x = self.vit.norm(x)
        return x[:, self.num_prefix_tokens :]

    def forward(self, imgs: Tensor) -> Tensor:
        """``[B, 3, H, W] -> [B, 1 + L, D]``: the plain, unmasked ViT features (final norm applied)."""
        return self.forward_visible(imgs, None)[0]

    # --- export ------------------------------------------------------------------------------------------------
    canonical = "timm"  # the library whose model class the exported state dict loads into

    def export_state_dict(self) -> dict[str, Tensor]:
        """A plain timm state dict: :meth:`build_canonical` (``timm.create_model(arch, num_classes=0, ...)``) loads
        it with no missing or unexpected key."""
        return {k: v.detach().clone() for k, v in self.vit.state_dict().items()}

    def timm_create_kwargs(self) -> dict[str, object]:
        """The ``timm.create_model`` arguments that rebuild this encoder's architecture."""
        return dict(model_name=self.arch, num_classes=0, **self.timm_kwargs)

    def build_canonical(self) -> nn.Module:
        """A fresh, randomly initialised timm model of this architecture."""
        return _timm().create_model(pretrained=False, **self.timm_create_kwargs())
