"""MixMAE: Mixed and Masked Autoencoder for Efficient Pretraining of Hierarchical Vision Transformers (Liu et al.,
CVPR 2023, arXiv:2205.13137; first released as MixMIM).

Official code: https://github.com/Sense-X/MixMIM, read at 2b2f5a9 (no license file in the repository); cross-checked
with mmpretrain 1.2.0 (Apache-2.0) ``models/selfsup/mixmim.py``, ``necks/mixmim_neck.py``, ``heads/mixmim_head.py``.
Ported details, all from Sense-X/MixMIM@2b2f5a9 ``models_mixmim.py``:

* ``MixMIM.random_masking``: one 50% mask per (per-GPU) batch on the stride-32 grid, nearest-upsampled to every
  stage -> ``mim_zoo.core.masking.MixingMask`` + ``MixMIMEncoder.stage_masks``.
* ``MixMIM.forward_encoder``: patch embeddings of image ``i`` and of its batch mirror ``B - 1 - i`` mixed token-wise
  (``x * (1 - m) + x.flip(0) * m``), then positions and the stages with same-source window attention in every block
  -> :func:`mix_tokens` + ``MixMIMEncoder.encode``.
* ``MixMIM.forward_decoder``: ``decoder_embed``, two streams per mixed input (one per source image, the other image's
  tokens replaced by one shared mask token), fixed 2-D sin-cos positions on the 7x7 grid, 8 timm blocks (512-d,
  16 heads, mlp 4, qkv bias, ``nn.LayerNorm`` with its default eps 1e-5), LN, Linear to ``32 * 32 * 3``
  -> :func:`split_streams` + :class:`MixMAEDecoder`.
* ``MixMIM.forward_loss``: unmix (``rec1 * m + rec2.flip(0) * (1 - m)``) so that every patch of every image is
  predicted exactly once, by the stream where it was hidden; norm-pix target on 32x32 patches (mean and unbiased
  variance per patch, eps 1e-6); MSE averaged over all tokens -> :func:`unmix_predictions` + :func:`mixmae_loss`
  with ``PixelTarget(norm="patch")``.
* ``MixMIM.initialize_weights``: Xavier-uniform Linear (``_init_weights``, MAE's), LN 1/0, relative-position tables
  trunc-normal(0.02), mask token trunc-normal(0.02) -> :func:`init_mixmim_encoder` (registered as
  ``ENCODER_INITS["mixmim"]``, applied by ``MixMIMEncoder(init="mixmim")``) and :class:`MixMAEDecoder`.

Written anew; no code is copied.
"""

from __future__ import annotations

from functools import partial
from types import MappingProxyType

import torch
from torch import Tensor, nn
from torch.nn.init import trunc_normal_

from ..contracts import HierarchicalEncoderProtocol, PixelTargetProtocol
from ..encoders.mixmim import upsample_mask
from ..losses import per_token_mse
from ..registry import ENCODER_INITS, MODELS
from ..tokens import sincos_pos_embed_2d
from .base import BaseMIM
from .mae import init_mae_weights


@ENCODER_INITS.register_module("mixmim")
def init_mixmim_encoder(mixmim: nn.Module) -> None:
    """MixMIM's encoder init on mmpretrain's ``MixMIMTransformer`` (``MixMIM.initialize_weights``): MAE's
    :func:`init_mae_weights` on every module (the official ``_init_weights`` is the same), the relative-position bias
    tables of every window attention trunc-normal(0.02); the patch-embedding conv keeps PyTorch's default init.
    (The fixed sin-cos positions are the encoder's.)"""
    from mmpretrain.models.utils import WindowMSA  # at build time: importing mmpretrain's models imports mmdet

    mixmim.apply(init_mae_weights)
    for module in mixmim.modules():
        if isinstance(module, WindowMSA):
            trunc_normal_(module.relative_position_bias_table, std=0.02)


def mix_tokens(x: Tensor, mask: Tensor) -> Tensor:
    """Mix every sample with its batch mirror: ``[B, L, C]``, ``[L]`` (True = from the partner) -> ``[B, L, C]``.

    Row ``i`` keeps its own tokens where ``mask`` is False and takes those of row ``B - 1 - i`` where it is True.
    """
    m = mask.to(x.dtype).reshape(1, -1, 1)  # [1, L, 1]
    return x * (1 - m) + x.flip(0) * m


def split_streams(z: Tensor, mask: Tensor, mask_token: Tensor) -> Tensor:
    """One decoder stream per source image of each mixed input: ``[B, L, E] -> [2B, L, E]``.

    Rows ``:B`` keep the tokens of image ``i`` (``mask`` False) and hold ``mask_token`` where it was hidden; rows
    ``B:`` keep the partner's tokens (``mask`` True), so row ``B + i`` is a stream of image ``B - 1 - i``.
    """
    m = mask.to(z.dtype).reshape(1, -1, 1)  # [1, L, 1]
    token = mask_token.to(z.dtype).expand_as(z)
    return torch.cat([z * (1 - m) + token * m, z * m + token * (1 - m)], dim=0)


