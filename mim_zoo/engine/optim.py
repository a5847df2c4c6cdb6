"""mmengine's default optimizer-wrapper constructor, minus the frozen-by-design parts of MIM algorithms."""

from __future__ import annotations

from mmengine.logging import print_log
from mmengine.optim import DefaultOptimWrapperConstructor
from torch import nn

from ..core.contracts import TargetProtocol


class MIMOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """``DefaultOptimWrapperConstructor`` that leaves target generators out of the optimizer in one log line.

    Momentum encoders and frozen teachers never train (the EMA moves through ``momentum_update``); mmengine's
    constructor would log one "requires_grad=False, skipped" warning per tensor of them (about 150 for a ViT-B
    momentum encoder, 300 for MR-MAE's two teachers). Everything else (``paramwise_cfg``) is mmengine's.
    """

    def add_params(self, params: list, module: nn.Module, prefix: str = "", is_dcn_module: int | float | None = None
                   ) -> None:
        if isinstance(module, TargetProtocol):
            frozen = sum(p.numel() for p in module.parameters())
            if any(p.requires_grad for p in module.parameters()):
                raise ValueError(f"target generator {prefix} has trainable parameters; targets must be frozen")
            if frozen:
                print_log(f"{prefix}: {frozen:,} frozen parameters of a {type(module).__name__}, not optimised",
                          logger="current")
            return
        super().add_params(params, module, prefix, is_dcn_module)
