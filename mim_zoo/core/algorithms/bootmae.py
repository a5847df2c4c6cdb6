"""BootMAE: Bootstrapped Masked Autoencoders for Vision BERT Pretraining (Dong et al., ECCV 2022, arXiv:2207.07116).

Official code: https://github.com/LightDXY/BootMAE (MIT License), read at d604b18; ``model.py`` below stands for
``models/modeling_pretrain_bootmae.py`` and ``train.py`` for ``run_pretraining.py:train_one_epoch``. Ported details:

* Encoder: a plain ViT with fixed 2-D sin-cos positions in MoCo-v3 layout (``model.py:
  build_2d_sincos_position_embedding``), no layer-scale (blocks built with ``init_values=None``), q/v biases, LN eps
  1e-6, BootMAE init (``model.py:__init__``: :func:`init_bootmae_vit`, registered as ``ENCODER_INITS["bootmae"]``)
  -> ``ViTEncoder(pos_embed="sincos", sincos_layout="mocov3", init="bootmae")``. timm's fused qkv bias also has a
  key bias; it is equivalent because a key bias adds the same ``q . b_k`` to every logit of a query and cancels in
  the softmax (the converter fills it with zeros).
* Momentum encoder (``train.py``, timm ``ModelEma``, ``model.py:get_feature``): an EMA copy of the encoder sees the
  full unmasked image; the target is the last block's output *before* the final norm, compared after a
  parameter-free ``LayerNorm(eps=1e-6)`` on both sides -> ``mim_zoo.core.targets.MomentumTarget``. The momentum is set
  per epoch (``utils.py:adjust_ema_momentum``) and the EMA steps after every optimizer step ->
  ``MIMScheduleHook(momentum=piecewise_linear)`` in ``configs/bootmae``. Only the encoder is averaged (the official
  EMA also copies the decoders, which it never uses).
* Target-aware decoders (``model.py:Decode_Block``, ``Cross_Attention``, ``forward``) -> :class:`TargetAwareDecoder`:
  the final-normed encoder tokens are projected (``down``/``down_1``), mask tokens carry a sin-cos position (the
  visible tokens get none), then pre-norm blocks of self-attention, cross-attention to one *raw* encoder block
  output (class + visible tokens) and an MLP; no drop-path. The pixel regressor (:class:`BootMAEPixelDecoder`: 512-d,
  2 blocks, reads block 0, ``ConvTranspose2d`` head ``PatchDeEmbed``) and the feature predictor
  (:class:`BootMAEFeatureDecoder`: encoder width, 2 blocks, reads the last block, Linear head).
* Heads: the official decoders use the *encoder's* head count (``num_heads=num_heads``): 12 heads of
  ``512 // 12 = 42`` channels in the base pixel decoder, whose attention runs in 504 of 512 channels. We keep it
  (``num_heads`` in the configs; any other count changes the weight shapes, so official checkpoints would no longer
  load); ViT-L has 16 heads of 32.
* Masking (``masking_generator.py``, ``utils.py:mask_to_index``): 120 patches in BEiT blocks, topped up with random
  patches to 147 of 196 with a random roll of 0-3 -> ``mim_zoo.core.masking.BlockMasking`` (checked step by step against
  both files: same procedure).
* Losses (``train.py``): per-patch, per-channel normalised pixels (``PixelTarget("patch_channel")``); with
  ``--weight_mask`` each masked patch weighs ``1 + avgpool3x3(m)`` (:func:`center_weights`), and ``perc_mask``
  applies the *same* weights to the feature loss; both sums are divided by the number of masked patches
  (``mean(loss_mask)``) -> ``losses.weighted_mse``. ``loss = pixel + w * feature`` with ``w`` ramped to 1 over the
  first 25% of the epochs -> ``schedules.linear_warmup`` (loss weight ``"feature"``).
* Decoder init (``model.py:__init__``): Xavier-uniform Linear (self-attention qkv split in three), zero biases,
  mask tokens trunc-normal(0.02) truncated at +-0.02 (BEiT's ``trunc_normal_`` wrapper), LayerNorm 1/0; the
  ``ConvTranspose2d`` head is neither ``nn.Linear`` nor ``nn.Conv2d`` and keeps PyTorch's default init.

Written anew; no code is copied.
"""

from __future__ import annotations

import math
from functools import partial
from types import MappingProxyType

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ..contracts import DecoderProtocol, PixelTargetProtocol, PlainEncoderProtocol, check_plugin
from ..losses import weighted_mse
from ..registry import ENCODER_INITS, MODELS
from ..tokens import gather_tokens, mask_to_indices, patchify, sincos_pos_embed_2d
from .base import BaseMIM

