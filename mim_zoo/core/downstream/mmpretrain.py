"""ImageNet backbones for mmpretrain, initialised from a mim_zoo pretraining checkpoint.

``import mim_zoo.core.downstream.mmpretrain`` (the ``custom_imports`` of the configs in ``configs/benchmarks/imagenet``)
registers, in mmpretrain's ``MODELS``:

* :class:`MIMVisionTransformer`: mmpretrain's own ``VisionTransformer`` (so mmpretrain's fine-tune/linear recipes,
  its ``get_layer_depth`` and ``LearningRateDecayOptimWrapperConstructor`` apply unchanged) whose ``init_weights``
  loads a timm-layout encoder through :mod:`mim_zoo.core.checkpoints.layouts` and resizes ``pos_embed`` to ``img_size``.
* :class:`MIMMixMIMTransformer`: mmpretrain's ``MixMIMTransformer`` loading MixMAE's encoder (already in that layout),
  with ``frozen_stages`` for the linear probe (mmpretrain's ``VisionTransformer`` semantics).

Both refuse to start from a random encoder (:mod:`mim_zoo.core.downstream.loading`).
"""

from __future__ import annotations

from mmpretrain.models.backbones import MixMIMTransformer, VisionTransformer
from mmpretrain.registry import MODELS
from torch import nn

from ..checkpoints.layouts import Converted, identity, timm_vit_to_openmmlab
from ..checkpoints.read import PretrainedEncoder
from .loading import PretrainedBackboneMixin, pretrained_grid, resize_if_needed
from .pos_embed import resize_pos_embed, square_grid


@MODELS.register_module()
class MIMVisionTransformer(PretrainedBackboneMixin, VisionTransformer):
    """mmpretrain ``VisionTransformer`` initialised from a mim_zoo ViT checkpoint.

    Args:
        mim_checkpoint: the pretraining checkpoint (``work_dirs/<cfg>/epoch_N.pth``); required at ``init_weights``.
        truncate_pretrained: keep only the first ``num_layers`` pretrained blocks (BootMAE's linear probe reads
            block 10 of 12); otherwise a depth mismatch is an error.
        *args, **kwargs: ``VisionTransformer``'s (``arch``, ``img_size``, ``out_type``, ``final_norm``, ...).
    """

    accepted_layouts = ("timm",)
    new_keys = (r"ln2\.(weight|bias)",)  # the fc_norm of out_type='avg_featmap' (MAE fine-tune), LN 1/0

    def __init__(self, *args, mim_checkpoint: str | None = None, truncate_pretrained: bool = False,
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.mim_checkpoint = mim_checkpoint
        self.truncate_pretrained = truncate_pretrained

    def init_weights(self) -> None:
        super().init_weights()
        self.load_pretraining(self.mim_checkpoint)

    def convert_pretrained(self, pretrained: PretrainedEncoder) -> tuple[Converted, dict[str, tuple]]:
        depth = self.num_layers if self.truncate_pretrained else None
        converted = timm_vit_to_openmmlab(pretrained.state_dict, final_norm=self.final_norm, depth=depth)
        resized: dict[str, tuple] = {}
        src = pretrained_grid(pretrained)
        resize_if_needed(converted.state_dict, "pos_embed", self.pos_embed,
                         lambda pos: resize_pos_embed(pos, src, self.patch_resolution, self.num_extra_tokens),
                         resized)
        return converted, resized


@MODELS.register_module()
class MIMMixMIMTransformer(PretrainedBackboneMixin, MixMIMTransformer):
    """mmpretrain ``MixMIMTransformer`` initialised from a mim_zoo MixMAE checkpoint (same layout).

    The fixed sin-cos ``absolute_pos_embed`` is resized when ``img_size`` differs from pretraining (MixMIM's
    384-px fine-tune, Sense-X/MixMIM ``models_mixmim_ft.py``); the window sizes must match the pretrained ones.
    The forward is ``MixMIMTransformer``'s: the average of the final-normed output tokens, ``[B, C]``.

    Args:
        mim_checkpoint: the pretraining checkpoint; required at ``init_weights``.
        frozen_stages: freeze the patch embedding and the first ``frozen_stages`` stages (with their patch
            merging), and the final norm when all are frozen: no gradient, kept in eval mode with the dropout after
            the positions (so no drop path or dropout). ``MixMIMTransformer`` has no such option; this gives it
            ``VisionTransformer``'s (mmpretrain ``_freeze_stages``), for the linear probe.
        *args, **kwargs: ``MixMIMTransformer``'s.
    """

    accepted_layouts = ("mmpretrain",)

    def __init__(self, *args, mim_checkpoint: str | None = None, frozen_stages: int = 0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not 0 <= frozen_stages <= self.num_layers:
            raise ValueError(f"frozen_stages must be in [0, {self.num_layers}] (the number of stages), "
                             f"got {frozen_stages}")
        self.mim_checkpoint = mim_checkpoint
        self.frozen_stages = frozen_stages
        for param in self._frozen_modules().parameters():
            param.requires_grad = False

    def _frozen_modules(self) -> nn.ModuleList:
        if not self.frozen_stages:
            return nn.ModuleList()
        frozen = [self.patch_embed, self.drop_after_pos, *self.layers[:self.frozen_stages]]
        if self.frozen_stages == self.num_layers:
            frozen.append(self.norm)
        return nn.ModuleList(frozen)

    def train(self, mode: bool = True) -> MIMMixMIMTransformer:
        super().train(mode)
        self._frozen_modules().eval()
        return self

    def init_weights(self) -> None:
        super().init_weights()
        self.load_pretraining(self.mim_checkpoint)

    def convert_pretrained(self, pretrained: PretrainedEncoder) -> tuple[Converted, dict[str, tuple]]:
        converted = identity(pretrained.state_dict)
        resized: dict[str, tuple] = {}
        pos = converted.state_dict.get("absolute_pos_embed")
        if pos is not None:
            src = square_grid(pos.shape[1])
            resize_if_needed(converted.state_dict, "absolute_pos_embed", self.absolute_pos_embed,
                             lambda p: resize_pos_embed(p, src, self.patch_resolution, 0), resized)
        return converted, resized
