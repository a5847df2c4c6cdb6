"""ViTEncoder: MAE's positional embedding and patch order, equivalence with timm, the MIM entry points, export."""

import math

import pytest
import timm
import torch
from torch.utils.checkpoint import checkpoint

from mim_zoo.core.encoders import vit as vit_module
from mim_zoo.core.masking import RandomMasking
from mim_zoo.core.tokens import mask_to_indices, patchify, sincos_pos_embed_2d, unpatchify
from mim_zoo.registry import MODELS


def test_sincos_hand_values():
    """D=8 -> D/4=2 frequencies w = [1, 1e-2]; first half encodes x, second half y; class row zero."""
    emb = sincos_pos_embed_2d(8, (2, 3))  # rows y in {0, 1}, columns x in {0, 1, 2}
    assert emb.shape == (1, 1 + 6, 8)
    assert torch.equal(emb[0, 0], torch.zeros(8))
    x, y = 2.0, 1.0  # raster index 1 * 3 + 2 = 5 -> row 1 + 5 = 6 with the class token
    w = [1.0, 1e-2]
    expected = [math.sin(x * w[0]), math.sin(x * w[1]), math.cos(x * w[0]), math.cos(x * w[1]),
                math.sin(y * w[0]), math.sin(y * w[1]), math.cos(y * w[0]), math.cos(y * w[1])]
    assert torch.allclose(emb[0, 6], torch.tensor(expected), atol=1e-6)


def test_patchify_order_is_mae_and_round_trips():
    imgs = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    x = patchify(imgs, 2)  # [2, 4, 12]
    # patch (row 0, col 1), element (p=1, q=0, c=2) == imgs[b, 2, 0*2+1, 1*2+0]
    assert x[1, 1, (1 * 2 + 0) * 3 + 2] == imgs[1, 2, 1, 2]
    assert torch.equal(unpatchify(x, 2, (2, 2)), imgs)
    with pytest.raises(ValueError, match="not divisible"):
        patchify(torch.zeros(1, 3, 5, 4), 2)


def test_adapter_equals_timm_and_exports_a_plain_timm_state_dict(tiny_vit_cfg, images):
    enc = MODELS.build(tiny_vit_cfg).eval()
    canon = enc.build_canonical().eval()
    missing, unexpected = canon.load_state_dict(enc.export_state_dict(), strict=True)
    assert not missing and not unexpected
    assert torch.allclose(canon.forward_features(images), enc(images), atol=1e-6)
    direct = timm.create_model(**enc.timm_create_kwargs())
    direct.load_state_dict(enc.export_state_dict(), strict=True)


def test_forward_visible_only_sees_the_kept_tokens(tiny_vit_cfg, images):
    enc = MODELS.build(tiny_vit_cfg).eval()
    mask = RandomMasking(0.75)(4, enc.grid_size, generator=torch.Generator().manual_seed(0))
    keep, _, _ = mask_to_indices(mask)
    latent, feats = enc.forward_visible(images, keep, return_blocks=(0, -1))
    assert latent.shape == (4, 1 + keep.shape[1], 64) and set(feats) == {0, -1}  # keyed as requested
    # pixels of masked patches do not influence the encoding
    hidden = images.clone()
    pix_mask = mask.view(4, 1, 8, 8).repeat_interleave(4, 2).repeat_interleave(4, 3).expand_as(images)
    hidden[pix_mask] = 100.0
    assert torch.allclose(enc.forward_visible(hidden, keep)[0], latent, atol=1e-6)
    # the last block's raw output, normed, is the latent
    assert torch.allclose(enc.vit.norm(feats[-1]), latent, atol=1e-6)


def test_forward_full_is_the_unmasked_encoder(tiny_vit_cfg, images):
    enc = MODELS.build(tiny_vit_cfg).eval()
    assert torch.allclose(enc.forward_full(images, block=-1, norm=True), enc(images)[:, 1:], atol=1e-6)
    raw0 = enc.forward_full(images, block=0)
    x = torch.cat([enc.vit.cls_token.expand(4, -1, -1), enc.vit.patch_embed(images)], 1) + enc.vit.pos_embed
    assert torch.allclose(raw0, enc.vit.blocks[0](x)[:, 1:], atol=1e-6)


def test_sincos_positions_are_fixed_and_learned_ones_train(tiny_vit_cfg):
    enc = MODELS.build(tiny_vit_cfg)
    assert not enc.vit.pos_embed.requires_grad
    assert torch.equal(enc.vit.pos_embed, sincos_pos_embed_2d(64, (8, 8)))
    learned = MODELS.build(dict(tiny_vit_cfg, pos_embed="learned"))
    assert learned.vit.pos_embed.requires_grad