LayerNorm6 = partial(nn.LayerNorm, eps=1e-6)  # BootMAE's norm_layer


def init_bootmae_weights(module: nn.Module) -> None:
    """BootMAE's init of every Linear and LayerNorm below ``module`` (``model.py:
    VisionTransformerForMaskedImageModeling.__init__``).

    Xavier-uniform Linear weights, with a fused ``qkv`` projection treated as three separate matrices (bound
    ``sqrt(6 / (out/3 + in))``), zero biases, LayerNorm 1/0. The official code first applies trunc-normal(0.02) to
    every Linear, but this loop overwrites all of it.
    """
    for name, m in module.named_modules():
        if isinstance(m, nn.Linear):
            for part in m.weight.chunk(3 if name.rsplit(".", 1)[-1] == "qkv" else 1):  # official: 'qkv' in name
                nn.init.xavier_uniform_(part)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm) and m.elementwise_affine:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


@ENCODER_INITS.register_module("bootmae")
def init_bootmae_vit(vit: nn.Module) -> None:
    """BootMAE's encoder init on a timm ``VisionTransformer`` (``model.py:__init__``): :func:`init_bootmae_weights`,
    the patch projection Xavier-uniform over ``(3*p*p, D)`` with a zero bias, class token N(0, 1e-6)."""
    init_bootmae_weights(vit)
    proj = vit.patch_embed.proj
    nn.init.xavier_uniform_(proj.weight.view(proj.weight.shape[0], -1))
    nn.init.zeros_(proj.bias)
    nn.init.normal_(vit.cls_token, std=1e-6)


def _attend(q: Tensor, k: Tensor, v: Tensor, num_heads: int) -> Tensor:
    """Softmax attention per head: ``q [B, N, h*d]``, ``k, v [B, M, h*d]`` -> ``[B, N, h*d]`` (scale ``d**-0.5``)."""
    q, k, v = (t.unflatten(-1, (num_heads, -1)).transpose(1, 2) for t in (q, k, v))  # [B, h, N or M, d]
    return F.scaled_dot_product_attention(q, k, v).transpose(1, 2).flatten(2)


class SelfAttention(nn.Module):
    """Multi-head self-attention with ``dim // num_heads`` channels per head (``model.py:Attention``).

    When ``num_heads`` does not divide ``dim`` the heads span ``(dim // num_heads) * num_heads`` channels and ``proj``
    maps them back to ``dim`` (BootMAE-B's 512-d decoder: 12 x 42 = 504).
    """

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        inner = (dim // num_heads) * num_heads
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * inner)
        self.proj = nn.Linear(inner, dim)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, N, dim] -> [B, N, dim]``."""
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        return self.proj(_attend(q, k, v, self.num_heads))


class CrossAttention(nn.Module):
    """Queries from the decoder tokens, keys and values from encoder features (``model.py:Cross_Attention``)."""

    def __init__(self, dim: int, context_dim: int, num_heads: int) -> None:
        super().__init__()
        inner = (dim // num_heads) * num_heads
        self.num_heads = num_heads
        self.q = nn.Linear(dim, inner)
        self.kv = nn.Linear(context_dim, 2 * inner)
        self.proj = nn.Linear(inner, dim)

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        """``x [B, N, dim]``, ``context [B, M, context_dim]`` -> ``[B, N, dim]``."""
        k, v = self.kv(context).chunk(2, dim=-1)
        return self.proj(_attend(self.q(x), k, v, self.num_heads))


class TargetAwareBlock(nn.Module):
    """Pre-norm decoder block: self-attention, cross-attention to encoder features, MLP (``model.py:Decode_Block``;
    official ``norm3``/``norm4``/``c_attn`` are ``norm_cross``/``norm_context``/``cross_attn`` here)."""

    def __init__(self, dim: int, context_dim: int, num_heads: int, mlp_ratio: float = 4.0) -> None:
        from timm.layers import Mlp  # timm loads with the first model built, not with the registry

        super().__init__()
        self.norm1 = LayerNorm6(dim)
        self.attn = SelfAttention(dim, num_heads)
        self.norm_cross = LayerNorm6(dim)
        self.norm_context = LayerNorm6(context_dim)
        self.cross_attn = CrossAttention(dim, context_dim, num_heads)
        self.norm2 = LayerNorm6(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        """``x [B, N, dim]``, ``context [B, M, context_dim]`` -> ``[B, N, dim]``."""
        x = x + self.attn(self.norm1(x))
        x = x + self.cross_attn(self.norm_cross(x), self.norm_context(context))
        return x + self.mlp(self.norm2(x))


class PatchDeEmbed(nn.Module):
    """BootMAE's pixel head (``model.py:PatchDeEmbed``): ``ConvTranspose2d(E -> C, kernel = stride = p)`` on the
    token grid, returned per token as ``[B, L, p*p*C]`` in MAE's ``(p, q, c)`` order.

    With kernel = stride it is exactly ``Linear(E -> p*p*C)`` (weight ``W.permute(2, 3, 1, 0).reshape(p*p*C, E)``,
    bias repeated over the ``p*p`` pixels) followed by unpatchify; tests/algorithms/test_bootmae.py proves it. We keep
    the transposed convolution: its 3-value bias and its init are the official ones.
    """

    def __init__(self, embed_dim: int, grid_size: tuple[int, int], out_dim: int, channels: int = 3) -> None:
        super().__init__()
        patch = math.isqrt(out_dim // channels)
        if patch * patch * channels != out_dim:
            raise ValueError(
                f"a ConvTranspose2d pixel head predicts p*p*{channels} values per token, but the target has "
                f"{out_dim}; use head='linear' for a non-pixel target"
            )
        self.grid_size, self.patch_size = tuple(grid_size), patch
        self.proj = nn.ConvTranspose2d(embed_dim, channels, kernel_size=patch, stride=patch)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, L, E] -> [B, L, p*p*C]``."""
        grid = rearrange(x, "b (h w) e -> b e h w", h=self.grid_size[0], w=self.grid_size[1])
        return patchify(self.proj(grid), self.patch_size)  # [B, C, H*p, W*p] -> tokens


