"""ADE20K backbones for mmseg, initialised from a mim_zoo pretraining checkpoint.

``import mim_zoo.core.downstream.mmseg`` (the ``custom_imports`` of ``configs/benchmarks/ade20k``) registers in mmseg:

* ``MODELS``: :class:`MIMBEiT`, mmseg's own ``MAE`` backbone (BEiT blocks with a learned absolute position table;
  mmseg ``models/backbones/mae.py``) loading a timm-layout ViT. This is the MAE/BEiT segmentation recipe
  (mmseg ``configs/mae/mae-base_upernet_8xb2-amp-160k_ade20k-512x512.py``; BEiT ``semantic_segmentation``;
  BootMAE ``Segmentation/configs/bootmae``): per-block relative position bias initialised to zero and layer scale
  ``gamma`` initialised to ``init_values`` (1.0), both new at fine-tuning; ``pos_embed`` resized to 512 px. With
  zero bias and ``init_values=1`` the block computes exactly the pretrained timm block
  (``tests/downstream/test_mmseg.py`` checks the features match). The 4x / 2x / 1x / 0.5x pyramid comes from
  mmseg's ``Feature2Pyramid`` neck (deconvolutions / max-pool on blocks 4, 6, 8, 12).
* ``MODELS``: ``MIMMixMIMPyramid`` (:mod:`mim_zoo.core.downstream.mixmim_pyramid`) for MixMAE's Swin encoder.
* ``OPTIM_WRAPPER_CONSTRUCTORS``: ``BackboneLayerDecayOptimWrapperConstructor``.
"""

from __future__ import annotations

from mmseg.models.backbones import MAE
from mmseg.registry import MODELS, OPTIM_WRAPPER_CONSTRUCTORS
from torch import Tensor

from ..checkpoints.layouts import Converted, timm_vit_to_openmmlab
from ..checkpoints.read import PretrainedEncoder
from .layer_decay import BackboneLayerDecayOptimWrapperConstructor, vit_layer_depth
from .loading import PretrainedBackboneMixin, pretrained_grid, resize_if_needed
from .mixmim_pyramid import MIMMixMIMPyramid
from .pos_embed import resize_pos_embed


@MODELS.register_module()
class MIMBEiT(PretrainedBackboneMixin, MAE):
    """mmseg's MAE/BEiT backbone initialised from a mim_zoo ViT checkpoint.

    Args:
        mim_checkpoint: the pretraining checkpoint (``work_dirs/<cfg>/epoch_N.pth``); required at ``init_weights``.
        **kwargs: mmseg ``MAE``'s (``img_size``, ``embed_dims``, ``num_layers``, ``init_values``, ``out_indices``,
            ``drop_path_rate``, ...). ``pretrained``/``init_cfg`` are refused: they would load without checks.
    """

    accepted_layouts = ("timm",)
    new_keys = (r"layers\.\d+\.gamma_[12]", r"layers\.\d+\.attn\.relative_position_bias_table",
                r"layers\.\d+\.attn\.relative_position_index")

    def __init__(self, mim_checkpoint: str | None = None, **kwargs) -> None:
        if kwargs.get("pretrained") or kwargs.get("init_cfg"):
            raise ValueError("MIMBEiT loads `mim_checkpoint` with key checks; drop `pretrained` / `init_cfg`")
        out_indices = kwargs.pop("out_indices", -1)
        super().__init__(out_indices=out_indices, **kwargs)
        self.mim_checkpoint = mim_checkpoint
        # one output per entry, repeats allowed (a 2-block tiny ViT feeds the 4-level pyramid); mmseg's forward
        # returns each distinct block once, in block order
        self.out_order = list(self.out_indices)
        self.out_indices = sorted(set(self.out_order))

    def init_weights(self) -> None:
        super().init_weights()  # mmseg's init: trunc-normal linears, zero relative bias, gamma = init_values
        self.load_pretraining(self.mim_checkpoint)

    def convert_pretrained(self, pretrained: PretrainedEncoder) -> tuple[Converted, dict[str, tuple]]:
        converted = timm_vit_to_openmmlab(pretrained.state_dict, final_norm=self.final_norm)
        resized: dict[str, tuple] = {}
        src = pretrained_grid(pretrained)
        resize_if_needed(converted.state_dict, "pos_embed", self.pos_embed,
                         lambda pos: resize_pos_embed(pos, src, self.patch_shape, 1), resized)
        return converted, resized

    def forward(self, inputs: Tensor) -> tuple[Tensor, ...]:
        """``[B, 3, H, W]`` -> ``[B, D, H / p, W / p]`` per entry of ``out_indices``."""
        features = dict(zip(self.out_indices, super().forward(inputs), strict=True))
        return tuple(features[i] for i in self.out_order)

    def get_layer_depth(self, param_name: str, prefix: str = "") -> tuple[int, int]:
        """mmseg's ``get_layer_id_for_vit``: stem 0, ``layers.i`` -> ``i + 1``, the rest ``num_layers + 1``."""
        return vit_layer_depth(param_name, self.num_layers, prefix)


OPTIM_WRAPPER_CONSTRUCTORS.register_module(module=BackboneLayerDecayOptimWrapperConstructor)
MODELS.register_module(module=MIMMixMIMPyramid)

__all__ = ["MIMBEiT", "MIMMixMIMPyramid", "BackboneLayerDecayOptimWrapperConstructor"]
