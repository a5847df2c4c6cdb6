"""MixMAE's Swin encoder as a 4-level feature pyramid for UperNet (mmseg) and Mask R-CNN + FPN (mmdet).

MixMIM/MixMAE (Liu et al., CVPR 2023, arXiv:2205.13137; Sense-X/MixMIM@2b2f5a9) pretrains a Swin-B with windows
``[14, 14, 14, 7]`` and no shifted windows; its downstream detection/segmentation code was never released
(METHODS.md 4.1). :class:`MIMMixMIMPyramid` is mmpretrain's ``MixMIMTransformer`` (same parameters and names, so
MixMAE's canonical state dict loads as is) with what dense prediction needs, following mmdet's Swin backbone
(``mmdet/models/backbones/swin.py``, 3.3.0) and Swin's detection/segmentation repos:

* inputs of any size divisible by the patch size: feature maps are zero-padded to a multiple of the window before
  partitioning and cropped after (as mmdet's ``ShiftWindowMSA`` pads; no shift, so no attention mask);
* the fixed sin-cos ``absolute_pos_embed`` (built for the pretraining size) is bicubically interpolated to the
  token grid of each input;
* the windows stay those of pretraining (documented default; the relative position tables are used unchanged);
* one LayerNorm per output level: the pretrained final ``norm`` for the last stage (as mmdet's Swin converter maps
  ``norm`` to ``norm3``), new ones (``out_norms.0-2``) for the others.

Registered in mmseg's and mmdet's ``MODELS`` by :mod:`mim_zoo.core.downstream.mmseg` /
:mod:`mim_zoo.core.downstream.mmdet`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from mmcv.cnn import build_norm_layer
from mmpretrain.models.backbones import MixMIMTransformer
from torch import Tensor, nn

from ..checkpoints.layouts import Converted, identity
from ..checkpoints.read import PretrainedEncoder
from .loading import PretrainedBackboneMixin, is_pretrained_init
from .pos_embed import resize_pos_embed


def window_block_forward(block: nn.Module, x: Tensor, hw: tuple[int, int]) -> Tensor:
    """One mmpretrain ``MixMIMBlock`` on a ``[B, H*W, C]`` map of any size (zero-padded windows, no mask).

    Same computation as ``MixMIMBlock.forward`` when ``H`` and ``W`` are multiples of the window.
    """
    height, width = hw
    batch, _, channels = x.shape
    window = block.window_size
    shortcut = x
    x = block.ln1(x).view(batch, height, width, channels)
    pad_h, pad_w = (-height) % window, (-width) % window
    x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))  # [B, Hp, Wp, C]
    windows = block.window_partition(x, window).view(-1, window * window, channels)  # [B*nW, w*w, C]
    windows = block.attn(windows, mask=None).view(-1, window, window, channels)
    x = block.window_reverse(windows, height + pad_h, width + pad_w, window)[:, :height, :width]
    x = shortcut + block.drop_path(x.reshape(batch, height * width, channels))
    return block.ffn(block.norm2(x), identity=x)  # the FFN adds the residual and its drop path


class MIMMixMIMPyramid(PretrainedBackboneMixin, MixMIMTransformer):
    """MixMIM Swin backbone returning ``[B, C_i, H / 4 / 2^i, W / 4 / 2^i]`` for ``i`` in ``out_indices``.

    Args:
        mim_checkpoint: the pretraining checkpoint, required at ``init_weights`` unless ``init_cfg`` (in
            ``kwargs``) is ``dict(type='Pretrained', checkpoint=FILE[, prefix='backbone.'])`` with an exported encoder
            (``tools/export.py --to mmseg`` / ``--to mmdet``), which loads with the same key checks.
        out_indices: stages to return.
        pretrain_img_size: the resolution of pretraining, which fixes the windows and the position table.
        **kwargs: ``MixMIMTransformer``'s (``arch``, ``window_size``, ``drop_path_rate``, ...).
    """

    accepted_layouts = ("mmpretrain",)
    new_keys = (r"out_norms\.\d+\.(weight|bias)",)

    def __init__(self, mim_checkpoint: str | None = None, out_indices: Sequence[int] = (0, 1, 2, 3),
                 pretrain_img_size: int = 224, norm_cfg: dict | None = None, **kwargs) -> None:
        norm_cfg = norm_cfg or dict(type="LN")
        super().__init__(img_size=pretrain_img_size, norm_cfg=norm_cfg, **kwargs)
        self.mim_checkpoint = mim_checkpoint
        self.out_indices = tuple(out_indices)
        last = self.num_layers - 1
        self.out_norms = nn.ModuleList(
            build_norm_layer(norm_cfg, int(self.embed_dims * 2 ** i))[1] for i in range(last))
        del self.avgpool  # classification pooling, unused here

    def init_weights(self) -> None:
        if self.mim_checkpoint is None and is_pretrained_init(self.init_cfg):  # a tools/export.py --to mmseg/mmdet file
            self.load_exported(self.init_cfg)
            return
        super().init_weights()
        self.load_pretraining(self.mim_checkpoint)

    def convert_pretrained(self, pretrained: PretrainedEncoder) -> tuple[Converted, dict[str, tuple]]:
        return identity(pretrained.state_dict), {}

    def _pos_embed(self, hw: tuple[int, int]) -> Tensor:
        """``[1, H*W, C]``: the pretraining table, interpolated to this input's token grid."""
        return resize_pos_embed(self.absolute_pos_embed, self.patch_resolution, hw, num_prefix_tokens=0)

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        """``[B, 3, H, W]`` -> one ``[B, C_i, h_i, w_i]`` map per ``out_indices``."""
        x, hw = self.patch_embed(x)  # [B, h*w, C]
        x = self.drop_after_pos(x + self._pos_embed(tuple(hw)))
        outs = []
        for i, layer in enumerate(self.layers):
            for block in layer.blocks:
                x = window_block_forward(block, x, hw)
            if i in self.out_indices:
                norm = self.norm if i == self.num_layers - 1 else self.out_norms[i]
                out = norm(x).view(x.shape[0], *hw, -1).permute(0, 3, 1, 2).contiguous()  # [B, C_i, h, w]
                outs.append(out)
            if layer.downsample is not None:
                x, hw = layer.downsample(x, hw)
        return tuple(outs)
