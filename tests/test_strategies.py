"""Large-model configs offer mmengine's FSDP and DeepSpeed strategies: every config the catalogue lists with
``Strategy: FSDP`` or ``DeepSpeed ZeRO-2`` builds, its strategy builds, and FSDP's wrap policy shards the model block
by block. (Running them needs CUDA GPUs; on a CPU machine tools/train.py refuses them with a clear message, which is
checked too.)"""

from __future__ import annotations

import copy
import importlib.util
import os.path as osp
import re
from functools import partial

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import STRATEGIES
from mmengine.runner import FlexibleRunner

from mim_zoo.engine.catalogue import load_catalogue
from mim_zoo.engine.config import prepare_config
from mim_zoo.registry import MODELS

from .helpers.training import REPO


def configs(strategy: str) -> list[str]:
    return [m.config for m in load_catalogue(REPO).pretraining() if (m.strategy or "").startswith(strategy)]


@pytest.mark.parametrize("config", configs("FSDP"))
def test_fsdp_config_shards_every_transformer_block(config: str, tmp_path) -> None:
    cfg = Config.fromfile(osp.join(REPO, config))
    assert cfg.runner_type is FlexibleRunner
    strategy = STRATEGIES.build(cfg.strategy, default_args=dict(work_dir=str(tmp_path)))  # it writes a log there
    assert type(strategy).__name__ == "FSDPStrategy"
    model = MODELS.build(cfg.model)  # the real ViT-L/Swin-L (on CPU: mmpretrain's MixMIM cannot build on meta)
    policy_cfg = copy.deepcopy(strategy.model_wrapper["auto_wrap_policy"])
    policy = partial(policy_cfg.pop("type"), **policy_cfg)  # as mmengine's MMFullyShardedDataParallel builds it
    units = [m for m in model.modules()
             if policy(module=m, recurse=False, nonwrapped_numel=sum(p.numel() for p in m.parameters()))]
    blocks = [m for name, m in model.named_modules() if re.search(r"blocks\.\d+$", name)]
    assert units == blocks and len(blocks) >= 24  # ViT-L: 24 encoder blocks, Swin-L 2+2+18+2 (+ decoder blocks)
    sharded = sum(p.numel() for unit in units for p in unit.parameters())
    assert sharded / sum(p.numel() for p in model.parameters()) > 0.95  # almost every weight lives in a unit


@pytest.mark.parametrize("config", configs("DeepSpeed"))
def test_deepspeed_config_builds(config: str, tmp_path) -> None:
    cfg = Config.fromfile(osp.join(REPO, config))
    assert cfg.runner_type is FlexibleRunner
    assert cfg.strategy.zero_optimization.stage == 2
    assert cfg.optim_wrapper.type.__name__ == "DeepSpeedOptimWrapper"
    if importlib.util.find_spec("deepspeed") is None:
        with pytest.raises(ValueError, match=r"deepspeed package is not installed: `pip install \"deepspeed>=0.13\"`"):
            prepare_config(cfg)
    else:
        strategy = STRATEGIES.build(cfg.strategy, default_args=dict(work_dir=str(tmp_path)))
        assert type(strategy).__name__ == "DeepSpeedStrategy"


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal concerns machines without CUDA")
@pytest.mark.parametrize("config", configs("FSDP"))
def test_sharded_configs_are_refused_without_cuda(config: str) -> None:
    cfg = Config.fromfile(osp.join(REPO, config))
    with pytest.raises(ValueError, match="places its shards on CUDA GPUs, and this machine has none; train the plain"):
        prepare_config(cfg)
