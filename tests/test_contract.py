"""Contract tests run for every tiny CPU config: each algorithm and each combination of the catalogue (STYLE R23).

A new algorithm or combination gets this coverage by listing its tiny config in its metafile
(``configs/<algo>/metafile.yml``); tests/test_catalogue.py checks that every registered algorithm has one.
"""

from __future__ import annotations

import fnmatch

import pytest
import torch
from mmengine.config import Config

from mim_zoo.core.contracts import PixelTargetProtocol
from mim_zoo.engine.config import prepare_config
from mim_zoo.registry import MODELS

from .conftest import CATALOGUE, REPO

TINY_CONFIGS = [str(p.relative_to(REPO / "configs")) for p in CATALOGUE.configs(scale="tiny")]
# Parameters that are frozen on purpose: fixed sin-cos tables, momentum encoders, frozen teachers.
FROZEN = ("encoder.*pos_embed", "encoder.*absolute_pos_embed", "*target.ema.*", "teachers.*")


def frozen_on_purpose(name: str) -> bool:
    return any(fnmatch.fnmatch(name, pattern) for pattern in FROZEN)


def build(config: str, seed: int = 0) -> torch.nn.Module:
    cfg = prepare_config(Config.fromfile(str(REPO / "configs" / config)))
    torch.manual_seed(seed)
    return MODELS.build(cfg.model).train()


def batch(model: torch.nn.Module, seed: int = 0, size: int = 4) -> torch.Tensor:
    grid = model.encoder.grid_size
    side = grid[0] * model.encoder.patch_size
    return torch.randn(size, 3, side, grid[1] * model.encoder.patch_size, generator=torch.Generator().manual_seed(seed))


def total_loss(losses: dict) -> torch.Tensor:
    return sum(v for k, v in losses.items() if "loss" in k)


def test_the_four_seed_algorithms_ship_tiny_configs():
    assert {"MAE", "BootMAE", "MRMAE", "MixMAE"} <= set(CATALOGUE.algorithms())
    for name in CATALOGUE.algorithms() + CATALOGUE.combos():
        assert str(CATALOGUE.tiny_config(name).relative_to(REPO / "configs")) in TINY_CONFIGS


def test_at_least_three_combinations_no_paper_trained():
    assert len(CATALOGUE.combos()) >= 3


@pytest.mark.parametrize("config", TINY_CONFIGS)
def test_finite_loss_and_gradients_reach_every_trainable_parameter(config):
    model = build(config)
    losses = model(batch(model), mode="loss")
    assert any(k.startswith("loss_") for k in losses), "losses are returned as loss_<term>"
    assert not any("loss" in k for k in losses if not k.startswith("loss_")), "diagnostics must not contain 'loss'"
    loss = total_loss(losses)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    for name, param in model.named_parameters():
        if param.requires_grad:
            assert param.grad is not None and param.grad.abs().sum() > 0, f"no gradient reaches {name}"
        else:
            assert frozen_on_purpose(name), f"{name} is frozen but not on the documented frozen list"
            assert param.grad is None


@pytest.mark.parametrize("config", TINY_CONFIGS)
def test_frozen_parts_stay_frozen_under_an_optimizer_step(config):
    model = build(config)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.05)
    total_loss(model(batch(model), mode="loss")).backward()
    optimizer.step()
    for name, param in model.named_parameters():
        if name in frozen:
            assert torch.equal(param, frozen[name]), f"frozen parameter {name} changed"


@pytest.mark.parametrize("config", TINY_CONFIGS)
def test_seeded_runs_are_identical(config):
    results = []
    for _ in range(2):
        model = build(config, seed=3)
        torch.manual_seed(11)  # masks are drawn from the global RNG
        loss = total_loss(model(batch(model), mode="loss"))
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]))
    assert torch.equal(results[0][0], results[1][0])
    assert all(torch.equal(a, b) for a, b in zip(results[0][1], results[1][1], strict=True))


@pytest.mark.parametrize("config", TINY_CONFIGS)
def test_state_dict_round_trip(config):
    model, other = build(config, seed=0), build(config, seed=1)
    other.load_state_dict(model.state_dict(), strict=True)
    images = batch(model)
    mask = model.resolve_mask(images, None, generator=torch.Generator().manual_seed(5))
    model.eval(), other.eval()
    with torch.no_grad():
        a, b = model(images, mode="loss", mask=mask), other(images, mode="loss", mask=mask)
    assert torch.equal(total_loss(a), total_loss(b))


@pytest.mark.parametrize("config", TINY_CONFIGS)
def test_exported_encoder_loads_into_its_canonical_model(config):
    model = build(config).eval()
    canonical = model.encoder.build_canonical()
    missing, unexpected = canonical.load_state_dict(model.export_encoder(), strict=True)
    assert not missing and not unexpected


@pytest.mark.parametrize("config", TINY_CONFIGS)
def test_reconstruct_returns_a_picture(config):
    """Pixel-predicting methods return a reconstruction; feature-only ones (MAE with momentum targets) the mask."""
    model = build(config).eval()
    images = batch(model)
    out = model(images, mode="predict")
    assert out["mask"].shape[0] == images.shape[0]
    if any(isinstance(t, PixelTargetProtocol) for t in model.targets()):
        assert out["reconstruction"].shape == images.shape
        assert torch.isfinite(out["reconstruction"]).all()
