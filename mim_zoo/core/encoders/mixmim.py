"""MixMIM's hierarchical encoder (Swin with large unshifted windows) as a mim_zoo encoder adapter.

MixMAE: Mixed and Masked Autoencoder for Efficient Pretraining of Hierarchical Vision Transformers (Liu et al.,
CVPR 2023, arXiv:2205.13137). Official code: https://github.com/Sense-X/MixMIM (read at 2b2f5a9).

The canonical implementation is mmpretrain's fine-tune backbone ``MixMIMTransformer`` (mmpretrain 1.2.0,
``mmpretrain/models/backbones/mixmim.py``; an installed dependency), held in ``self.mixmim`` under its own parameter
names, as :class:`mim_zoo.core.encoders.ViTEncoder` holds a timm ViT. timm is not the canonical here: its
``SwinTransformer`` always alternates shifted windows and has neither absolute position embeddings nor an attention
mask input, so it cannot express this encoder. :meth:`MixMIMEncoder.export_state_dict` is therefore a plain
mmpretrain state dict that ``MixMIMTransformer`` loads with no missing key (fine-tuning, mmseg/mmdet backbones).

Architecture (Sense-X/MixMIM@2b2f5a9 ``models_mixmim.py:MixMIM``, ``mixmim_base``/``mixmim_large``):

* 4x4 patch embedding (conv + LN), a **fixed** 2-D sin-cos absolute position embedding at the stage-1 grid
  (MAE layout, ``util/pos_embed.py``; not trained), 4 stages of depths [2, 2, 18, 2] joined by PatchMerging;
* window attention with Swin's relative position bias, windows [14, 14, 14, 7], **never shifted**; a window at
  least as large as its stage grid becomes global attention (``MixMIMBlock.__init__``);
* ``WindowAttention.forward(x, mask)``: with a 0/1 source label per token, a token attends only to tokens of
  the same source image (logits of other-source pairs minus 1e30, or 65500 for a float16 mask). mmpretrain's
  ``MixMIMWindowAttention`` and ``MixMIMBlock`` implement the same mask (a label ``[1, N, 1]`` shared by the
  batch). The adapter drives mmpretrain's blocks itself (:func:`.window_attention.mixmim_block`): the same
  modules and parameters, the same function, with the relative-position bias and the same-source mask folded into
  one additive bias for a fused attention kernel, tokens partitioned into windows once per stage, and blocks
  checkpointed with ``use_reentrant=False``. ``MixMIMTransformer.forward`` itself is untouched, so exported
  weights behave in mmpretrain exactly as they were trained (within float rounding).
* init (``MixMIM.initialize_weights``): Xavier-uniform Linear weights (qkv as one matrix), zero biases, LN 1/0,
  relative-position tables trunc-normal(0.02), the patch-embedding conv left at PyTorch's default: the MixMAE
  algorithm's, registered as ``ENCODER_INITS["mixmim"]`` by :mod:`mim_zoo.core.algorithms.mixmae` and applied by
  name (``init``), so this adapter imports no algorithm.

Written anew; no code is copied from either repository.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from ..registry import ENCODER_INITS, MODELS, InvalidValueError, registered_names
from ..tokens import patchify, sincos_pos_embed_2d, unpatchify
from .window_attention import from_windows, mixmim_block, same_source_bias, to_windows

GridSize = tuple[int, int]


def upsample_mask(mask: Tensor, grid_size: GridSize, size: GridSize) -> Tensor:
    """Nearest-neighbour upsampling of a token mask from ``grid_size`` to ``size`` (official ``random_masking``).

    Args:
        mask: ``[L]`` or ``[B, L]`` on ``grid_size`` in raster order (bool or 0/1).
        grid_size: ``(h, w)`` of ``mask``.
        size: ``(H, W)``, integer multiples of ``(h, w)``.

    Returns:
        ``[H * W]`` or ``[B, H * W]``, same dtype as ``mask``: every token of ``size`` takes the value of the coarse
        token it lies in.
    """
    lead = mask.shape[:-1]
    grid = mask.reshape(-1, 1, *grid_size).float()  # [B', 1, h, w]
    up = F.interpolate(grid, size=tuple(size), mode="nearest")  # [B', 1, H, W]
    return up.reshape(*lead, size[0] * size[1]).to(mask.dtype)


def _mixmim_transformer() -> type:
    """mmpretrain's ``MixMIMTransformer``, imported when an encoder is built: importing mmpretrain's models imports
    mmdet and mmcv's compiled ops, which ``import mim_zoo`` and every lookup in the registry should not pay for."""
    from mmpretrain.models.backbones import MixMIMTransformer

    return MixMIMTransformer


def _arch_settings(arch: str | dict) -> dict:
    """mmpretrain's ``MixMIMTransformer.arch_zoo`` entry (or the given dict), checked."""
    if isinstance(arch, str):
        arch_zoo = _mixmim_transformer().arch_zoo
        if arch.lower() not in arch_zoo:
            raise ValueError(f"unknown MixMIM arch {arch!r}; choose from base, large, huge or pass a dict "
                             "{embed_dims, depths, num_heads}")
        return arch_zoo[arch.lower()]
    missing = {"embed_dims", "depths", "num_heads"} - set(arch)
    if missing:
        raise ValueError(f"a custom MixMIM arch needs embed_dims, depths and num_heads; missing {sorted(missing)}")
    return arch


