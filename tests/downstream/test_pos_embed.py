"""mim_zoo.core.downstream.pos_embed: resizing is exact at the same size and agrees with mmseg/mmpretrain/ViTDet."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mim_zoo.core.downstream.pos_embed import resize_pos_embed, square_grid
from mim_zoo.core.tokens import sincos_pos_embed_2d


def test_same_size_is_bit_exact_and_a_copy():
    pos = torch.randn(1, 1 + 14 * 14, 32)
    out = resize_pos_embed(pos, (14, 14), (14, 14))
    assert torch.equal(out, pos) and out.data_ptr() != pos.data_ptr()


def test_prefix_rows_are_kept_and_the_grid_is_interpolated():
    pos = torch.randn(1, 1 + 4 * 6, 8)
    out = resize_pos_embed(pos, (4, 6), (8, 12))
    assert out.shape == (1, 1 + 8 * 12, 8)
    assert torch.equal(out[:, :1], pos[:, :1])
    grid = pos[:, 1:].reshape(1, 4, 6, 8).permute(0, 3, 1, 2)
    expected = F.interpolate(grid, size=(8, 12), mode="bicubic", align_corners=False)
    assert torch.allclose(out[:, 1:], expected.permute(0, 2, 3, 1).reshape(1, 96, 8))


def test_a_constant_table_stays_constant_and_no_prefix_works():
    pos = torch.full((1, 7 * 7, 4), 0.25)
    assert torch.allclose(resize_pos_embed(pos, (7, 7), (16, 16), num_prefix_tokens=0), torch.tensor(0.25))


def test_agrees_with_mmseg_and_mmpretrain():
    from mmpretrain.models.utils import resize_pos_embed as mmpretrain_resize

    from mim_zoo.engine.env import require_mmcv_ops
    require_mmcv_ops()
    from mmseg.models.backbones import MAE

    pos = sincos_pos_embed_2d(64, (8, 8)) + 0.01 * torch.randn(1, 65, 64)
    ours = resize_pos_embed(pos, (8, 8), (16, 16))
    assert torch.allclose(ours, mmpretrain_resize(pos, (8, 8), (16, 16), "bicubic", 1), atol=1e-6)
    mae = MAE(img_size=64, patch_size=4, embed_dims=64, num_layers=1, num_heads=4)
    assert torch.allclose(ours, mae.resize_abs_pos_embed({"pos_embed": pos})["pos_embed"], atol=1e-6)


def test_bad_shapes_are_errors():
    with pytest.raises(ValueError, match="not"):
        resize_pos_embed(torch.zeros(1, 50, 8), (7, 7), (8, 8), num_prefix_tokens=0)
    assert square_grid(196) == (14, 14)
    with pytest.raises(ValueError, match="square"):
        square_grid(50)
