"""MAE against the official formulation (facebookresearch/mae models_mae.py)."""

import pytest
import torch

from mim_zoo.core.algorithms import MAE
from mim_zoo.core.checkpoints import convert_state_dict
from mim_zoo.core.masking import RandomMasking
from mim_zoo.core.tokens import gather_tokens, mask_to_indices, sincos_pos_embed_2d


@pytest.fixture
def mae(tiny_vit_cfg):
    torch.manual_seed(0)
    return MAE(encoder=tiny_vit_cfg, decoder=dict(embed_dim=32, depth=1, num_heads=4))


def reference_mae_loss(model: MAE, images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """MAE's forward written out as in models_mae.py (shuffle-based), with our modules' weights."""
    enc, dec, vit = model.encoder, model.decoder, model.encoder.vit
    keep, _, restore = mask_to_indices(mask)
    x = vit.patch_embed(images) + vit.pos_embed[:, 1:]
    x = gather_tokens(x, keep)
    x = torch.cat([(vit.cls_token + vit.pos_embed[:, :1]).expand(len(x), -1, -1), x], 1)
    for blk in vit.blocks:
        x = blk(x)
    x = dec.embed(vit.norm(x))
    tokens = torch.cat([x[:, 1:], dec.mask_token.repeat(len(x), mask.shape[1] - keep.shape[1], 1)], 1)
    tokens = torch.gather(tokens, 1, restore.unsqueeze(-1).repeat(1, 1, x.shape[2]))
    x = torch.cat([x[:, :1], tokens], 1) + dec.pos_embed
    for blk in dec.blocks:
        x = blk(x)
    pred = dec.pred(dec.norm(x))[:, 1:]
    target = enc.patchify(images)
    mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
    target = (target - mean) / (var + 1.0e-6) ** 0.5
    loss = ((pred - target) ** 2).mean(-1)
    return (loss * mask).sum() / mask.sum()


def test_loss_equals_the_official_formula(mae, images):
    mask = RandomMasking(0.75)(4, (8, 8), generator=torch.Generator().manual_seed(0))
    out = mae(images, mode="loss", mask=mask)
    assert out["loss_rec"].item() == pytest.approx(reference_mae_loss(mae, images, mask).item(), rel=1e-5)
    assert out["stat_mask_ratio"].item() == pytest.approx(0.75)


def test_explicit_mask_makes_runs_comparable(mae, images):
    mask = RandomMasking(0.75)(4, (8, 8), generator=torch.Generator().manual_seed(1))
    assert torch.equal(mae(images, mask=mask)["loss_rec"], mae(images, mask=mask)["loss_rec"])
    with pytest.raises(ValueError, match=r"\[B, L\] = \[4, 64\]"):
        mae(images, mask=mask[:, :10])


def test_masked_pixels_do_not_leak_into_the_encoder(mae, images):
    mask = RandomMasking(0.75)(4, (8, 8), generator=torch.Generator().manual_seed(2))
    pred = mae.predict_tokens(images, mask)
    hidden = images.clone()
    pixel_mask = mask.view(4, 1, 8, 8).repeat_interleave(4, 2).repeat_interleave(4, 3).expand_as(images)
    hidden[pixel_mask] = 0.0
    assert torch.allclose(mae.predict_tokens(hidden, mask), pred, atol=1e-5)


def test_vit_b_matches_the_official_size():
    """MAE ViT-B/16 with the 8x512 decoder: 111.91 M parameters counting the two fixed sin-cos tables
    (mmpretrain configs/mae/metafile.yml; the architecture of facebookresearch/mae mae_vit_base_patch16_dec512d8b)."""
    model = MAE(encoder=dict(type="ViTEncoder", arch="vit_base_patch16_224"))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    fixed = model.encoder.vit.pos_embed.numel() + model.decoder.pos_embed.numel()  # 197*768 + 197*512
    assert (trainable + fixed) / 1e6 == pytest.approx(111.91, abs=0.005)
    assert model.masking.num_masked(model.encoder.grid_size) == 147


def official_state_dict(model: MAE) -> dict:
    """Our weights under the official MaskedAutoencoderViT names (models_mae.py), with decoder_pos_embed."""
    renames = [("encoder.vit.", ""), ("decoder.mask_token", "mask_token"), ("decoder.embed.", "decoder_embed."),
               ("decoder.blocks.", "decoder_blocks."), ("decoder.norm.", "decoder_norm."),
               ("decoder.pred.", "decoder_pred.")]
    out = {}
    for key, value in model.state_dict().items():
        for old, new in renames:
            if key.startswith(old):
                out[new + key[len(old):]] = value.clone()
                break
    out["decoder_pos_embed"] = sincos_pos_embed_2d(32, (8, 8))
    return out


def test_official_checkpoint_layout_converts_and_loads_strictly(mae, images, tiny_vit_cfg):
    official = official_state_dict(mae)
    expected = {"cls_token", "pos_embed", "mask_token", "decoder_pos_embed", "patch_embed.proj.weight",
                "blocks.0.attn.qkv.weight", "norm.weight", "decoder_embed.weight", "decoder_blocks.0.mlp.fc2.bias",
                "decoder_norm.bias", "decoder_pred.weight"}
    assert expected <= set(official)  # the official key names (models_mae.py)
    fresh = MAE(encoder=tiny_vit_cfg, decoder=dict(embed_dim=32, depth=1, num_heads=4))
    fresh.load_state_dict(convert_state_dict("mae", official), strict=True)
    mask = RandomMasking(0.75)(4, (8, 8), generator=torch.Generator().manual_seed(3))
    assert torch.equal(fresh(images, mask=mask)["loss_rec"], mae(images, mask=mask)["loss_rec"])


def test_converter_refuses_what_it_does_not_know(mae):
    official = official_state_dict(mae)
    with pytest.raises(KeyError, match="unexpected key 'extra.weight'"):
        convert_state_dict("mae", dict(official, **{"extra.weight": torch.zeros(1)}))
    with pytest.raises(ValueError, match="not MAE's fixed sin-cos"):
        convert_state_dict("mae", dict(official, decoder_pos_embed=torch.rand(1, 65, 32)))
    with pytest.raises(KeyError, match="available: .*mae"):
        convert_state_dict("nope", official)


def test_reconstruct_returns_pixels(mae, images):
    mae.eval()
    out = mae(images, mode="predict")
    assert out["reconstruction"].shape == images.shape and out["mask"].shape == (4, 64)