@MODELS.register_module()
class MixMIMEncoder(BaseModule):
    """A Swin with large unshifted windows (MixMIM "Swin-B/W14") with the entry points MixMAE needs.

    Args:
        arch: ``"base"`` (embed 128, heads [4, 8, 16, 32]), ``"large"`` (192, [6, 12, 24, 48]), ``"huge"`` or a
            dict ``{embed_dims, depths, num_heads}`` (tiny test models); mmpretrain's ``arch_zoo``.
        img_size: input resolution (square).
        patch_size: pixels per side of a stage-1 token (MixMIM: 4).
        window_size: attention window per stage (MixMIM W14: [14, 14, 14, 7]).
        drop_path_rate: stochastic depth (official pretraining: 0).
        grad_checkpointing: recompute block activations in backward to save memory.
        init: a registered encoder init (``ENCODER_INITS``) for mmpretrain's ``MixMIMTransformer``; ``"mixmim"``
            is the official one (registered by :mod:`mim_zoo.core.algorithms.mixmae`).
    """

    canonical = "mmpretrain"  # the exported state dict loads into mmpretrain's MixMIMTransformer
    num_prefix_tokens = 0  # no class token: the output is the L patch tokens

    def __init__(self, arch: str | dict = "base", img_size: int = 224, patch_size: int = 4,
                 window_size: Sequence[int] = (14, 14, 14, 7), drop_path_rate: float = 0.0,
                 grad_checkpointing: bool = False, init: str = "mixmim") -> None:
        super().__init__()
        if ENCODER_INITS.get(init) is None:
            raise ValueError(f"init must be a registered encoder init "
                             f"({', '.join(map(repr, registered_names(ENCODER_INITS)))}), got {init!r}")
        depths = _arch_settings(arch)["depths"]
        if len(window_size) != len(depths):
            raise ValueError(f"window_size needs one entry per stage ({len(depths)}), got {list(window_size)}")
        self.mixmim_kwargs = dict(arch=arch, img_size=img_size, patch_size=patch_size,
                                  window_size=list(window_size), drop_path_rate=drop_path_rate)
        self.mixmim = _mixmim_transformer()(**self.mixmim_kwargs)
        self.grad_checkpointing = grad_checkpointing
        self.init_scheme = init
        self._check_geometry(img_size, list(window_size))
        self.init_weights()

    def _check_geometry(self, img_size: int, window_size: list[int]) -> None:
        if img_size % self.patch_size:
            raise InvalidValueError(
                f"{img_size} is not a multiple of the encoder's output stride {self.patch_size} "
                f"(patch_size x 2^{self.num_stages - 1}); MixMIM-B uses 224 = 7 x 32", "img_size"
            )
        for stage, ((h, w), win) in enumerate(zip(self.stage_grids, window_size, strict=True)):
            if min(h, w) > win and (h % win or w % win):
                raise ValueError(
                    f"stage {stage} has a {h}x{w} token grid that windows of {win} do not tile; choose window sizes "
                    "that divide the stage grids (MixMIM-B at 224: grids 56/28/14/7, windows 14/14/14/7)"
                )

    def init_weights(self) -> None:
        """The ``init`` scheme (the official ``MixMIM.initialize_weights`` by default) and the fixed sin-cos
        positions; run once by the constructor.

        Marks the module initialised so that mmengine's ``Runner`` does not re-initialise it through
        ``BaseModule.init_weights`` (which would reach mmpretrain's own ``init_weights`` methods).
        """
        ENCODER_INITS.get(self.init_scheme)(self.mixmim)
        pos = sincos_pos_embed_2d(self.mixmim.embed_dims, self.stage_grids[0], num_prefix_tokens=0)
        self.mixmim.absolute_pos_embed.data.copy_(pos)  # fixed: requires_grad=False in MixMIMTransformer
        self._is_init = True

    # --- geometry --------------------------------------------------------------------------------------------
    @property
    def num_stages(self) -> int:
        return len(self.mixmim.layers)

    @property
    def stage_grids(self) -> list[GridSize]:
        """Token grid ``(H, W)`` of each stage (56/28/14/7 for MixMIM-B at 224)."""
        return [tuple(layer.input_resolution) for layer in self.mixmim.layers]

    @property
    def grid_size(self) -> GridSize:
        """The output token grid (7x7 at 224): the grid masks and targets live on."""
        return self.stage_grids[-1]

    @property
    def num_patches(self) -> int:
        return self.grid_size[0] * self.grid_size[1]

    @property
    def patch_size(self) -> int:
        """Pixels per side of one output token, the output stride (32 for MixMIM): the target patch size."""
        return self.mixmim.patch_embed.projection.kernel_size[0] * 2 ** (self.num_stages - 1)

    @property
    def embed_dim(self) -> int:
        """Width of the output tokens (1024 for MixMIM-B, 1536 for L)."""
        return self.mixmim.num_features

    def patchify(self, imgs: Tensor) -> Tensor:
        """``[B, 3, H, W] -> [B, L, p*p*3]`` at the output stride (MAE order)."""
        return patchify(imgs, self.patch_size)

    def unpatchify(self, x: Tensor) -> Tensor:
        """``[B, L, p*p*3] -> [B, 3, H, W]``."""
        return unpatchify(x, self.patch_size, self.grid_size)

    def stage_masks(self, mask: Tensor) -> list[Tensor]:
        """A token mask on the output grid, nearest-upsampled to every stage: ``[..., L] -> [[..., L_s]]``."""
        return [upsample_mask(mask, self.grid_size, grid) for grid in self.stage_grids]

    # --- forward paths ---------------------------------------------------------------------------------------
    def check_input(self, imgs: Tensor) -> None:
        expected = tuple(s * self.patch_size for s in self.grid_size)
        if imgs.dim() != 4 or tuple(imgs.shape[-2:]) != expected:
            raise ValueError(
                f"this MixMIM encoder was built for {expected[0]}x{expected[1]} images, got a batch of shape "
                f"{tuple(imgs.shape)}; set the data pipeline's crop size (and the encoder's img_size) to match"
            )

    def embed(self, imgs: Tensor) -> Tensor:
        """Stage-1 patch tokens, conv + LN, *without* positions: ``[B, 3, H, W] -> [B, L_1, C_1]``."""
        self.check_input(imgs)
        return self.mixmim.patch_embed(imgs)[0]

    def encode(self, tokens: Tensor, source_masks: Sequence[Tensor] | None = None) -> Tensor:
        """Positions, the four stages and the final norm (official ``forward_encoder`` after the mixing step).

        mmpretrain's blocks, driven here on windowed tokens with fused attention (:mod:`.window_attention`): each
        stage partitions its tokens into windows once and builds the same-source bias once.

        Args:
            tokens: ``[B, L_1, C_1]`` from :meth:`embed` (possibly mixed).
            source_masks: per stage a ``[L_s]`` 0/1 source label shared by the batch (:meth:`stage_masks`); a
                token attends only to tokens with the same label. ``None``: plain window attention.

        Returns:
            ``[B, L, D]`` output tokens after the final norm (``L`` = 49, ``D`` = 1024 for MixMIM-B at 224).
        """
        return self._run_stages(tokens, source_masks)[0]

    def forward_stages(self, imgs: Tensor) -> tuple[Tensor, list[Tensor]]:
        """The plain (unmixed) forward, keeping every stage's output: ``[B, 3, H, W] ->`` the final-normed
        ``[B, L, D]`` and, per stage, its blocks' output before the stage's patch merging ``[B, L_s, C_s]``."""
        return self._run_stages(self.embed(imgs), None)

    def _run_stages(self, tokens: Tensor, source_masks: Sequence[Tensor] | None) -> tuple[Tensor, list[Tensor]]:
        x = self.mixmim.drop_after_pos(tokens + self.mixmim.absolute_pos_embed)
        stages = []
        for stage, layer in enumerate(self.mixmim.layers):
            grid, window = tuple(layer.input_resolution), layer.blocks[0].window_size
            x = to_windows(x, grid, window)  # [B, nW, N, C]
            source_bias = None
            if source_masks is not None:  # [nW, 1, N, N], shared by the batch and the stage's blocks
                labels = to_windows(source_masks[stage].reshape(1, -1, 1), grid, window)[0, ..., 0]  # [nW, N]
                source_bias = same_source_bias(labels)
            for block in layer.blocks:
                if self.grad_checkpointing and self.training and torch.is_grad_enabled():
                    x = checkpoint(mixmim_block, block, x, source_bias, use_reentrant=False)
                else:
                    x = mixmim_block(block, x, source_bias)
            x = from_windows(x, grid, window)  # [B, L_s, C]
            stages.append(x)
            if layer.downsample is not None:
                x = layer.downsample(x, layer.input_resolution)[0]
        return self.mixmim.norm(x), stages

    def forward(self, imgs: Tensor) -> Tensor:
        """``[B, 3, H, W] -> [B, L, D]``: plain (unmixed) output tokens after the final norm, no pooling."""
        return self.encode(self.embed(imgs))

    # --- export ------------------------------------------------------------------------------------------------
    def export_state_dict(self) -> dict[str, Tensor]:
        """A plain mmpretrain ``MixMIMTransformer`` state dict (``absolute_pos_embed`` included): loads into
        :meth:`build_canonical` with no missing or unexpected key. Under an mmpretrain classifier, prefix the keys
        with ``backbone.``."""
        return {k: v.detach().clone() for k, v in self.mixmim.state_dict().items()}

    def build_canonical(self) -> nn.Module:
        """A fresh mmpretrain ``MixMIMTransformer`` of this architecture (its forward pools to ``[B, D]``)."""
        return _mixmim_transformer()(**self.mixmim_kwargs)
