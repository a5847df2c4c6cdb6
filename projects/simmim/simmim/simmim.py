"""SimMIM: a Simple Framework for Masked Image Modeling (Xie et al., CVPR 2022, arXiv:2111.09886).

Official code: https://github.com/microsoft/SimMIM (MIT), ``models/simmim.py`` and ``data/data_simmim.py``. Ported
details, written anew:

* the encoder sees *all* tokens; masked patch embeddings are replaced by one learned mask token before the
  positional embedding is added (``VisionTransformerForSimMIM.forward``): the encoder's public entry point
  ``forward_masked(images, mask, mask_token)`` (``PlainEncoderProtocol`` in ``mim_zoo.core.contracts``), which runs
  the encoder as its plain forward does (pre-norm, gradient checkpointing);
* a one-layer prediction head maps every token back to its ``p*p*3`` pixels (the official 1x1 conv + PixelShuffle
  is this linear map followed by unpatchify);
* the loss is L1 on raw (normalised-input) pixels of the masked patches, averaged over masked pixels and channels
  (``SimMIM.forward``: ``(loss_recon * mask).sum() / (mask.sum() + 1e-5) / in_chans``);
* masks are drawn in units of ``mask_patch_size`` pixels (32 for ViT-B/16, i.e. 2x2 tokens) at ratio 0.6
  (``MaskGenerator``): :class:`UnitMasking`, registered as a mask generator by this project.

This file is the worked example of README "Add your own MIM variant": it touches nothing inside ``mim_zoo`` and
registers into mim_zoo's registries when a config names it in ``custom_imports``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mim_zoo.core.algorithms.base import BaseMIM
from mim_zoo.core.contracts import PlainEncoderProtocol
from mim_zoo.core.masking import MaskGenerator
from mim_zoo.registry import MASK_GENERATORS, MODELS


@MASK_GENERATORS.register_module()
class UnitMasking(MaskGenerator):
    """Random masking of ``unit x unit`` token squares (SimMIM ``data_simmim.py:MaskGenerator``).

    Exactly ``ceil(units * ratio)`` units are masked per sample, as in the official generator.
    """

    def __init__(self, ratio: float = 0.6, unit: int = 2) -> None:
        if not 0 < ratio < 1:
            raise ValueError(f"mask ratio must lie strictly between 0 and 1, got {ratio}")
        self.ratio, self.unit = ratio, unit

    def _units(self, grid_size: tuple[int, int]) -> tuple[int, int]:
        if grid_size[0] % self.unit or grid_size[1] % self.unit:
            raise ValueError(f"a {grid_size[0]}x{grid_size[1]} token grid is not divisible into "
                             f"{self.unit}x{self.unit} mask units; change `unit` or the image size")
        return grid_size[0] // self.unit, grid_size[1] // self.unit

    def num_masked(self, grid_size: tuple[int, int]) -> int:
        h, w = self._units(grid_size)
        return int(torch.tensor(h * w * self.ratio).ceil()) * self.unit**2

    def generate(self, batch_size: int, grid_size: tuple[int, int], generator: torch.Generator | None,
                 **context: object) -> Tensor:
        h, w = self._units(grid_size)
        count = self.num_masked(grid_size) // self.unit**2
        ranks = torch.rand(batch_size, h * w, generator=generator).argsort(1).argsort(1)
        units = (ranks < count).view(batch_size, h, w)
        tokens = units.repeat_interleave(self.unit, 1).repeat_interleave(self.unit, 2)  # [B, H, W]
        return tokens.flatten(1)


@MODELS.register_module()
class SimMIM(BaseMIM):
    """Mask tokens into the encoder, a linear pixel head, L1 on the masked pixels.

    Args:
        encoder: ``ViTEncoder`` (or config).
        masking: mask generator; SimMIM ViT-B: ``UnitMasking(ratio=0.6, unit=2)``.
        data_preprocessor, init_cfg: mmengine's.
    """

    encoder_protocol = PlainEncoderProtocol  # forward_masked: every token, the masked ones as the mask token

    def __init__(self, encoder: nn.Module | dict, masking: dict | MaskGenerator | None = None,
                 data_preprocessor: dict | None = None, init_cfg: dict | None = None) -> None:
        super().__init__(encoder, masking or dict(type="UnitMasking"), data_preprocessor, init_cfg)
        dim, patch = self.encoder.embed_dim, self.encoder.patch_size
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        nn.init.trunc_normal_(self.mask_token, std=0.02)  # official: trunc_normal_(self.mask_token, std=.02)
        self.head = nn.Linear(dim, patch * patch * 3)

    def encode_with_mask_tokens(self, images: Tensor, mask: Tensor) -> Tensor:
        """``[B, 3, H, W], [B, L] -> [B, L, D]``: all tokens, masked ones replaced before positions are added."""
        latent = self.encoder.forward_masked(images, mask, self.mask_token)  # [B, 1 + L, D]
        return latent[:, self.encoder.num_prefix_tokens :]

    def loss(self, images: Tensor, mask: Tensor) -> dict[str, Tensor]:
        pred = self.head(self.encode_with_mask_tokens(images, mask))  # [B, L, p*p*3]
        target = self.encoder.patchify(images)  # raw (normalised-input) pixels
        l1 = F.l1_loss(pred, target, reduction="none").mean(dim=-1)  # [B, L], mean over pixels and channels
        loss = (l1 * mask).sum() / (mask.sum() + 1e-5)
        return {"loss_rec": loss, "stat_mask_ratio": mask.float().mean().detach()}

    @torch.no_grad()
    def reconstruct(self, images: Tensor, mask: Tensor) -> dict[str, Tensor]:
        pred = self.head(self.encode_with_mask_tokens(images, mask))
        return {"mask": mask, "reconstruction": self.encoder.unpatchify(pred)}