def unmix_predictions(pred: Tensor, mask: Tensor) -> Tensor:
    """Per image, each token's prediction from the stream where it was hidden: ``[2B, L, D] -> [B, L, D]``.

    Image ``i``'s tokens hidden in mixed input ``i`` (``mask`` True) come from its own stream ``pred[i]``; the others
    were hidden in mixed input ``B - 1 - i``, whose partner stream is ``pred[B + (B - 1 - i)]``.
    """
    batch = pred.shape[0] // 2
    m = mask.to(pred.dtype).reshape(1, -1, 1)
    return pred[:batch] * m + pred[batch:].flip(0) * (1 - m)


def mixmae_loss(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """MixMAE's dual reconstruction loss (official ``forward_loss``).

    Args:
        pred: ``[2B, L, D]`` decoder output of both streams (:func:`split_streams` order).
        target: ``[B, L, D]`` per-image targets.
        mask: ``[L]``, True where image ``i`` took the partner's token in mixed input ``i``.

    Returns:
        Scalar mean squared error over all ``B * L * D`` entries of the unmixed prediction.
    """
    return per_token_mse(unmix_predictions(pred, mask), target).mean()


@MODELS.register_module()
class MixMAEDecoder(nn.Module):
    """MixMAE's decoder: ``[B, L, in_dim]`` encoder output + ``[L]`` mask -> ``[2B, L, out_dim]``, both streams.

    Args:
        in_dim: encoder width (filled in by the algorithm).
        grid_size: output token grid ``(H, W)`` (filled in by the algorithm).
        out_dim: prediction width per token, the target's ``dim`` (filled in by the algorithm).
        embed_dim, depth, num_heads, mlp_ratio: decoder transformer (MixMIM: 512, 8, 16, 4).
        norm_eps: LayerNorm epsilon (official ``nn.LayerNorm`` default 1e-5; mmpretrain's neck uses 1e-6).
        pos_layout: order of the fixed sin-cos table (:func:`~mim_zoo.core.tokens.sincos_pos_embed_2d`): official
            ``"mae"``; mmpretrain's neck builds ``"mocov3"`` (``build_2d_sincos_position_embedding``), which its
            converted checkpoints need.
    """

    def __init__(self, in_dim: int, grid_size: tuple[int, int], out_dim: int, embed_dim: int = 512, depth: int = 8,
                 num_heads: int = 16, mlp_ratio: float = 4.0, norm_eps: float = 1e-5, pos_layout: str = "mae") -> None:
        from timm.models.vision_transformer import Block  # timm loads with the first model built, not with the registry

        super().__init__()
        norm_layer = partial(nn.LayerNorm, eps=norm_eps)
        self.embed = nn.Linear(in_dim, embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        pos = sincos_pos_embed_2d(embed_dim, tuple(grid_size), num_prefix_tokens=0, layout=pos_layout)
        self.register_buffer("pos_embed", pos, persistent=False)  # [1, L, E], fixed
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio, qkv_bias=True, norm_layer=norm_layer) for _ in range(depth)
        )
        self.norm = norm_layer(embed_dim)
        self.pred = nn.Linear(embed_dim, out_dim)
        self.apply(init_mae_weights)
        trunc_normal_(self.mask_token, std=0.02)

    def forward(self, latent: Tensor, mask: Tensor) -> Tensor:
        """Predict every token of both source images of each mixed input.

        Args:
            latent: ``[B, L, in_dim]`` encoder output of the mixed inputs.
            mask: ``[L]``, True where mixed input ``i`` holds the partner's token.

        Returns:
            ``[2B, L, out_dim]``: rows ``:B`` predict image ``i``, rows ``B + i`` predict image ``B - 1 - i``.
        """
        x = split_streams(self.embed(latent), mask, self.mask_token) + self.pos_embed  # [2B, L, E]
        for blk in self.blocks:
            x = blk(x)
        return self.pred(self.norm(x))


