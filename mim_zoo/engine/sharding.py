"""Sharding helpers for mmengine's FSDP strategy (``configs/_base_/strategies/fsdp.py``)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn


def wrap_blocks(module: nn.Module, recurse: bool, nonwrapped_numel: int,
                block_names: Sequence[str] = ("Block",)) -> bool:
    """FSDP auto-wrap policy: every module whose class is named in ``block_names`` becomes one shard unit.

    Classes are matched by name so the policy lives in a config as plain strings (mmengine resolves lazily imported
    classes in config dicts, not inside lists or sets, so ``transformer_auto_wrap_policy`` with a class set cannot be
    configured). ``"Block"`` is timm's ViT block, used by every mim_zoo ViT encoder and MAE-style decoder; a Swin
    encoder adds its own block class name.

    Args:
        module: the module FSDP asks about.
        recurse: ``True`` when FSDP asks whether to descend into ``module`` (always), ``False`` whether to wrap it.
        nonwrapped_numel: parameters of ``module`` not yet in a unit (unused; part of FSDP's policy signature).
        block_names: class names of the units.
    """
    return recurse or type(module).__name__ in block_names