@MODELS.register_module()
class TargetAwareDecoder(nn.Module):
    """BootMAE's target-aware decoder: visible latents + one encoder block's output -> a prediction per token.

    Same interface as :class:`~mim_zoo.core.algorithms.mae.MAEDecoder`: the algorithm asks the encoder for the blocks in
    ``required_blocks`` and calls ``decoder(latent, restore_idx, block_feats)``.

    Args:
        in_dim: encoder width (filled in by the algorithm); also the width of the cross-attended features.
        grid_size: token grid ``(H, W)`` (filled in by the algorithm).
        out_dim: prediction width per token, the target's ``dim`` (filled in by the algorithm).
        embed_dim: decoder width; ``None`` = ``in_dim``.
        depth, num_heads, mlp_ratio: decoder transformer (BootMAE: 2 blocks, the encoder's head count, 4).
        context_block: encoder block (negative = from the end) whose raw output, before the final norm, the
            cross-attention reads.
        head: ``"linear"`` (``Linear(embed_dim, out_dim)``) or ``"conv_transpose"`` (:class:`PatchDeEmbed`).
        sincos_layout: sin-cos layout of the positions added to the mask tokens (BootMAE: ``"mocov3"``).
    """

    def __init__(self, in_dim: int, grid_size: tuple[int, int], out_dim: int, embed_dim: int | None = None,
                 depth: int = 2, num_heads: int = 12, mlp_ratio: float = 4.0, context_block: int = -1,
                 head: str = "linear", sincos_layout: str = "mocov3") -> None:
        super().__init__()
        if head not in ("linear", "conv_transpose"):
            raise ValueError(f"head must be 'linear' or 'conv_transpose', got {head!r}")
        embed_dim = embed_dim or in_dim
        self.context_block = context_block
        self.required_blocks: tuple[int, ...] = (context_block,)
        self.embed = nn.Linear(in_dim, embed_dim)  # official `down` / `down_1`
        self.mask_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.register_buffer("pos_embed", sincos_pos_embed_2d(embed_dim, tuple(grid_size), 0, sincos_layout),
                             persistent=False)  # [1, L, E]
        self.blocks = nn.ModuleList(TargetAwareBlock(embed_dim, in_dim, num_heads, mlp_ratio) for _ in range(depth))
        self.norm = LayerNorm6(embed_dim)
        self.head = nn.Linear(embed_dim, out_dim) if head == "linear" else PatchDeEmbed(embed_dim, grid_size, out_dim)
        init_bootmae_weights(self)
        nn.init.trunc_normal_(self.mask_token, std=0.02, a=-0.02, b=0.02)

    def forward(self, latent: Tensor, restore_idx: Tensor, block_feats: dict[int, Tensor] | None = None) -> Tensor:
        """Predict every token.

        Args:
            latent: ``[B, 1 + K, in_dim]`` final-normed encoder output, class token first.
            restore_idx: ``[B, L]`` from :func:`mim_zoo.core.tokens.mask_to_indices`.
            block_feats: ``{block: [B, 1 + K, in_dim]}`` raw encoder block outputs; must hold ``context_block``.

        Returns:
            ``[B, L, out_dim]`` in raster order.
        """
        if not block_feats or self.context_block not in block_feats:
            raise ValueError(
                f"{type(self).__name__} cross-attends to encoder block {self.context_block}; pass "
                "encoder.forward_visible(..., return_blocks=decoder.required_blocks)'s block outputs"
            )
        x = self.embed(latent)  # [B, 1 + K, E]
        cls, visible = x[:, :1], x[:, 1:]
        num_visible = visible.shape[1]
        masked = self.mask_token.expand(x.shape[0], restore_idx.shape[1] - num_visible, -1)
        x = gather_tokens(torch.cat([visible, masked], dim=1), restore_idx)  # [B, L, E] raster order
        is_masked = (restore_idx >= num_visible).unsqueeze(-1)  # [B, L, 1]
        x = torch.where(is_masked, x + self.pos_embed, x)  # positions on the mask tokens only, as official
        x = torch.cat([cls, x], dim=1)  # [B, 1 + L, E]
        context = block_feats[self.context_block]
        for blk in self.blocks:
            x = blk(x, context)
        return self.head(self.norm(x)[:, 1:])  # [B, L, out_dim]


