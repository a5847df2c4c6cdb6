"""ViTDet: a plain ViT backbone and its simple feature pyramid for Mask R-CNN (Li et al., ECCV 2022, arXiv:2203.16527).

Official code: detectron2 ``modeling/backbone/vit.py`` (``ViT``, ``SimpleFeaturePyramid``, ``get_vit_lr_decay_rate``)
and ``projects/ViTDet/configs/COCO/mask_rcnn_vitdet_b_100ep.py``; the OpenMMLab port is open-mmlab/mmdetection
``projects/ViTDet`` (not in the mmdet wheel), read at ``vitdet/vit.py``@f32af44,
``vitdet/layer_decay_optimizer_constructor.py``@c43dbf6 and ``configs/vitdet_mask-rcnn_vit-b-mae_lsj-100e.py`` +
``configs/lsj-100e_coco-instance.py``@394f758 (Apache-2.0). No code is copied: this file is written anew on timm's
public SAM/ViTDet block. Ported details:

* Blocks: ``timm.models.vision_transformer_sam.Block`` (timm's implementation of the ViTDet/SAM block): windowed
  attention (window 14, zero-padded) in all blocks but the global ones (2, 5, 8, 11 of ViT-B), decomposed relative
  position embeddings ``rel_pos_h/w`` (zero-initialised, new at fine-tuning), LayerNorm eps 1e-6, drop path 0.1.
  Parameter names equal timm's ViT, so a MIM encoder loads by name.
* Absolute positions: the pretrained ``pos_embed`` (with its class-token row, at the pretraining grid) is kept as
  the parameter and bicubically interpolated to the token grid on every forward (``get_abs_pos``).
* No class token, no final norm; the last block's ``[B, D, H/16, W/16]`` map is the only output.
* :class:`SimpleFeaturePyramid`: 4x (deconv, LN, GELU, deconv), 2x (deconv), 1x, 1/2x (max-pool) from that map,
  then 1x1 + 3x3 convs with channel LayerNorm and no bias, and a P6 by stride-2 subsampling of P5
  (``LastLevelMaxPool``); 5 levels at strides ``patch / 4 * 2^k``.
* Initialisation: trunc-normal(0.02) linear weights, zero biases, LN 1/0, trunc-normal(0.02) ``pos_embed``; then
  the pretrained weights are loaded (:mod:`mim_zoo.core.downstream.loading`).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from timm.layers import PatchEmbed
from timm.models.vision_transformer_sam import Block
from torch import Tensor, nn

from ..checkpoints.layouts import Converted, timm_vit_to_vitdet
from ..checkpoints.read import PretrainedEncoder
from .layer_decay import vit_layer_depth
from .loading import PretrainedBackboneMixin
from .pos_embed import resize_pos_embed, square_grid


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of a ``[B, C, H, W]`` map (detectron2 ``layers.LayerNorm``, eps 1e-6).

    A subclass of ``nn.LayerNorm`` so that optimizer constructors treat it as a norm layer. The output is made
    contiguous: a permuted (channels-last) view would reach mmcv's compiled RoIAlign, whose kernels (CPU and CUDA,
    mmcv 2.1.0 ``roi_align_{cpu,cuda}``) read ``data_ptr`` as contiguous ``[B, C, H, W]`` and pool wrong values.
    """

    def __init__(self, num_channels: int, eps: float = 1e-6) -> None:
        super().__init__(num_channels, eps=eps)

    def forward(self, x: Tensor) -> Tensor:
        x = F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2).contiguous()


