"""COCO backbones and necks for mmdet, initialised from a mim_zoo pretraining checkpoint.

``import mim_zoo.core.downstream.mmdet`` (the ``custom_imports`` of ``configs/benchmarks/coco``) registers in mmdet:

* ``MODELS``: ``ViTDetBackbone``, ``SimpleFeaturePyramid`` and ``LayerNorm2d`` (:mod:`mim_zoo.core.downstream.vitdet`,
  the ViTDet recipe for plain ViTs) and ``MIMMixMIMPyramid`` (:mod:`mim_zoo.core.downstream.mixmim_pyramid`, MixMAE's
  Swin with mmdet's FPN).
* ``OPTIM_WRAPPER_CONSTRUCTORS``: ``BackboneLayerDecayOptimWrapperConstructor``.

The names differ from mmdet's ``projects/ViTDet`` (``ViT``, ``SimpleFPN``, ``LN2d``) so both can be imported.
"""

from __future__ import annotations

from mmdet.registry import MODELS, OPTIM_WRAPPER_CONSTRUCTORS

from .layer_decay import BackboneLayerDecayOptimWrapperConstructor
from .mixmim_pyramid import MIMMixMIMPyramid
from .vitdet import LayerNorm2d, SimpleFeaturePyramid, ViTDetBackbone

for _module in (ViTDetBackbone, SimpleFeaturePyramid, LayerNorm2d, MIMMixMIMPyramid):
    MODELS.register_module(module=_module)
OPTIM_WRAPPER_CONSTRUCTORS.register_module(module=BackboneLayerDecayOptimWrapperConstructor)

__all__ = ["ViTDetBackbone", "SimpleFeaturePyramid", "LayerNorm2d", "MIMMixMIMPyramid",
           "BackboneLayerDecayOptimWrapperConstructor"]
