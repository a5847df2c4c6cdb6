"""mmengine's default optimizer-wrapper constructor, minus the frozen-by-design parts of MIM algorithms."""

from __future__ import annotations

from mmengine.logging import print_log
from mmengine.optim import DefaultOptimWrapperConstructor, OptimWrapper
from torch import nn

from ..core.contracts import TargetProtocol


class MIMOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """``DefaultOptimWrapperConstructor`` that leaves target generators out of the optimizer in one log line.

    Momentum encoders and frozen teachers never train (the EMA moves through ``momentum_update``); mmengine's
    constructor would log one "requires_grad=False, skipped" warning per tensor of them (about 150 for a ViT-B
    momentum encoder, 300 for MR-MAE's two teachers). Everything else (``paramwise_cfg``) is mmengine's.

    The parameter groups it hands the optimizer are plain dicts: mmengine builds the optimizer from a config, which
    makes every group a ``ConfigDict``, and TorchDynamo cannot trace an optimizer step over those (torch 2.14:
    ``'UserDefinedDictVariable' object has no attribute 'items'``), so the Runner's ``compile`` switch, which
    compiles ``train_step`` with the optimizer step inside, failed at the first iteration.
    """

    def __call__(self, model: nn.Module) -> OptimWrapper:
        wrapper = super().__call__(model)
        groups = wrapper.optimizer.param_groups
        groups[:] = [{key: list(v) if key == "params" else v for key, v in group.items()} for group in groups]
        return wrapper

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
