"""MR-MAE (mim_zoo/core/algorithms/mrmae.py) and its attention-guided masking
(mim_zoo/core/masking.py:AttentionMasking).

Models are built from ``configs/mrmae/tiny_cpu.py`` with its tiny random teachers written to a temporary folder.
"""

from __future__ import annotations

import copy
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper

import mim_zoo  # noqa: F401  (registers the plugins)
from mim_zoo.core.algorithms.mrmae import MimicHead, mimic_loss
from mim_zoo.core.masking import AttentionMasking, RandomMasking
from mim_zoo.core.tokens import patchify
from mim_zoo.engine.config import load_config
from mim_zoo.registry import MASK_GENERATORS, MODELS
from mim_zoo.synthetic.teachers import generate_teachers

ROOT = Path(__file__).resolve().parents[2]
GRID = (8, 8)  # 32x32 images, 4x4 patches
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")


@pytest.fixture(scope="module")
def tiny_cfg(tmp_path_factory: pytest.TempPathFactory) -> Config:
    """The tiny config with its teachers generated in a temporary folder."""
    cfg = load_config(ROOT / "configs/mrmae/tiny_cpu.py")
    folder = tmp_path_factory.mktemp("teachers")
    (specs,) = [entry.specs for entry in cfg.synthetic_data if entry.type is generate_teachers]
    for spec in specs:
        spec.path = str(folder / Path(spec.path).name)
    for teacher in cfg.model.teachers.values():
        teacher.checkpoint = str(folder / Path(teacher.checkpoint).name)
    generate_teachers(specs)
    return cfg


def build(cfg: Config, seed: int = 0, **overrides: object) -> torch.nn.Module:
    model_cfg = copy.deepcopy(cfg.model)
    for key, value in overrides.items():  # replace, not merge (ConfigDict.update merges nested dicts)
        model_cfg[key] = value
    torch.manual_seed(seed)
    return MODELS.build(model_cfg)


def batch(seed: int = 0, size: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised images ``[B, 3, 32, 32]`` and a 75% random mask ``[B, 64]``."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(size, 3, 32, 32, generator=generator)
    return images, RandomMasking(0.75)(size, GRID, generator=generator)


def replace_output(module: torch.nn.Module, where: torch.Tensor, delta: float = 3.0):
    """A forward hook adding ``delta`` to ``module``'s ``[B, L, D]`` output at the ``[B, L]`` positions ``where``."""
    def hook(mod, args, output):
        output = output.clone()
        output[where] += delta
        return output
    return module.register_forward_hook(hook)


# --- losses ---------------------------------------------------------------------------------------------------------
def test_mimic_loss_matches_hand_computed_values() -> None:
    pred = torch.tensor([[[1.0, 2.0], [0.0, 1.0]]])  # [B=1, K=2, D=2]
    target = torch.tensor([[[1.0, 0.0], [0.5, 1.0]]])
    # mse: token 1 (0 + 4) / 2 = 2, token 2 (0.25 + 0) / 2 = 0.125 -> 1.0625
    assert mimic_loss(pred, target, "mse").item() == pytest.approx(1.0625)
    # smooth-L1 (beta 1): token 1 (0 + (2 - 0.5)) / 2 = 0.75, token 2 (0.5 * 0.25 + 0) / 2 = 0.0625 -> 0.40625
    assert mimic_loss(pred, target, "smooth_l1").item() == pytest.approx(0.40625)
    # cosine: 1 - 1/sqrt(5) and 1 - 1/sqrt(1.25)
    expected = ((1 - 1 / math.sqrt(5)) + (1 - 1 / math.sqrt(1.25))) / 2
    assert mimic_loss(pred, target, "cosine").item() == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="mimic loss must be one of"):
        mimic_loss(pred, target, "l1")


def test_mimic_touches_only_visible_tokens(tiny_cfg: Config) -> None:
    model = build(tiny_cfg)
    images, mask = batch()
    base = model.loss(images, mask)
    handle = replace_output(model.teachers["clip"], mask)  # CLIP features changed at the masked positions
    masked_changed = model.loss(images, mask)
    handle.remove()
    for key in ("loss_rec", "loss_mimic_clip", "loss_mimic_dino"):
        assert torch.equal(masked_changed[key], base[key]), key
    handle = replace_output(model.teachers["clip"], ~mask)  # ... at the visible positions
    visible_changed = model.loss(images, mask)
    handle.remove()
    assert not torch.allclose(visible_changed["loss_mimic_clip"], base["loss_mimic_clip"])
    assert torch.equal(visible_changed["loss_mimic_dino"], base["loss_mimic_dino"])
    assert torch.equal(visible_changed["loss_rec"], base["loss_rec"])