@MODELS.register_module()
class MixMAE(BaseMIM):
    """Mixed and masked autoencoder: encode images mixed with their batch mirror, reconstruct both.

    Args:
        encoder: ``MixMIMEncoder`` (or config); MixMIM-B: Swin-B/W14, windows [14, 14, 14, 7].
        masking: mixing-mask generator; MixMIM: ``MixingMask(0.5)`` (one mask per batch, identical rows).
        target: target generator; MixMIM: ``PixelTarget(norm="patch")`` with the encoder's output stride (32).
        decoder: decoder config; ``type`` defaults to :class:`MixMAEDecoder` (512-d, 8 blocks, 16 heads).
        data_preprocessor, init_cfg: mmengine's.
    """

    encoder_protocol = HierarchicalEncoderProtocol  # embed -> mix -> encode with same-source attention
    default_parts = MappingProxyType({
        "masking": {"type": "MixingMask", "ratio": 0.5},
        "target": {"type": "PixelTarget", "norm": "patch"},
        "decoder": {"type": MixMAEDecoder},
    })

    def __init__(self, encoder: nn.Module | dict, masking: dict | object = None,
                 target: nn.Module | dict | None = None, decoder: dict | None = None,
                 data_preprocessor: dict | None = None, init_cfg: dict | None = None) -> None:
        super().__init__(encoder, self.part_config("masking", masking), data_preprocessor, init_cfg)
        self.target = self.build_target(self.part_config("target", target))
        if isinstance(self.target, PixelTargetProtocol) and self.target.patch_size != self.encoder.patch_size:
            raise ValueError(f"the target's patch size {self.target.patch_size} must equal the encoder's output "
                             f"stride {self.encoder.patch_size} (one target patch per output token); leave it unset")
        self.decoder = self.build_part("decoder", MODELS, decoder, in_dim=self.encoder.embed_dim,
                                       grid_size=self.encoder.grid_size, out_dim=self.target.dim)

    reconstruction_notes = MappingProxyType({
        "masked": "grey = where image i takes its partner's patch (image B-1-i, the rows mirrored) in mixed input "
                  "i; one mask per batch, shared by every row (MixMIM's design: each pair swaps the same patches)",
        "reconstruction": "image i, each patch predicted by the stream in which it was hidden: what the loss scores "
                          "(every patch)",
        "reconstruction + visible": "the same, with the patches image i shows in its own mixed input pasted back",
        "mixed": "the encoder's input i: image i with the grey patches taken from its partner",
        "reconstruction primary": "image i predicted from mixed input i; scored only where hidden (grey), so the "
                                  "rest is never trained",
        "reconstruction partner": "the partner (image B-1-i) predicted from mixed input i; scored only where mixed "
                                  "input i shows image i",
    })

    def check_batch_size(self, batch_size: int) -> None:
        """Each image is mixed with its batch mirror, so a batch (per process) must hold an even number of images."""
        if batch_size % 2:
            raise ValueError(
                f"MixMAE mixes each image with its batch mirror (x.flip(0)), so a batch must hold an even number of "
                f"images; got {batch_size} (the middle image would be mixed with itself)"
            )

    def shared_mask(self, images: Tensor, mask: Tensor) -> Tensor:
        """Check the batch and the mask: ``[B, L]`` with identical rows -> the shared row ``[L]``."""
        self.check_batch_size(images.shape[0])
        if not bool((mask == mask[:1]).all()):
            raise ValueError("MixMAE shares one mixing mask across the batch (official random_masking); the explicit "
                             "mask has differing rows. Pass the same [L] row for every sample")
        return mask[0]

    def predict_tokens(self, images: Tensor, mask: Tensor) -> Tensor:
        """``[B, 3, H, W]``, shared ``[L]`` mask -> ``[2B, L, D]`` predictions of both streams."""
        stage_masks = self.encoder.stage_masks(mask)  # [[L_s]] per stage, nearest-upsampled
        tokens = mix_tokens(self.encoder.embed(images), stage_masks[0])  # [B, L_1, C_1] mixed inputs
        latent = self.encoder.encode(tokens, stage_masks)  # [B, L, D], same-source attention in every block
        return self.decoder(latent, mask)

    def loss(self, images: Tensor, mask: Tensor) -> dict[str, Tensor]:
        row = self.shared_mask(images, mask)  # [L]
        pred = self.predict_tokens(images, row)  # [2B, L, D]
        target = self.target(images, self.encoder)  # [B, L, D]
        loss = mixmae_loss(self.target.normalize_prediction(pred), target, row)
        return {"loss_rec": loss, "stat_mix_ratio": row.float().mean().detach()}

    def mix_images(self, images: Tensor, mask: Tensor) -> Tensor:
        """The mixed input in pixel space, ``[B, 3, H, W]``: what the encoder sees, for pictures."""
        pixel_mask = upsample_mask(mask, self.encoder.grid_size, tuple(images.shape[-2:]))  # [H * W]
        m = pixel_mask.to(images.dtype).reshape(1, 1, *images.shape[-2:])
        return images * (1 - m) + images.flip(0) * m

    @torch.no_grad()
    def reconstruct(self, images: Tensor, mask: Tensor) -> dict[str, Tensor]:
        """Pictures: the mixed inputs and pixel reconstructions of both of their images.

        Returns:
            ``mask [B, L]`` (True = image ``i``'s patch hidden in mixed input ``i``), ``mixed [B, 3, H, W]`` and, for a
            pixel target, ``reconstruction`` (each image from the streams where its patches were hidden),
            ``reconstruction_primary`` (image ``i`` from mixed input ``i``) and ``reconstruction_partner`` (image
            ``B - 1 - i`` from mixed input ``i``), all ``[B, 3, H, W]`` in the input's normalised space.
        """
        row = self.shared_mask(images, mask)
        out = {"mask": row.expand(images.shape[0], -1), "mixed": self.mix_images(images, row)}
        if isinstance(self.target, PixelTargetProtocol):
            pred = self.predict_tokens(images, row)  # [2B, L, D]
            batch = images.shape[0]
            to_image = self.encoder.unpatchify
            out["reconstruction"] = to_image(self.target.to_pixels(unmix_predictions(pred, row), images))
            out["reconstruction_primary"] = to_image(self.target.to_pixels(pred[:batch], images))
            out["reconstruction_partner"] = to_image(self.target.to_pixels(pred[batch:], images.flip(0)))
        return out
