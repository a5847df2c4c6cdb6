"""COCO backbones and necks for mmdet, initialised from a mim_zoo pretraining checkpoint.

``import mim_zoo.downstream.mmdet`` (the ``custom_imports`` of ``configs/benchmarks/coco``) registers in mmdet:

* ``MODELS``: ``ViTDetBackbone``, ``SimpleFeaturePyramid`` and ``LayerNorm2d`` (:mod:`mim_zoo.downstream.vitdet`,
  the ViTDet recipe for plain ViTs) and ``MIMMixMIMPyramid`` (:mod:`mim_zoo.downstream.mixmim_pyramid`, MixMAE's
  Swin with mmdet's FPN).
* ``OPTIM_WRAPPER_CONSTRUCTORS``: ``BackboneLayerDecayOptimWrapperConstructor``.

The names differ from mmdet's ``projects/ViTDet`` (``ViT``, ``SimpleFPN``, ``LN2d``) so both can be imported.
"""

from __future__ import annotations

from mim_zoo.env import require_mmcv_ops

require_mmcv_ops("COCO detection with mmdet", on_cuda_tensors=True)  # Mask R-CNN calls nms and roi_align

from mmdet.registry import MODELS, OPTIM_WRAPPER_CONSTRUCTORS  # noqa: E402

from .layer_decay import BackboneLayerDecayOptimWrapperConstructor  # noqa: E402
from .mixmim_pyramid import MIMMixMIMPyramid  # noqa: E402
from .vitdet import LayerNorm2d, SimpleFeaturePyramid, ViTDetBackbone  # noqa: E402

for _module in (ViTDetBackbone, SimpleFeaturePyramid, LayerNorm2d, MIMMixMIMPyramid):
    MODELS.register_module(module=_module)
OPTIM_WRAPPER_CONSTRUCTORS.register_module(module=BackboneLayerDecayOptimWrapperConstructor)

__all__ = ["ViTDetBackbone", "SimpleFeaturePyramid", "LayerNorm2d", "MIMMixMIMPyramid",
           "BackboneLayerDecayOptimWrapperConstructor"]
