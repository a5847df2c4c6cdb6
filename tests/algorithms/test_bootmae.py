"""BootMAE (mim_zoo/core/algorithms/bootmae.py, mim_zoo/core/checkpoints/bootmae.py, configs/bootmae).

Reference semantics: LightDXY/BootMAE@d604b18 ``models/modeling_pretrain_bootmae.py`` (model), ``run_pretraining.py``
(losses, EMA), ``utils.py`` (schedules, ``mask_to_index``). Where a test needs the official computation it restates
it in functional form below (``official_*``), written from those files.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config

import mim_zoo  # noqa: F401  (registers the plugins)
from mim_zoo.core.algorithms import MAE
from mim_zoo.core.algorithms.bootmae import BootMAE, PatchDeEmbed, SelfAttention, center_weights
from mim_zoo.core.checkpoints import convert_state_dict
from mim_zoo.core.checkpoints.bootmae import bootmae_to_mim_zoo
from mim_zoo.core.encoders import ViTEncoder
from mim_zoo.core.losses import weighted_mse
from mim_zoo.core.masking import BlockMasking
from mim_zoo.core.schedules import evaluate
from mim_zoo.core.tokens import mask_to_indices, patchify, unpatchify
from mim_zoo.registry import MODELS, build

from ..helpers.official import bootmae_sincos, bootmae_state_dict

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs" / "bootmae"


def tiny_model() -> BootMAE:
    return MODELS.build(Config.fromfile(str(CONFIGS / "tiny_cpu.py")).model)


def tiny_batch(model: BootMAE, batch_size: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    images = torch.randn(batch_size, 3, 32, 32, generator=gen)
    return images, model.masking(batch_size, model.encoder.grid_size, generator=gen)


# --- momentum encoder ---------------------------------------------------------------------------------------------
def test_ema_update_is_the_hand_computed_lerp():
    torch.manual_seed(0)
    model = tiny_model()
    online_w, ema_w = model.encoder.vit.blocks[0].mlp.fc1.weight, model.feature_target.ema.vit.blocks[0].mlp.fc1.weight
    with torch.no_grad():
        online_w.fill_(2.0)
        ema_w.fill_(1.0)
    model.momentum_update(0.9)
    assert torch.allclose(ema_w, torch.full_like(ema_w, 0.9 * 1.0 + 0.1 * 2.0))  # 1.1
    model.momentum_update(0.5)
    assert torch.allclose(ema_w, torch.full_like(ema_w, 0.5 * 1.1 + 0.5 * 2.0))  # 1.55
    assert torch.equal(online_w, torch.full_like(online_w, 2.0))


def test_the_momentum_encoder_changes_only_through_momentum_update():
    torch.manual_seed(0)
    model = tiny_model()
    ema = model.feature_target.ema
    before = {k: v.clone() for k, v in ema.state_dict().items()}
    images, mask = tiny_batch(model)
    loss = sum(v for k, v in model(images, mode="loss", mask=mask).items() if k.startswith("loss"))
    loss.backward()
    torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1).step()
    assert all(torch.equal(before[k], v) for k, v in ema.state_dict().items()), "an optimizer step moved the EMA"
    online = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    assert not all(torch.equal(before[k], v) for k, v in online.items())
    model.momentum_update(0.9)
    for key, value in ema.state_dict().items():
        assert torch.allclose(value, 0.9 * before[key] + 0.1 * online[key], atol=1e-6), key


def test_momentum_target_is_the_last_block_before_the_final_norm_with_parameter_free_ln():
    torch.manual_seed(0)
    model = tiny_model()
    images, _ = tiny_batch(model)
    enc = model.feature_target.ema
    x = enc.vit.patch_embed(images) + enc.vit.pos_embed[:, 1:]
    x = torch.cat([(enc.vit.cls_token + enc.vit.pos_embed[:, :1]).expand(len(x), -1, -1), x], 1)
    for blk in enc.vit.blocks:  # official get_feature: all blocks, no final norm, drop the class token
        x = blk(x)
    expected = F.layer_norm(x[:, 1:], (x.shape[-1],), eps=1e-6)
    target = model.feature_target(images, model.encoder)
    assert torch.allclose(target, expected, atol=1e-5) and not target.requires_grad


def _hook_schedules(config: str) -> tuple[dict, dict]:
    hook = Config.fromfile(str(CONFIGS / config)).custom_hooks[0]
    return hook["momentum"], hook["loss_weights"]["feature"]


@pytest.mark.parametrize("config, expected", [
    # utils.py:adjust_ema_momentum with --model_ema_decay 0.999 (+ --model_ema_dynamic for base)
    ("vitb_800e.py", {0: 0.999, 50: 0.99945, 100: 0.9999, 250: 0.999945, 400: 0.99999, 800: 0.99999}),
    ("vitl_800e.py", {0: 0.999, 50: 0.99945, 100: 0.9999, 250: 0.9999, 400: 0.9999, 800: 0.9999}),
])
def test_momentum_schedule_of_the_configs(config, expected):
    momentum, _ = _hook_schedules(config)
    for epoch, value in expected.items():
        assert evaluate(momentum, epoch, 800) == pytest.approx(value, abs=1e-12), epoch


def test_feature_weight_ramps_to_one_over_the_first_quarter():
    _, ramp = _hook_schedules("vitb_800e.py")
    # run_pretraining.py: min(4 * (epoch + 1) / epochs, 1)
    expected = {0: 1 / 200, 49: 0.25, 99: 0.5, 198: 199 / 200, 199: 1.0, 200: 1.0, 799: 1.0}
    for epoch, value in expected.items():
        assert evaluate(ramp, epoch, 800) == pytest.approx(value), epoch


def test_weight_decay_follows_the_official_no_decay_set():
    from mmengine.optim import build_optim_wrapper

    model = tiny_model()
    wrapper = build_optim_wrapper(model, Config.fromfile(str(CONFIGS / "vitb_800e.py")).optim_wrapper)
    decay = {id(p): group["weight_decay"] for group in wrapper.optimizer.param_groups for p in group["params"]}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        # optim_factory.py:get_parameter_groups: 1-D, ".bias" and no_weight_decay() = {pos_embed, cls_token}
        official = 0.0 if param.ndim == 1 or name.endswith(".bias") or name.endswith("cls_token") else 0.05
        assert decay[id(param)] == official, name
    assert decay[id(model.pixel_decoder.mask_token)] == 0.05  # 3-D mask tokens are decayed officially


# --- masking --------------------------------------------------------------------------------------------------------
def test_block_masking_masks_exactly_147_of_196_keeping_the_blocks():
    seed = 3
    blocks = BlockMasking(total_masked=None)(64, (14, 14), generator=torch.Generator().manual_seed(seed))
    mask = BlockMasking()(64, (14, 14), generator=torch.Generator().manual_seed(seed))  # same block draws
    assert mask.dtype == torch.bool and mask.shape == (64, 196)
    assert (blocks.sum(1) == 120).all(), "BootMAE's generator retries until the 120 block patches are placed"
    assert (mask.sum(1) == 147).all()
    assert ((mask & blocks).sum(1) >= 117).all(), "the 0-3 roll may un-mask at most 3 block patches"
    again = BlockMasking()(64, (14, 14), generator=torch.Generator().manual_seed(seed))
    assert torch.equal(mask, again)


# --- decoders -------------------------------------------------------------------------------------------------------
def test_each_decoder_cross_attends_only_to_its_encoder_block():
    torch.manual_seed(0)
    model = tiny_model()
    images, mask = tiny_batch(model)
    latent, feats, restore_idx = model.encode(images, mask)
    assert set(feats) == {0, -1} and model.pixel_decoder.required_blocks == (0,)
    pixel, feature = model.pixel_decoder(latent, restore_idx, feats), model.feature_decoder(latent, restore_idx, feats)
    for block, changed, unchanged in ((0, model.pixel_decoder, model.feature_decoder),
                                      (-1, model.feature_decoder, model.pixel_decoder)):
        perturbed = dict(feats)
        perturbed[block] = feats[block] + torch.randn_like(feats[block])
        ref = pixel if changed is model.pixel_decoder else feature
        assert not torch.allclose(changed(latent, restore_idx, perturbed), ref, atol=1e-4)
        ref = feature if changed is model.pixel_decoder else pixel
        assert torch.equal(unchanged(latent, restore_idx, perturbed), ref)


def test_mask_tokens_get_positions_and_visible_tokens_do_not():
    torch.manual_seed(0)
    decoder = build(MODELS, dict(type="BootMAEPixelDecoder", embed_dim=32, num_heads=3), in_dim=64, grid_size=(8, 8),
                           out_dim=48)
    mask = BlockMasking(39, 5, 20, total_masked=48)(2, (8, 8), generator=torch.Generator().manual_seed(0))
    _, _, restore_idx = mask_to_indices(mask)
    seen = {}

    def record_input(module, args):
        seen["x"] = args[0]

    decoder.blocks[0].register_forward_pre_hook(record_input)
    latent = torch.randn(2, 1 + 16, 64)
    decoder(latent, restore_idx, {0: torch.randn(2, 17, 64)})
    tokens = seen["x"][:, 1:]  # [B, L, E] decoder input in raster order
    embedded = decoder.embed(latent)[:, 1:]
    for b in range(2):
        visible = (~mask[b]).nonzero().flatten()
        assert torch.allclose(tokens[b, visible], embedded[b], atol=1e-6)  # no position on visible tokens
        masked = mask[b].nonzero().flatten()
        assert torch.allclose(tokens[b, masked], decoder.mask_token[0] + decoder.pos_embed[0, masked], atol=1e-6)


def test_the_registered_decoders_plug_into_another_algorithm():
    torch.manual_seed(0)
    encoder = dict(type=ViTEncoder, arch="vit_tiny_patch16_224", img_size=32, patch_size=4, embed_dim=64, depth=2,
                   num_heads=4)
    model = MAE(encoder, decoder=dict(type="BootMAEPixelDecoder", embed_dim=32, num_heads=4))
    images = torch.randn(2, 3, 32, 32)
    loss = model(images, mode="loss")["loss_rec"]
    loss.backward()
    assert torch.isfinite(loss) and model.decoder.blocks[0].cross_attn.kv.weight.grad.abs().sum() > 0


def test_decoder_head_split_follows_the_official_floor_division():
    decoder = build(MODELS, dict(type="BootMAEPixelDecoder"), in_dim=768, grid_size=(14, 14), out_dim=768)
    attn, cross = decoder.blocks[0].attn, decoder.blocks[0].cross_attn
    assert attn.qkv.weight.shape == (3 * 504, 512) and attn.proj.weight.shape == (512, 504)  # 12 heads x 42
    assert cross.q.weight.shape == (504, 512) and cross.kv.weight.shape == (2 * 504, 768)
    assert decoder.head.proj.weight.shape == (512, 3, 16, 16)
    bound = math.sqrt(6 / (504 + 512))  # Xavier with qkv split in three
    assert attn.qkv.weight.abs().max() <= bound and attn.qkv.weight.abs().max() > 0.9 * bound


def test_conv_transpose_head_equals_linear_plus_unpatchify():
    torch.manual_seed(0)
    head = PatchDeEmbed(embed_dim=8, grid_size=(3, 3), out_dim=4 * 4 * 3)
    with torch.no_grad():
        head.proj.bias.normal_()
    tokens = torch.randn(2, 9, 8)
    weight, bias = head.proj.weight, head.proj.bias  # [E, C, p, p], [C]
    linear_w = weight.permute(2, 3, 1, 0).reshape(4 * 4 * 3, 8)  # rows in (p, q, c) order
    linear_b = bias.repeat(4 * 4)
    image = unpatchify(F.linear(tokens, linear_w, linear_b), 4, (3, 3))
    conv = F.conv_transpose2d(tokens.transpose(1, 2).reshape(2, 8, 3, 3), weight, bias, stride=4)
    assert torch.allclose(image, conv, atol=1e-6)
    assert torch.allclose(head(tokens), patchify(conv, 4), atol=1e-6)


def test_a_key_bias_cancels_in_softmax():
    torch.manual_seed(0)
    attn = SelfAttention(dim=32, num_heads=3)
    x = torch.randn(2, 7, 32)
    ref = attn(x)
    with torch.no_grad():
        attn.qkv.bias[30:60].normal_()  # the k third (3 heads x 10)
    assert torch.allclose(attn(x), ref, atol=1e-5)


# --- losses ---------------------------------------------------------------------------------------------------------
def test_center_weights_by_hand():
    full = torch.ones(1, 9, dtype=torch.bool)  # a fully masked 3x3 grid: corner 4/9, edge 6/9, centre 9/9 of 3x3
    expected = 1 + torch.tensor([4, 6, 4, 6, 9, 6, 4, 6, 4]) / 9
    assert torch.allclose(center_weights(full, (3, 3)), expected[None])
    single = torch.zeros(1, 9, dtype=torch.bool)
    single[0, 4] = True
    assert torch.allclose(center_weights(single, (3, 3)), torch.eye(9)[4][None] * (1 + 1 / 9))


def test_weighted_loss_by_hand():
    mask = torch.tensor([[True, True, False, False]])  # 2x2 grid: every 3x3 window sees both masked patches
    weight = center_weights(mask, (2, 2))
    assert torch.allclose(weight, torch.tensor([[11 / 9, 11 / 9, 0, 0]]))
    pred = torch.tensor([[[1.0, 1.0], [2.0, 0.0], [3.0, 3.0], [5.0, 5.0]]])
    target = torch.zeros_like(pred)  # per-token MSE 1, 2, (9, 25 visible: ignored)
    assert weighted_mse(pred, target, weight, mask).item() == pytest.approx((11 / 9 * 1 + 11 / 9 * 2) / 2)


def official_losses(pixel_image, feature_pred, teacher, images, mask, patch):
    """run_pretraining.py:train_one_epoch in image space: per-patch per-channel normalised target, weight_mask and
    perc_mask = m * avgpool3x3(m) + m, LN(eps 1e-6, no affine) on both feature sides, both / mean(loss_mask)."""
    b, _, h, w = images.shape
    gh, gw = h // patch, w // patch
    m = mask.float().reshape(b, 1, gh, gw)
    weight = m * F.avg_pool2d(m, 3, 1, 1) + m
    cells = images.reshape(b, 3, gh, patch, gw, patch)
    mean = cells.mean(dim=(3, 5), keepdim=True)
    std = (cells.var(dim=(3, 5), unbiased=False, keepdim=True) + 1e-5).sqrt()
    im_norm = ((cells - mean) / std).reshape(b, 3, h, w)
    weight_image = F.interpolate(weight, (h, w), mode="nearest")
    loss_mask = F.interpolate(m, (h, w), mode="nearest")
    pixel = (weight_image * (pixel_image - im_norm) ** 2).mean() / loss_mask.mean()
    ln = lambda t: F.layer_norm(t, t.shape[-1:], eps=1e-6)  # noqa: E731
    feature = (weight.reshape(b, -1, 1) * (ln(teacher) - ln(feature_pred)) ** 2).mean() / loss_mask.mean()
    return pixel, feature


def test_losses_match_the_official_image_space_formulas():
    torch.manual_seed(0)
    model = tiny_model()
    images, mask = tiny_batch(model)
    model.set_loss_weights(feature=0.3)
    out = model.loss(images, mask)
    latent, feats, restore_idx = model.encode(images, mask)
    pixel_image = unpatchify(model.pixel_decoder(latent, restore_idx, feats), 4, (8, 8))
    feature_pred = model.feature_decoder(latent, restore_idx, feats)
    teacher = model.feature_target.ema.forward_full(images)
    pixel, feature = official_losses(pixel_image, feature_pred, teacher, images, mask, patch=4)
    assert out["loss_pixel"].item() == pytest.approx(pixel.item(), rel=1e-5)
    assert out["loss_feature"].item() == pytest.approx(0.3 * feature.item(), rel=1e-5)
    assert out["stat_feature_weight"].item() == pytest.approx(0.3)


# --- gradients and contract -----------------------------------------------------------------------------------------
def test_gradients_reach_every_trainable_parameter_and_never_the_momentum_encoder():
    torch.manual_seed(0)
    model = tiny_model()
    images, mask = tiny_batch(model)
    out = model(images, mode="loss", mask=mask)
    sum(v for k, v in out.items() if k.startswith("loss")).backward()
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {"encoder.vit.pos_embed"} | {n for n in frozen if n.startswith("feature_target.ema.")}
    assert any(n.startswith("feature_target.ema.") for n in frozen)
    for name, param in model.named_parameters():
        if param.requires_grad:
            assert param.grad is not None and param.grad.abs().sum() > 0, f"no gradient for {name}"
        else:
            assert param.grad is None, name
    recon = model(images, mode="predict", mask=mask)
    assert recon["reconstruction"].shape == images.shape and torch.equal(recon["mask"], mask)


def test_init_survives_runner_init_weights_and_the_ema_starts_equal():
    torch.manual_seed(0)
    model = tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.init_weights()  # what mmengine's Runner does before training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    ema = model.feature_target.ema.state_dict()
    assert all(torch.equal(v, ema[k]) for k, v in model.encoder.state_dict().items())
    vit = model.encoder.vit
    assert vit.cls_token.abs().max() < 1e-5 and vit.patch_embed.proj.bias.abs().max() == 0  # N(0, 1e-6), zero
    assert model.pixel_decoder.mask_token.abs().max() <= 0.02


@pytest.mark.slow
def test_train_tool_runs_the_tiny_config_and_writes_a_checkpoint(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "tools/train.py", "configs/bootmae/tiny_cpu.py", "--work-dir", str(tmp_path)]
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    key = "vit.blocks.0.mlp.fc1.weight"
    first, last = (torch.load(tmp_path / f"epoch_{e}.pth", map_location="cpu", weights_only=False)["state_dict"]
                   for e in (1, 2))
    assert not torch.equal(first["feature_target.ema." + key], last["feature_target.ema." + key]), "no EMA step ran"
    assert not torch.equal(last["encoder." + key], last["feature_target.ema." + key])  # the EMA lags the encoder


# --- converter ------------------------------------------------------------------------------------------------------
TINY = dict(embed_dim=48, depth=2, heads=6, decode_dim=32, decoder_depth=2, patch=4, grid=4)  # 32 / 6 heads = 5


def official_sincos(dim: int, grid: int) -> torch.Tensor:
    return bootmae_sincos(dim, grid)


def official_state_dict(seed: int) -> dict[str, torch.Tensor]:
    """Keys and shapes of VisionTransformerForMaskedImageModeling(qkv_bias=True, init_values=None) for TINY."""
    t = TINY
    return bootmae_state_dict(t["embed_dim"], t["depth"], t["heads"], t["decode_dim"], t["decoder_depth"], t["heads"],
                              t["decoder_depth"], t["heads"], t["patch"], t["grid"], seed=seed)


def _ln(x, sd, name):
    return F.layer_norm(x, x.shape[-1:], sd[name + ".weight"], sd[name + ".bias"], eps=1e-6)


def _official_attention(sd, prefix, x, ctx=None):
    """Attention / Cross_Attention: q and v biases, no k bias, softmax(q k^T / sqrt(d)) v, proj."""
    q_b, v_b = sd[prefix + "q_bias"], sd[prefix + "v_bias"]
    if ctx is None:
        q, k, v = F.linear(x, sd[prefix + "qkv.weight"], torch.cat([q_b, 0 * q_b, v_b])).chunk(3, -1)
    else:
        q = F.linear(x, sd[prefix + "q.weight"], q_b)
        k, v = F.linear(ctx, sd[prefix + "kv.weight"], torch.cat([0 * v_b, v_b])).chunk(2, -1)
    q, k, v = (t.unflatten(-1, (TINY["heads"], -1)) for t in (q, k, v))  # [B, N, h, d]
    attn = torch.einsum("bnhd,bmhd->bhnm", q, k).mul(q.shape[-1] ** -0.5).softmax(-1)
    out = torch.einsum("bhnm,bmhd->bnhd", attn, v).flatten(2)
    return F.linear(out, sd[prefix + "proj.weight"], sd[prefix + "proj.bias"])


def _official_block(sd, prefix, x, ctx=None):
    x = x + _official_attention(sd, prefix + "attn.", _ln(x, sd, prefix + "norm1"))
    if ctx is not None:
        queries, context = _ln(x, sd, prefix + "norm3"), _ln(ctx, sd, prefix + "norm4")
        x = x + _official_attention(sd, prefix + "c_attn.", queries, context)
    hidden = F.gelu(F.linear(_ln(x, sd, prefix + "norm2"), sd[prefix + "mlp.fc1.weight"], sd[prefix + "mlp.fc1.bias"]))
    return x + F.linear(hidden, sd[prefix + "mlp.fc2.weight"], sd[prefix + "mlp.fc2.bias"])


def official_forward(sd, images, idx_shuffle, mask_len):
    """modeling_pretrain_bootmae.py:forward (fea_list [0, depth - 1]): pixel image [B, 3, H, W], features [B, L, D]."""
    p, g, depth = TINY["patch"], TINY["grid"], TINY["depth"]
    x = F.conv2d(images, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=p)
    x = x.flatten(2).transpose(1, 2)  # [B, L, D]
    b, length, _ = x.shape
    idx = torch.cat([torch.zeros(b, 1, dtype=torch.long), idx_shuffle + 1], dim=1)  # class token first
    keep, hidden = idx[:, : 1 + length - mask_len], idx[:, 1 + length - mask_len :]
    x = torch.cat([sd["cls_token"].expand(b, -1, -1), x], 1) + sd["pos_embed"]
    x = x.gather(1, keep[..., None].expand(-1, -1, x.shape[-1]))
    feas = []
    for i in range(depth):
        x = _official_block(sd, f"blocks.{i}.", x)
        if i in (0, depth - 1):
            feas.append(x)
    x = _ln(x, sd, "norm")

    def decode(down, token, table, blocks, norm, fea):
        y = F.linear(x, sd[down + ".weight"], sd[down + ".bias"])
        pos = table.expand(b, -1, -1).gather(1, hidden[..., None].expand(-1, -1, y.shape[-1]))
        y = torch.cat([y, sd[token].expand(b, mask_len, -1) + pos], 1)
        y = y.gather(1, idx.argsort(1)[..., None].expand(-1, -1, y.shape[-1]))
        for i in range(TINY["decoder_depth"]):
            y = _official_block(sd, f"{blocks}.{i}.", y, fea)
        return _ln(y, sd, norm)[:, 1:]

    pix = decode("down", "mask_token", sd["de_pos_embed"], "decode_blocks", "decode_norm", feas[0])
    pix = F.conv_transpose2d(pix.transpose(1, 2).reshape(b, -1, g, g), sd["lm_head.proj.weight"],
                             sd["lm_head.proj.bias"], stride=p)
    feat = decode("down_1", "mask_token_1", sd["pos_embed"], "decode_blocks_1", "decode_norm_1", feas[1])
    return pix, F.linear(feat, sd["lm_head_1.weight"], sd["lm_head_1.bias"])


def converter_model() -> BootMAE:
    encoder = ViTEncoder(arch="vit_tiny_patch16_224", img_size=TINY["patch"] * TINY["grid"], patch_size=TINY["patch"],
                         embed_dim=TINY["embed_dim"], depth=TINY["depth"], num_heads=TINY["heads"],
                         sincos_layout="mocov3", init="bootmae")
    return BootMAE(encoder, masking=BlockMasking(8, 2, 8, total_masked=12),
                   pixel_decoder=dict(embed_dim=TINY["decode_dim"], num_heads=TINY["heads"]),
                   feature_decoder=dict(num_heads=TINY["heads"]))


def test_converter_loads_the_official_layout_strictly_and_reproduces_the_official_forward():
    model = converter_model().eval()
    official = official_state_dict(seed=0)
    converted = convert_state_dict("bootmae", official)
    model.load_state_dict(converted, strict=True)
    assert torch.allclose(model.encoder.vit.pos_embed, official_sincos(TINY["embed_dim"], TINY["grid"]))

    gen = torch.Generator().manual_seed(1)
    images = torch.randn(2, 3, 16, 16, generator=gen)
    idx_shuffle = torch.stack([torch.randperm(16, generator=gen) for _ in range(2)])  # visible first, 12 masked last
    mask = torch.zeros(2, 16, dtype=torch.bool).scatter_(1, idx_shuffle[:, 4:], True)
    with torch.no_grad():
        pixel_ref, feature_ref = official_forward(official, images, idx_shuffle, mask_len=12)
        latent, feats, restore_idx = model.encode(images, mask)
        pixel = unpatchify(model.pixel_decoder(latent, restore_idx, feats), TINY["patch"], (4, 4))
        feature = model.feature_decoder(latent, restore_idx, feats)
    assert torch.allclose(pixel, pixel_ref, atol=1e-5)
    assert torch.allclose(feature, feature_ref, atol=1e-5)
    ema = model.feature_target.ema.state_dict()
    assert all(torch.equal(v, ema[k]) for k, v in model.encoder.state_dict().items())


def test_converter_maps_the_official_ema_onto_the_momentum_target_and_rejects_foreign_files():
    model = converter_model()
    official, official_ema = official_state_dict(seed=0), official_state_dict(seed=5)
    model.load_state_dict(bootmae_to_mim_zoo(official, ema_state_dict=official_ema), strict=True)
    q_bias = official_ema["blocks.1.attn.q_bias"]
    expected = torch.cat([q_bias, torch.zeros_like(q_bias), official_ema["blocks.1.attn.v_bias"]])
    assert torch.equal(model.feature_target.ema.vit.blocks[1].attn.qkv.bias, expected)
    assert torch.equal(model.encoder.vit.cls_token, official["cls_token"])
    with pytest.raises(ValueError, match="sin-cos"):
        convert_state_dict("bootmae", official | {"de_pos_embed": torch.randn_like(official["de_pos_embed"])})
    with pytest.raises(ValueError, match="fine-tuned"):
        convert_state_dict("bootmae", official | {"blocks.0.gamma_1": torch.ones(TINY["embed_dim"])})
