"""MAE: Masked Autoencoders Are Scalable Vision Learners (He et al., CVPR 2022, arXiv:2111.06377).

Official code: https://github.com/facebookresearch/mae (CC BY-NC 4.0), read at efb2a80. Ported details:

* ``models_mae.py:random_masking``: 75% per-sample random masking -> ``mim_zoo.core.masking.RandomMasking``.
* ``models_mae.py:forward_encoder``: visible tokens + class token through the ViT -> ``ViTEncoder.forward_visible``.
* ``models_mae.py:forward_decoder``: ``decoder_embed`` Linear, one shared mask token appended and unshuffled, the
  class token re-attached, fixed sin-cos decoder positions, 8 x 512-d timm blocks (16 heads, LN eps 1e-6), LN,
  Linear to ``p*p*3``, class token dropped -> :class:`MAEDecoder`.
* ``models_mae.py:forward_loss``: norm-pix MSE averaged over the masked patches -> ``PixelTarget("patch")`` +
  ``mim_zoo.core.losses.masked_mse``.
* ``models_mae.py:initialize_weights``, ``_init_weights``: Xavier-uniform Linear (qkv as one matrix), zero biases,
  LN 1/0, the patch projection Xavier-uniform as a matrix, N(0, .02) mask/class tokens -> :func:`init_mae_weights`
  (every module of the algorithm) and :func:`init_mae_vit` (the encoder, registered as ``ENCODER_INITS["mae"]`` and
  applied by ``ViTEncoder(init="mae")``).
* ``models_mae.py:mae_vit_{base,large}_patch16_dec512d8b``: the sizes used by ``configs/mae``.

Written anew against timm's public ViT; no code is copied.
"""

from __future__ import annotations

from functools import partial
from types import MappingProxyType

import torch
from torch import Tensor, nn

from ..contracts import DecoderProtocol, PixelTargetProtocol, PlainEncoderProtocol, check_plugin
from ..losses import masked_mse
from ..registry import ENCODER_INITS, MODELS
from ..tokens import gather_tokens, mask_to_indices, sincos_pos_embed_2d
from .base import BaseMIM

LayerNorm6 = partial(nn.LayerNorm, eps=1e-6)  # MAE's norm_layer


def init_mae_weights(module: nn.Module) -> None:
    """MAE's ``_init_weights``, applied per module: Xavier-uniform Linear weights (qkv as one matrix), zero biases,
    LayerNorm 1/0."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm) and module.elementwise_affine:
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


@ENCODER_INITS.register_module("mae")
def init_mae_vit(vit: nn.Module) -> None:
    """MAE's encoder init on a timm ``VisionTransformer``: :func:`init_mae_weights` everywhere, the patch projection
    Xavier-uniform viewed as a ``[D, 3*p*p]`` matrix, class token N(0, 0.02). (Positions are the encoder's.)"""
    vit.apply(init_mae_weights)
    proj = vit.patch_embed.proj.weight
    nn.init.xavier_uniform_(proj.view(proj.shape[0], -1))
    nn.init.normal_(vit.cls_token, std=0.02)


@MODELS.register_module()
class MAEDecoder(nn.Module):
    """MAE's lightweight decoder: ``[B, 1 + K, in_dim]`` visible latents -> ``[B, L, out_dim]`` predictions.

    Args:
        in_dim: encoder width (filled in by the algorithm).
        grid_size: token grid ``(H, W)`` (filled in by the algorithm).
        out_dim: prediction width per token, the target's ``dim`` (filled in by the algorithm).
        embed_dim, depth, num_heads, mlp_ratio: decoder transformer (MAE: 512, 8, 16, 4).
    """

    required_blocks: tuple[int, ...] = ()  # encoder block outputs this decoder reads (none)

    def __init__(self, in_dim: int, grid_size: tuple[int, int], out_dim: int, embed_dim: int = 512, depth: int = 8,
                 num_heads: int = 16, mlp_ratio: float = 4.0) -> None:
        from timm.models.vision_transformer import Block  # timm loads with the first model built, not with the registry

        super().__init__()
        self.embed = nn.Linear(in_dim, embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.register_buffer("pos_embed", sincos_pos_embed_2d(embed_dim, tuple(grid_size)), persistent=False)
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio, qkv_bias=True, norm_layer=LayerNorm6) for _ in range(depth)
        )
        self.norm = LayerNorm6(embed_dim)
        self.pred = nn.Linear(embed_dim, out_dim)
        self.apply(init_mae_weights)
        nn.init.normal_(self.mask_token, std=0.02)

    def forward(self, latent: Tensor, restore_idx: Tensor, block_feats: dict[int, Tensor] | None = None) -> Tensor:
        """Predict every token.

        Args:
            latent: ``[B, 1 + K, in_dim]`` encoder output, class token first.
            restore_idx: ``[B, L]`` from :func:`mim_zoo.core.tokens.mask_to_indices`.
            block_feats: unused (MAE's decoder reads only the final latent).

        Returns:
            ``[B, L, out_dim]`` in raster order.
        """
        x = self.embed(latent)  # [B, 1 + K, E]
        cls, visible = x[:, :1], x[:, 1:]
        num_masked = restore_idx.shape[1] - visible.shape[1]
        x = torch.cat([visible, self.mask_token.expand(x.shape[0], num_masked, -1)], dim=1)  # [B, L, E]
        x = gather_tokens(x, restore_idx)  # unshuffle to raster order
        x = torch.cat([cls, x], dim=1) + self.pos_embed  # [B, 1 + L, E]
        for blk in self.blocks:
            x = blk(x)
        return self.pred(self.norm(x))[:, 1:]  # [B, L, out_dim]