@MODELS.register_module()
class BootMAEPixelDecoder(TargetAwareDecoder):
    """The pixel regressor (official ``down``, ``mask_token``, ``de_pos_embed``, ``decode_blocks``,
    ``decode_norm``, ``lm_head``): 512-d, cross-attends to block 0, ``ConvTranspose2d`` head."""

    def __init__(self, in_dim: int, grid_size: tuple[int, int], out_dim: int, **kwargs: object) -> None:
        kwargs = dict(embed_dim=512, context_block=0, head="conv_transpose") | kwargs
        super().__init__(in_dim, grid_size, out_dim, **kwargs)


@MODELS.register_module()
class BootMAEFeatureDecoder(TargetAwareDecoder):
    """The feature predictor (official ``down_1``, ``mask_token_1``, ``decode_blocks_1``, ``decode_norm_1``,
    ``lm_head_1``; its mask tokens take the encoder's ``pos_embed``): encoder width, cross-attends to the last
    block, Linear head."""

    def __init__(self, in_dim: int, grid_size: tuple[int, int], out_dim: int, **kwargs: object) -> None:
        kwargs = dict(embed_dim=None, context_block=-1, head="linear") | kwargs
        super().__init__(in_dim, grid_size, out_dim, **kwargs)


def center_weights(mask: Tensor, grid_size: tuple[int, int]) -> Tensor:
    """BootMAE's ``--weight_mask``: ``w = m * avgpool3x3(m) + m`` on the patch grid (``train.py``).

    The pool is zero-padded and always divides by 9 (``AvgPool2d(3, 1, padding=1)``), so a masked patch weighs 1 plus
    the masked fraction of its 3x3 neighbourhood (1 + 1/9 alone, 2 inside a block) and a visible one 0.

    Args:
        mask: ``[B, L]``, True = masked, raster order over ``grid_size``.

    Returns:
        ``[B, L]`` float weights.
    """
    m = mask.float().unflatten(1, tuple(grid_size)).unsqueeze(1)  # [B, 1, H, W]
    return (m * F.avg_pool2d(m, 3, stride=1, padding=1, count_include_pad=True) + m).flatten(1)