def test_reconstruction_touches_only_masked_tokens(tiny_cfg: Config) -> None:
    model = build(tiny_cfg)
    images, mask = batch(1)
    base = model.loss(images, mask)
    handle = replace_output(model.target, ~mask)  # pixel targets changed at the visible positions
    visible_changed = model.loss(images, mask)
    handle.remove()
    assert torch.equal(visible_changed["loss_rec"], base["loss_rec"])
    handle = replace_output(model.target, mask)
    masked_changed = model.loss(images, mask)
    handle.remove()
    assert not torch.allclose(masked_changed["loss_rec"], base["loss_rec"])
    for key in ("loss_mimic_clip", "loss_mimic_dino"):
        assert torch.equal(masked_changed[key], base[key]), key


def test_losses_match_an_independent_computation(tiny_cfg: Config) -> None:
    model = build(tiny_cfg).eval()
    images, mask = batch(2)
    losses = model.loss(images, mask)
    keep = torch.stack([row.nonzero().flatten() for row in ~mask])  # [B, 16] visible positions
    rows = torch.arange(images.shape[0])[:, None]
    latent, _ = model.encoder.forward_visible(images, keep)  # [B, 1 + 16, 64]
    pixels = images * torch.tensor(tiny_cfg.data_norm.input_std).view(1, 3, 1, 1) \
        + torch.tensor(tiny_cfg.data_norm.input_mean).view(1, 3, 1, 1)
    for name, norm in (("clip", tiny_cfg.clip_norm), ("dino", tiny_cfg.dino_norm)):
        vit = model.teachers[name].teacher
        teacher_input = (pixels - torch.tensor(norm.mean).view(1, 3, 1, 1)) / torch.tensor(norm.std).view(1, 3, 1, 1)
        feats = vit.forward_intermediates(teacher_input, indices=[1], norm=True, intermediates_only=True,
                                          output_fmt="NLC")[0]  # [B, 64, 48]
        target = F.layer_norm(feats, (48,), eps=1e-6)[rows, keep]  # [B, 16, 48]
        pred = F.layer_norm(model.mimic_heads[name](latent[:, 1:]), (48,), eps=1e-6)
        torch.testing.assert_close(losses[f"loss_mimic_{name}"], ((pred - target) ** 2).mean(), rtol=1e-5, atol=1e-6)
    # reconstruction: MAE's norm-pix MSE over the masked patches
    patches = patchify(images, 4)  # [B, 64, 48]
    norm_pix = (patches - patches.mean(-1, keepdim=True)) / (patches.var(-1, keepdim=True) + 1e-6).sqrt()
    per_patch = ((model.predict_tokens(images, mask) - norm_pix) ** 2).mean(-1)  # [B, 64]
    torch.testing.assert_close(losses["loss_rec"], (per_patch * mask).sum() / mask.sum(), rtol=1e-5, atol=1e-6)
    assert losses["stat_mask_ratio"].item() == 0.75


def test_loss_weights_scale_their_terms(tiny_cfg: Config) -> None:
    model = build(tiny_cfg)
    images, mask = batch(3)
    base = model.loss(images, mask)
    model.set_loss_weights(mimic_dino=0.5, rec=2.0)
    scaled = model.loss(images, mask)
    torch.testing.assert_close(scaled["loss_mimic_dino"], 0.5 * base["loss_mimic_dino"])
    torch.testing.assert_close(scaled["loss_rec"], 2.0 * base["loss_rec"])
    assert torch.equal(scaled["loss_mimic_clip"], base["loss_mimic_clip"])


