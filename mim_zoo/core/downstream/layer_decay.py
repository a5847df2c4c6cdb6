"""Layer-wise learning-rate decay for segmentors and detectors, through the backbone's ``get_layer_depth``.

Layer decay (BEiT, arXiv:2106.08254; MAE ``util/lr_decay.py``) scales the learning rate of a parameter at depth
``d`` of ``n`` by ``rate ** (n - 1 - d)``: the stem (patch embedding, positions, class token) is depth 0, block
``i`` is depth ``i + 1`` and everything after the backbone (necks, heads) depth ``n - 1`` (scale 1), with
``n = num_blocks + 2``. mmpretrain's ``LearningRateDecayOptimWrapperConstructor`` implements exactly that for
classifiers, asking the model's ``get_layer_depth``; segmentors and detectors have no such method, so
:class:`BackboneLayerDecayOptimWrapperConstructor` asks ``model.backbone.get_layer_depth(name, 'backbone.')``
instead and otherwise behaves the same (``layer_decay_rate``; weight-decay multipliers ``custom_keys``,
``norm_decay_mult``, ``bias_decay_mult``, ``flat_decay_mult``). The two recipes used here:

* mmseg MAE/BEiT UperNet (``mmseg/engine/optimizers/layer_decay_optimizer_constructor.py``): no weight decay on
  1-D parameters and biases -> ``flat_decay_mult=0``; rate 0.65.
* ViTDet (detectron2 ``modeling/backbone/vit.py:get_vit_lr_decay_rate`` + ``projects/ViTDet/configs/COCO``
  ``optimizer.params``; mmdet ``projects/ViTDet/vitdet/layer_decay_optimizer_constructor.py``): no weight decay on
  normalisation layers (``weight_decay_norm=0``) and ``pos_embed`` -> ``norm_decay_mult=0`` +
  ``custom_keys={'pos_embed': dict(decay_mult=0)}``; rate 0.7.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from mmpretrain.engine.optimizers import LearningRateDecayOptimWrapperConstructor
from torch import nn

from ..contracts import LayerDepthProtocol


def vit_layer_depth(param_name: str, num_blocks: int, prefix: str = "", blocks_attr: str = "layers",
                    stem: tuple[str, ...] = ("cls_token", "pos_embed", "mask_token", "patch_embed")) -> tuple[int, int]:
    """``(depth, num_layers)`` of a plain-ViT parameter (mmpretrain's ``get_layer_depth`` protocol).

    Args:
        param_name: full parameter name, e.g. ``backbone.layers.3.attn.qkv.weight``.
        num_blocks: transformer blocks in the backbone.
        prefix: the backbone's prefix in ``param_name`` (``"backbone."``); other names are after the backbone.
        blocks_attr: name of the block list (``layers`` in OpenMMLab ViTs, ``blocks`` in timm-named ones).
        stem: names (prefix match) at depth 0.
    """
    num_layers = num_blocks + 2
    if not param_name.startswith(prefix):
        return num_layers - 1, num_layers
    name = param_name[len(prefix):]
    if name.startswith(stem):
        return 0, num_layers
    if name.startswith(blocks_attr + "."):
        return int(name.split(".")[1]) + 1, num_layers
    return num_layers - 1, num_layers


class BackboneLayerDecayOptimWrapperConstructor(LearningRateDecayOptimWrapperConstructor):
    """mmpretrain's layer-decay constructor for models whose *backbone* knows the layer depths (module docstring)."""

    def add_params(self, params: list[dict], module: nn.Module, prefix: str = "",
                   get_layer_depth: Callable | None = None, **kwargs) -> None:
        if get_layer_depth is None and not isinstance(module, LayerDepthProtocol):
            backbone = dict(module.named_children()).get("backbone")
            if not isinstance(backbone, LayerDepthProtocol):
                raise TypeError(
                    f"layer-wise lr decay needs `get_layer_depth(name, prefix)` on {type(module).__name__}.backbone "
                    f"({type(backbone).__name__}); use a mim_zoo downstream backbone or another constructor"
                )
            get_layer_depth = partial(backbone.get_layer_depth, prefix="backbone.")
        super().add_params(params, module, prefix=prefix, get_layer_depth=get_layer_depth, **kwargs)
