"""MIMOptimWrapperConstructor: every trainable parameter optimised, target generators left out."""

import pytest
import torch
from mmengine.config import Config

from mim_zoo.engine.config import prepare_config
from mim_zoo.engine.optim import MIMOptimWrapperConstructor
from mim_zoo.registry import MODELS

from .conftest import REPO


def build(config: str):
    cfg = prepare_config(Config.fromfile(str(REPO / "configs" / config)))
    model = MODELS.build(cfg.model)
    wrapper_cfg = dict(cfg.optim_wrapper)
    constructor = wrapper_cfg.pop("constructor")
    assert constructor is MIMOptimWrapperConstructor
    paramwise = wrapper_cfg.pop("paramwise_cfg", None)
    return model, constructor(wrapper_cfg, paramwise)(model)


@pytest.mark.parametrize("config", ["bootmae/tiny_cpu.py", "mrmae/tiny_cpu.py", "mae/tiny_cpu.py"])
def test_trainable_parameters_are_optimised_and_targets_are_not(config):
    model, wrapper = build(config)
    optimised = {id(p) for group in wrapper.optimizer.param_groups for p in group["params"]}
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    target_params = {id(p) for t in model.targets() for p in t.parameters()}
    assert trainable <= optimised
    assert not optimised & target_params


def test_a_trainable_target_is_refused():
    model, _ = build("bootmae/tiny_cpu.py")
    next(model.feature_target.parameters()).requires_grad_(True)
    with pytest.raises(ValueError, match="targets must be frozen"):
        MIMOptimWrapperConstructor(dict(type="OptimWrapper", optimizer=dict(type=torch.optim.AdamW, lr=1e-3,
                                                                             weight_decay=0.05)),
                                   dict(bias_decay_mult=0.0))(model)


def test_parameter_groups_are_plain_dicts_that_torch_compile_can_trace():
    """mmengine's groups are ConfigDicts; TorchDynamo fails on them when the Runner compiles train_step (which
    holds the optimizer step). The groups are plain dicts with mmengine's values, and a compiled step runs."""
    model, wrapper = build("mae/tiny_cpu.py")
    groups = wrapper.optimizer.param_groups
    assert all(type(g) is dict and type(g["params"]) is list for g in groups)
    assert {g["weight_decay"] for g in groups} == {0.0, 0.05}  # the paramwise rules survive
    step = torch.compile(wrapper.optimizer.step, backend="eager")  # Dynamo only: what failed was the tracing
    for p in model.parameters():
        p.grad = torch.ones_like(p) if p.requires_grad else None
    before = model.decoder.pred.weight.detach().clone()
    step()
    assert not torch.equal(before, model.decoder.pred.weight)