# --- training: gradients, frozen teachers ---------------------------------------------------------------------------
def test_gradients_reach_every_trainable_parameter_and_teachers_stay_frozen(tiny_cfg: Config) -> None:
    model = build(tiny_cfg, mimic_head=dict(depth=2, hidden_dim=32)).train()
    assert all(not t.teacher.training for t in model.teachers.values())  # frozen teachers run in eval mode
    assert isinstance(model.mimic_heads["clip"], MimicHead) and len(model.mimic_heads["clip"]) == 3
    optim_wrapper = build_optim_wrapper(model, copy.deepcopy(tiny_cfg.optim_wrapper))
    optim_wrapper.optimizer.param_groups[0]["lr"] = 1e-2
    teacher_before = {n: p.detach().clone() for n, p in model.teachers.named_parameters()}
    images, mask = batch(4)
    losses = model(images, mode="loss", mask=mask)
    total = sum(v for k, v in losses.items() if k.startswith("loss_"))
    optim_wrapper.backward(total)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {f"teachers.{n}" for n in teacher_before} | {"encoder.vit.pos_embed"}
    for name, param in model.named_parameters():
        if param.requires_grad:
            assert param.grad is not None and torch.isfinite(param.grad).all(), name
            assert param.grad.abs().sum() > 0, f"zero gradient for {name}"
        else:
            assert param.grad is None, name
    head_before = model.mimic_heads["dino"][0].weight.detach().clone()
    optim_wrapper.step()
    for name, param in model.teachers.named_parameters():
        assert torch.equal(param, teacher_before[name]), f"teacher parameter {name} moved"
    assert not torch.equal(model.mimic_heads["dino"][0].weight, head_before)