def test_mae_init(tiny_vit_cfg):
    enc = MODELS.build(tiny_vit_cfg)
    qkv = enc.vit.blocks[0].attn.qkv
    bound = math.sqrt(6 / (qkv.in_features + qkv.out_features))  # Xavier-uniform over the whole qkv matrix
    assert qkv.weight.abs().max() <= bound and qkv.weight.abs().max() > 0.9 * bound
    assert torch.equal(qkv.bias, torch.zeros_like(qkv.bias))
    assert torch.equal(enc.vit.norm.weight, torch.ones(64))
    proj = enc.vit.patch_embed.proj.weight.view(64, -1)
    assert proj.abs().max() <= math.sqrt(6 / sum(proj.shape))


def test_wrong_image_size_is_a_clear_error(tiny_vit_cfg):
    enc = MODELS.build(tiny_vit_cfg)
    with pytest.raises(ValueError, match="built for 32x32 images"):
        enc(torch.zeros(1, 3, 48, 48))


def test_gradient_checkpointing_gives_the_same_gradients(tiny_vit_cfg, images):
    plain = MODELS.build(tiny_vit_cfg).train()
    ckpt = MODELS.build(dict(tiny_vit_cfg, grad_checkpointing=True)).train()
    ckpt.load_state_dict(plain.state_dict())
    for model in (plain, ckpt):
        model(images).pow(2).mean().backward()
    for (name, a), (_, b) in zip(plain.named_parameters(), ckpt.named_parameters(), strict=True):
        if a.grad is not None:
            assert torch.allclose(a.grad, b.grad, atol=1e-6), name


def test_forward_masked_is_simmims_encoder_on_the_plain_forward_path(tiny_vit_cfg, images):
    """Mask tokens replace the masked embeddings before positions (SimMIM); then exactly the plain forward's path,
    norm_pre included (a pre-norm ViT such as CLIP's has a LayerNorm there)."""
    enc = MODELS.build(dict(tiny_vit_cfg, pre_norm=True)).eval()
    assert isinstance(enc.vit.norm_pre, torch.nn.LayerNorm)
    token = torch.randn(1, 1, 64, generator=torch.Generator().manual_seed(1))
    nothing = torch.zeros(4, 64, dtype=torch.bool)
    assert torch.allclose(enc.forward_masked(images, nothing, token), enc(images), atol=1e-6)
    mask = RandomMasking(0.5)(4, enc.grid_size, generator=torch.Generator().manual_seed(2))
    out = enc.forward_masked(images, mask, token)  # [B, 1 + L, D]
    x = enc.vit.patch_embed(images)
    x[mask] = token[0, 0]
    x = torch.cat([enc.vit.cls_token.expand(4, -1, -1), x], 1) + enc.vit.pos_embed
    x = enc.vit.norm_pre(x)
    for blk in enc.vit.blocks:
        x = blk(x)
    assert out.shape == (4, 65, 64) and torch.allclose(out, enc.vit.norm(x), atol=1e-6)
    hidden = images.clone()
    hidden[mask.view(4, 1, 8, 8).repeat_interleave(4, 2).repeat_interleave(4, 3).expand_as(images)] = 100.0
    assert torch.allclose(enc.forward_masked(hidden, mask, token), out, atol=1e-6)  # masked pixels do not reach it
    with pytest.raises(ValueError, match=r"a token mask must be \[B, L\] = \[4, 64\], got \[4, 63\]"):
        enc.forward_masked(images, mask[:, 1:], token)


def test_forward_masked_checkpoints_like_the_plain_forward(tiny_vit_cfg, images, monkeypatch):
    plain = MODELS.build(tiny_vit_cfg).train()
    ckpt = MODELS.build(dict(tiny_vit_cfg, grad_checkpointing=True)).train()
    ckpt.load_state_dict(plain.state_dict())
    recomputed = []
    monkeypatch.setattr(vit_module, "checkpoint", lambda fn, *args, **kw: recomputed.append(fn) or checkpoint(
        fn, *args, **kw))
    mask = RandomMasking(0.5)(4, plain.grid_size, generator=torch.Generator().manual_seed(3))
    tokens = [torch.nn.Parameter(torch.full((1, 1, 64), 0.5)) for _ in range(2)]
    for model, token in zip((plain, ckpt), tokens, strict=True):
        model.forward_masked(images, mask, token).pow(2).mean().backward()
    assert recomputed == list(ckpt.vit.blocks)  # every block of the checkpointed encoder, none of the plain one
    assert torch.allclose(tokens[0].grad, tokens[1].grad, atol=1e-6) and tokens[0].grad.abs().sum() > 0
    for (name, a), (_, b) in zip(plain.named_parameters(), ckpt.named_parameters(), strict=True):
        if a.grad is not None:
            assert torch.allclose(a.grad, b.grad, atol=1e-6), name