class ViTDetBackbone(PretrainedBackboneMixin, BaseModule):
    """ViTDet's plain ViT (module docstring).

    Args:
        img_size: training input size (fixes the global blocks' relative-position tables: ``img_size / patch``).
        patch_size, embed_dim, depth, num_heads, mlp_ratio, qkv_bias: the ViT (ViT-B/16: 16, 768, 12, 12, 4, True).
        drop_path_rate: stochastic depth, linear over blocks (0.1 for B).
        window_size: side of the attention windows (14).
        global_blocks: blocks with global attention (ViT-B: 2, 5, 8, 11); the others are windowed.
        use_rel_pos: decomposed relative position embeddings in every block.
        pretrain_img_size: resolution of pretraining (the stored ``pos_embed`` grid).
        mim_checkpoint: the pretraining checkpoint; required at ``init_weights``.
        init_cfg: mmengine's (unused; initialisation is described above).
    """

    accepted_layouts = ("timm",)
    new_keys = (r"blocks\.\d+\.attn\.rel_pos_[hw]",)

    def __init__(self, img_size: int = 1024, patch_size: int = 16, embed_dim: int = 768, depth: int = 12,
                 num_heads: int = 12, mlp_ratio: float = 4.0, qkv_bias: bool = True, drop_path_rate: float = 0.1,
                 window_size: int = 14, global_blocks: Sequence[int] = (2, 5, 8, 11), use_rel_pos: bool = True,
                 pretrain_img_size: int = 224, mim_checkpoint: str | None = None,
                 init_cfg: dict | None = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.depth, self.patch_size, self.embed_dim = depth, patch_size, embed_dim
        self.mim_checkpoint = mim_checkpoint
        self.patch_embed = PatchEmbed(img_size, patch_size, 3, embed_dim, output_fmt="NHWC", strict_img_size=False)
        self.pretrain_grid = (pretrain_img_size // patch_size,) * 2
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.pretrain_grid[0] * self.pretrain_grid[1], embed_dim))
        grid = (img_size // patch_size,) * 2
        rates = torch.linspace(0, drop_path_rate, depth).tolist()
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio, qkv_bias=qkv_bias, drop_path=rates[i],
                  norm_layer=partial(nn.LayerNorm, eps=1e-6), use_rel_pos=use_rel_pos,
                  window_size=0 if i in global_blocks else window_size, input_size=grid)
            for i in range(depth)
        )
        self._init_vitdet()

    def _init_vitdet(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)

    def init_weights(self) -> None:
        self.load_pretraining(self.mim_checkpoint)

    def convert_pretrained(self, pretrained: PretrainedEncoder) -> tuple[Converted, dict[str, tuple]]:
        converted = timm_vit_to_vitdet(pretrained.state_dict)
        resized: dict[str, tuple] = {}
        pos = converted.state_dict["pos_embed"]
        if pos.shape != self.pos_embed.shape:  # pretrained at another size than pretrain_img_size says
            converted.state_dict["pos_embed"] = resize_pos_embed(pos, square_grid(pos.shape[1] - 1),
                                                                 self.pretrain_grid, 1)
            resized["pos_embed"] = (pos.shape, self.pos_embed.shape)
        return converted, resized

    def abs_pos(self, hw: tuple[int, int]) -> Tensor:
        """``[1, H, W, D]``: the stored table without its class-token row, interpolated to the token grid ``hw``."""
        pos = resize_pos_embed(self.pos_embed, self.pretrain_grid, hw, num_prefix_tokens=1)[:, 1:]
        return pos.reshape(1, *hw, self.embed_dim)

    def forward(self, x: Tensor) -> tuple[Tensor]:
        """``[B, 3, H, W]`` -> ``([B, D, H / p, W / p],)``."""
        x = self.patch_embed(x)  # [B, h, w, D]
        x = x + self.abs_pos(tuple(x.shape[1:3]))
        for block in self.blocks:
            x = block(x)
        return (x.permute(0, 3, 1, 2).contiguous(),)

    def get_layer_depth(self, param_name: str, prefix: str = "") -> tuple[int, int]:
        """detectron2's ``get_vit_lr_decay_rate``: embeddings 0, ``blocks.i`` -> ``i + 1``, after it ``depth + 1``."""
        return vit_layer_depth(param_name, self.depth, prefix, blocks_attr="blocks", stem=("pos_embed", "patch_embed"))


class SimpleFeaturePyramid(BaseModule):
    """ViTDet's simple feature pyramid from one ``[B, C, H, W]`` map (module docstring).

    Args:
        in_channels: channels of the backbone map (768 for ViT-B).
        out_channels: channels of every pyramid level (256).
        scales: resampling factors of the map, from fine to coarse (4, 2, 1, 0.5).
        num_outs: levels returned; the ones beyond ``scales`` come from stride-2 subsampling of the last.
    """

    def __init__(self, in_channels: int = 768, out_channels: int = 256, scales: Sequence[float] = (4.0, 2.0, 1.0, 0.5),
                 num_outs: int = 5, init_cfg: dict | None = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if num_outs < len(scales):
            raise ValueError(f"num_outs={num_outs} is fewer than the {len(scales)} scales")
        self.num_outs = num_outs
        self.stages = nn.ModuleList()
        for scale in scales:
            resample, dim = self._resample(in_channels, scale)
            self.stages.append(nn.Sequential(
                resample,
                nn.Conv2d(dim, out_channels, 1, bias=False), LayerNorm2d(out_channels),
                nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False), LayerNorm2d(out_channels),
            ))

    @staticmethod
    def _resample(dim: int, scale: float) -> tuple[nn.Module, int]:
        if scale == 4.0:
            return nn.Sequential(nn.ConvTranspose2d(dim, dim // 2, 2, stride=2), LayerNorm2d(dim // 2), nn.GELU(),
                                 nn.ConvTranspose2d(dim // 2, dim // 4, 2, stride=2)), dim // 4
        if scale == 2.0:
            return nn.ConvTranspose2d(dim, dim // 2, 2, stride=2), dim // 2
        if scale == 1.0:
            return nn.Identity(), dim
        if scale == 0.5:
            return nn.MaxPool2d(2, stride=2), dim
        raise ValueError(f"SimpleFeaturePyramid supports scales 4, 2, 1 and 0.5, got {scale}")

    def forward(self, inputs: Sequence[Tensor]) -> tuple[Tensor, ...]:
        """``([B, C, H, W],)`` -> ``num_outs`` maps ``[B, out_channels, H * s, W * s]``, fine to coarse."""
        feature = inputs[-1]
        outs = [stage(feature) for stage in self.stages]
        while len(outs) < self.num_outs:
            outs.append(F.max_pool2d(outs[-1], kernel_size=1, stride=2))  # detectron2 LastLevelMaxPool
        return tuple(outs)