@MODELS.register_module()
class BootMAE(BaseMIM):
    """MAE with a momentum-encoder feature target and two target-aware decoders.

    Args:
        encoder: ``ViTEncoder`` (or config); BootMAE: sin-cos positions in MoCo-v3 layout, ``init="bootmae"``.
        masking: mask generator; BootMAE: ``BlockMasking()`` (120 in blocks + random to 147 of 196).
        pixel_target: ``PixelTarget(norm="patch_channel")`` by default.
        feature_target: ``MomentumTarget()`` by default (EMA encoder, last block, no final norm, LN on both sides).
        pixel_decoder: decoder config; ``type`` defaults to :class:`BootMAEPixelDecoder`.
        feature_decoder: decoder config; ``type`` defaults to :class:`BootMAEFeatureDecoder`.
        center_weighting: official ``--weight_mask`` (:func:`center_weights` on both losses); ``False`` = plain
            masked mean.
        data_preprocessor, init_cfg: mmengine's.

    The feature loss is scaled by the loss weight ``"feature"`` (1 unless ``MIMScheduleHook`` sets it).
    """

    encoder_protocol = PlainEncoderProtocol  # forward_visible with the block outputs the decoders cross-attend to
    default_parts = MappingProxyType({
        "masking": {"type": "BlockMasking"},
        "pixel_target": {"type": "PixelTarget", "norm": "patch_channel"},
        "feature_target": {"type": "MomentumTarget"},
        "pixel_decoder": {"type": BootMAEPixelDecoder},
        "feature_decoder": {"type": BootMAEFeatureDecoder},
    })

    def __init__(self, encoder: nn.Module | dict, masking: dict | object = None,
                 pixel_target: nn.Module | dict | None = None, feature_target: nn.Module | dict | None = None,
                 pixel_decoder: nn.Module | dict | None = None, feature_decoder: nn.Module | dict | None = None,
                 center_weighting: bool = True, data_preprocessor: dict | None = None,
                 init_cfg: dict | None = None) -> None:
        super().__init__(encoder, self.part_config("masking", masking), data_preprocessor, init_cfg)
        self.pixel_target = self.build_target(self.part_config("pixel_target", pixel_target), PixelTargetProtocol,
                                              "pixel_target")
        self.feature_target = self.build_target(self.part_config("feature_target", feature_target),
                                                slot="feature_target")
        self.pixel_decoder = self._build_decoder("pixel_decoder", pixel_decoder, self.pixel_target.dim)
        self.feature_decoder = self._build_decoder("feature_decoder", feature_decoder, self.feature_target.dim)
        self.center_weighting = center_weighting

    def _build_decoder(self, slot: str, cfg: nn.Module | dict | None, out_dim: int) -> nn.Module:
        decoder = self.build_part(slot, MODELS, cfg, in_dim=self.encoder.embed_dim, grid_size=self.encoder.grid_size,
                                  out_dim=out_dim)
        check_plugin(decoder, DecoderProtocol, f"{type(self).__name__}'s {slot}")
        return decoder

    def encode(self, images: Tensor, mask: Tensor) -> tuple[Tensor, dict[int, Tensor], Tensor]:
        """Encode the visible patches.

        Returns:
            ``latent [B, 1 + K, D]`` (final norm), ``{block: [B, 1 + K, D]}`` for both decoders, ``restore_idx [B, L]``.
        """
        keep_idx, _, restore_idx = mask_to_indices(mask)
        blocks = tuple(dict.fromkeys(self.pixel_decoder.required_blocks + self.feature_decoder.required_blocks))
        latent, feats = self.encoder.forward_visible(images, keep_idx, blocks)
        return latent, feats, restore_idx

    def loss(self, images: Tensor, mask: Tensor) -> dict[str, Tensor]:
        latent, feats, restore_idx = self.encode(images, mask)
        pixel_pred = self.pixel_decoder(latent, restore_idx, feats)  # [B, L, p*p*3]
        feature_pred = self.feature_decoder(latent, restore_idx, feats)  # [B, L, D]
        weight = center_weights(mask, self.encoder.grid_size) if self.center_weighting else mask.float()  # [B, L]
        loss_pixel = weighted_mse(self.pixel_target.normalize_prediction(pixel_pred),
                                  self.pixel_target(images, self.encoder), weight, mask)
        loss_feature = weighted_mse(self.feature_target.normalize_prediction(feature_pred),
                                    self.feature_target(images, self.encoder), weight, mask)
        feature_weight = self.loss_weight("feature")
        return {
            "loss_pixel": loss_pixel,
            "loss_feature": feature_weight * loss_feature,
            "stat_feature_mse": loss_feature.detach(),
            "stat_feature_weight": images.new_tensor(feature_weight),
            "stat_mask_ratio": mask.float().mean().detach(),
        }

    @torch.no_grad()
    def reconstruct(self, images: Tensor, mask: Tensor) -> dict[str, Tensor]:
        latent, feats, restore_idx = self.encode(images, mask)
        pixel_pred = self.pixel_decoder(latent, restore_idx, feats)  # [B, L, p*p*3]
        pixels = self.pixel_target.to_pixels(pixel_pred, images)  # undo the per-patch, per-channel normalisation
        return {"mask": mask, "reconstruction": self.encoder.unpatchify(pixels)}