@pytest.mark.slow
def test_train_tool_finishes_the_tiny_config_with_a_checkpoint(tmp_path) -> None:
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    result = subprocess.run([sys.executable, "tools/train.py", "configs/mrmae/tiny_cpu.py", "--work-dir",
                             str(tmp_path)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    checkpoint = torch.load(tmp_path / "epoch_2.pth", map_location="cpu", weights_only=True)
    state = checkpoint["state_dict"]
    assert "mimic_heads.clip.0.weight" in state
    assert not any(".teacher." in key for key in state)  # frozen teachers reload from their files
    assert (tmp_path / "last_checkpoint").is_file()
    assert "loss_mimic_clip" in result.stdout + result.stderr  # the logged terms


# --- focused mimicking: attention-guided masking ---------------------------------------------------------------------
def test_attention_masking_topk_keeps_the_most_attended_tokens() -> None:
    assert MASK_GENERATORS.get("AttentionMasking") is AttentionMasking
    attention = torch.rand(3, 64, generator=torch.Generator().manual_seed(0)).softmax(-1)
    mask = AttentionMasking(0.75, mode="topk")(3, GRID, attention=attention)
    assert mask.dtype == torch.bool and mask.shape == (3, 64)
    assert mask.sum(1).tolist() == [48, 48, 48]
    top = attention.topk(16, dim=1).indices
    for row in range(3):
        assert set((~mask[row]).nonzero().flatten().tolist()) == set(top[row].tolist())


def test_attention_masking_sample_follows_the_attention_and_is_seeded() -> None:
    attention = torch.full((4, 64), 1e-9)
    salient = torch.stack([torch.randperm(64, generator=torch.Generator().manual_seed(i))[:16] for i in range(4)])
    attention.scatter_(1, salient, 1.0)  # all mass on 16 tokens per sample
    gen = AttentionMasking(0.75)  # mode="sample" (MILAN)
    mask = gen(4, GRID, generator=torch.Generator().manual_seed(1), attention=attention)
    assert mask.sum(1).tolist() == [48] * 4
    for row in range(4):
        assert set((~mask[row]).nonzero().flatten().tolist()) == set(salient[row].tolist())
    uniform = torch.ones(4, 64)
    first = gen(4, GRID, generator=torch.Generator().manual_seed(2), attention=uniform)
    again = gen(4, GRID, generator=torch.Generator().manual_seed(2), attention=uniform)
    other = gen(4, GRID, generator=torch.Generator().manual_seed(3), attention=uniform)
    assert torch.equal(first, again) and not torch.equal(first, other)
    # proportional sampling: a token with 8x the weight of the others is kept far more often
    weights = torch.ones(2000, 64)
    weights[:, 0] = 8.0
    kept = ~gen(2000, GRID, generator=torch.Generator().manual_seed(4), attention=weights)
    assert kept[:, 0].float().mean() > 2 * kept[:, 1:].float().mean()
    with pytest.raises(ValueError, match=r"needs attention=\[B, L\] = \[4, 64\]"):
        gen(4, GRID)
    with pytest.raises(ValueError, match="mode must be"):
        AttentionMasking(0.75, mode="random")


def reference_cls_attention(vit: torch.nn.Module, images: torch.Tensor, run) -> torch.Tensor:
    """The last block's [CLS] -> patch attention read from timm's own (non-fused) softmax output."""
    attn = vit.blocks[-1].attn
    captured = {}
    handle = attn.attn_drop.register_forward_hook(lambda m, args, out: captured.update(probs=out))
    fused, attn.fused_attn = attn.fused_attn, False
    try:
        run()
    finally:
        attn.fused_attn = fused
        handle.remove()
    return captured["probs"].mean(dim=1)[:, 0, 1:]  # [B, L]


def test_focused_mimicking_keeps_the_teachers_most_attended_tokens(tiny_cfg: Config) -> None:
    model = build(tiny_cfg, masking=dict(type="AttentionMasking", ratio=0.75, mode="topk"), focus_teacher="clip")
    images, _ = batch(5)
    feats, attention = model.teacher_features(images)
    expected = reference_cls_attention(model.teachers["clip"].teacher, images, lambda: model.teachers["clip"](images))
    torch.testing.assert_close(attention, expected, rtol=1e-5, atol=1e-7)
    mask = model(images, mode="predict")["mask"]  # no explicit mask: drawn from the attention
    assert mask.sum(1).tolist() == [48] * 4
    top = expected.topk(16, dim=1).indices
    for row in range(4):
        assert set((~mask[row]).nonzero().flatten().tolist()) == set(top[row].tolist())
    losses = model(images, mode="loss")
    assert all(torch.isfinite(v) for v in losses.values()) and losses["stat_mask_ratio"].item() == 0.75
    explicit = batch(6)[1]  # an explicit mask still wins
    assert torch.equal(model(images, mode="predict", mask=explicit)["mask"], explicit)


# --- cheaper teachers -------------------------------------------------------------------------------------------------
def test_bf16_teachers_are_numerically_close_to_fp32(tiny_cfg: Config) -> None:
    model = build(tiny_cfg)
    images, mask = batch(7)
    exact, _ = model.teacher_features(images)
    model.teacher_dtype = "bfloat16"
    cheap, _ = model.teacher_features(images)
    for name in exact:
        assert cheap[name].dtype == torch.float32
        rel = (cheap[name] - exact[name]).norm() / exact[name].norm()
        assert rel < 0.05, (name, rel.item())
        assert F.cosine_similarity(cheap[name], exact[name], dim=-1).min() > 0.99
    cheap_losses = model.loss(images, mask)
    model.teacher_dtype = None
    exact_losses = model.loss(images, mask)
    for key in ("loss_mimic_clip", "loss_mimic_dino"):
        torch.testing.assert_close(cheap_losses[key], exact_losses[key], rtol=0.02, atol=0.0)
    model.teacher_dtype = "float32"  # forced full precision inside an outer bf16 autocast
    with torch.autocast("cpu", dtype=torch.bfloat16):
        forced, _ = model.teacher_features(images)
    for name in exact:
        torch.testing.assert_close(forced[name], exact[name])


# --- configuration errors ---------------------------------------------------------------------------------------------
def test_bad_configurations_fail_clearly(tiny_cfg: Config) -> None:
    with pytest.raises(ValueError, match="set focus_teacher to one of"):
        build(tiny_cfg, masking=dict(type="AttentionMasking"))
    with pytest.raises(ValueError, match="focus_teacher 'eva' is not a teacher"):
        build(tiny_cfg, focus_teacher="eva")
    with pytest.raises(ValueError, match=r"unknown loss weight\(s\) \['mimic_clp'\]"):
        build(tiny_cfg, loss_weights=dict(mimic_clp=1.0))
    with pytest.raises(ValueError, match="mimic_loss must be one of"):
        build(tiny_cfg, mimic_loss="l1")
    with pytest.raises(ValueError, match="teacher_dtype must be one of"):
        build(tiny_cfg, teacher_dtype="half")
    with pytest.raises(ValueError, match="needs at least one teacher"):
        build(tiny_cfg, teachers={})
    wrong_grid = copy.deepcopy(tiny_cfg.model.teachers)
    wrong_grid.dino.model_kwargs = dict(wrong_grid.dino.model_kwargs, img_size=64)
    with pytest.raises(ValueError, match="16x16 token grid but the encoder yields 8x8"):
        build(tiny_cfg, teachers=wrong_grid)
    early = copy.deepcopy(tiny_cfg.model.teachers)
    early.clip.block = 0
    with pytest.raises(ValueError, match="focus_block -1 does not run"):
        build(tiny_cfg, teachers=early, focus_teacher="clip")


def test_exported_encoder_loads_into_timm(tiny_cfg: Config) -> None:
    model = build(tiny_cfg)
    state = model.export_encoder()
    assert not any(k.startswith(("teachers", "mimic", "decoder")) for k in state)
    vit = timm.create_model(**model.encoder.timm_create_kwargs())
    assert not vit.load_state_dict(state, strict=True).missing_keys
