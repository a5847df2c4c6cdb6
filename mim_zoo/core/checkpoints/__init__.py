"""Checkpoints in and out: read, convert from other layouts, check, and export for other libraries.

=================  =============================================================================================
module             what it does
=================  =============================================================================================
``sources``        the registry of layouts mim_zoo converts *from* (``SOURCES``, ``tools/convert_checkpoint.py
                   --list``): official MAE (full, encoder-only), BootMAE (with its EMA), MixMIM (official,
                   mmpretrain), mim_zoo's own files, CLIP/DINO teachers; each registered by ``mae``, ``bootmae``,
                   ``mixmim``, ``own``, ``teachers``
``convert``        applies a source layout to a whole file and records the config the result belongs to
``check``          loads a state dict into its model: parameter counts, missing / unexpected keys
``read``           reads a mim_zoo checkpoint and rebuilds its encoder (or its whole algorithm) from the saved config
``export``         the registry of layouts mim_zoo exports *to* (``EXPORTS``: timm, mmpretrain, mmseg, mmdet), each
                   in the form its library's own loading path reads; ``layouts`` holds their key maps
``keys``           what both directions share: ``Converted``, ``ConversionError``, key renaming
=================  =============================================================================================

Naming: ``<layout>_to_<layout>`` for the pure state-dict maps of both directions (``mae_to_mim_zoo``,
``timm_vit_to_openmmlab``); registry entries are named by the layout (``--from mae``, ``--to mmdet``).
"""

from . import mae, bootmae, mixmim, own, teachers  # noqa: F401,I001  (explicit imports register the layouts, in this order)
from .keys import ConversionError, Converted, StateDict
from .sources import SOURCES, SourceLayout, convert_state_dict, register_source, source_layout

__all__ = ["SOURCES", "ConversionError", "Converted", "SourceLayout", "StateDict", "convert_state_dict",
           "register_source", "source_layout"]