@MODELS.register_module()
class MAE(BaseMIM):
    """Masked autoencoder: encode the visible patches, decode all, regress the target on the masked ones.

    Args:
        encoder: ``ViTEncoder`` (or config); MAE ViT-B/16: ``vit_base_patch16_224`` with sin-cos positions.
        masking: mask generator; MAE: ``RandomMasking(0.75)``.
        target: target generator; MAE: ``PixelTarget(norm="patch")`` (norm-pix loss).
        decoder: decoder config; ``type`` defaults to :class:`MAEDecoder` (512-d, 8 blocks, 16 heads).
        data_preprocessor, init_cfg: mmengine's.
    """

    encoder_protocol = PlainEncoderProtocol  # forward_visible: the visible tokens alone
    default_parts = MappingProxyType({
        "masking": {"type": "RandomMasking", "ratio": 0.75},
        "target": {"type": "PixelTarget", "norm": "patch"},
        "decoder": {"type": "MAEDecoder"},
    })

    def __init__(self, encoder: nn.Module | dict, masking: dict | object = None,
                 target: nn.Module | dict | None = None, decoder: dict | None = None,
                 data_preprocessor: dict | None = None, init_cfg: dict | None = None) -> None:
        super().__init__(encoder, self.part_config("masking", masking), data_preprocessor, init_cfg)
        self.target = self.build_target(self.part_config("target", target))
        self.decoder = self.build_part("decoder", MODELS, decoder, in_dim=self.encoder.embed_dim,
                                       grid_size=self.encoder.grid_size, out_dim=self.target.dim)
        check_plugin(self.decoder, DecoderProtocol, f"{type(self).__name__}'s decoder")

    def predict_tokens(self, images: Tensor, mask: Tensor) -> Tensor:
        """``[B, 3, H, W]``, ``[B, L]`` -> ``[B, L, D]`` decoder predictions for every token."""
        keep_idx, _, restore_idx = mask_to_indices(mask)
        latent, feats = self.encoder.forward_visible(images, keep_idx, self.decoder.required_blocks)
        return self.decoder(latent, restore_idx, feats)

    def loss(self, images: Tensor, mask: Tensor) -> dict[str, Tensor]:
        pred = self.predict_tokens(images, mask)  # [B, L, D]
        target = self.target(images, self.encoder)  # [B, L, D]
        loss = masked_mse(self.target.normalize_prediction(pred), target, mask)
        return {"loss_rec": loss, "stat_mask_ratio": mask.float().mean().detach()}

    @torch.no_grad()
    def reconstruct(self, images: Tensor, mask: Tensor) -> dict[str, Tensor]:
        pred = self.predict_tokens(images, mask)
        out = {"mask": mask}
        if isinstance(self.target, PixelTargetProtocol):  # a feature target has no picture
            out["reconstruction"] = self.encoder.unpatchify(self.target.to_pixels(pred, images))
        return out
