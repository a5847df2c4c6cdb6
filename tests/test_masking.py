"""The masking contract, for every registered mask generator, and each strategy's own properties."""

import math
import random

import pytest
import torch

from mim_zoo.core.masking import BlockMasking, MixingMask, RandomMasking, beit_block_mask
from mim_zoo.core.tokens import mask_to_indices
from mim_zoo.registry import MASK_GENERATORS, UnknownPluginError, registered_names

# One example configuration per registered generator on a 14x14 grid (ViT-B/16 at 224).
# A generator registered without an entry here fails test_every_generator_has_an_example.
EXAMPLES = {
    "RandomMasking": dict(ratio=0.75),
    "BlockMasking": dict(num_masking_patches=120, total_masked=147),
    "MixingMask": dict(ratio=0.5),
    "AttentionMasking": dict(ratio=0.75, mode="sample"),
}
GRID = (14, 14)


def build(name: str):
    return MASK_GENERATORS.build(dict(type=name, **EXAMPLES[name]))


def context_for(name: str, batch: int) -> dict:
    """Data-dependent generators (attention-guided) take their context as keyword arguments."""
    gen = build(name)
    needs = gen.context_keys  # MaskGeneratorProtocol: the **context entries it reads
    g = torch.Generator().manual_seed(123)
    return {key: torch.rand(batch, GRID[0] * GRID[1], generator=g) for key in needs}


def test_every_generator_has_an_example():
    assert set(registered_names(MASK_GENERATORS)) <= set(EXAMPLES), "add an example for each new mask generator"


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_contract_shape_dtype_count(name):
    gen = build(name)
    mask = gen(8, GRID, generator=torch.Generator().manual_seed(0), **context_for(name, 8))
    assert mask.shape == (8, 196) and mask.dtype == torch.bool and mask.device.type == "cpu"
    expected = gen.num_masked(GRID)
    if expected is not None:
        assert mask.sum(dim=1).tolist() == [expected] * 8


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_contract_reproducible_under_seeded_generator(name):
    gen = build(name)
    ctx = context_for(name, 4)
    a = gen(4, GRID, generator=torch.Generator().manual_seed(7), **ctx)
    b = gen(4, GRID, generator=torch.Generator().manual_seed(7), **ctx)
    c = gen(4, GRID, generator=torch.Generator().manual_seed(8), **ctx)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_random_masking_matches_mae_count_and_is_uniform():
    gen = RandomMasking(0.75)
    assert gen.num_masked(GRID) == 196 - int(196 * 0.25) == 147
    mask = gen(4000, GRID, generator=torch.Generator().manual_seed(0))
    freq = mask.float().mean(dim=0)  # each position masked with probability 147/196
    assert torch.allclose(freq, torch.full_like(freq, 147 / 196), atol=0.03)
    assert len({tuple(row.tolist()) for row in mask[:50]}) == 50  # per-sample masks


def test_block_masking_is_bootmae_147_of_196():
    mask = BlockMasking()(256, GRID, generator=torch.Generator().manual_seed(0))
    assert (mask.sum(dim=1) == 147).all()


def _boundary(mask2d: torch.Tensor) -> int:
    """Number of adjacent (4-neighbour) patch pairs where one is masked and the other is not."""
    return int((mask2d[1:] != mask2d[:-1]).sum() + (mask2d[:, 1:] != mask2d[:, :-1]).sum())


def test_beit_blocks_are_compact_and_respect_the_budget():
    rng = random.Random(0)
    log_aspect = (math.log(0.3), math.log(1 / 0.3))
    blocks = [beit_block_mask(rng, GRID, 120, 16, 60, log_aspect) for _ in range(100)]
    counts = torch.tensor([int(b.sum()) for b in blocks])
    assert counts.max() <= 120 and counts.float().mean() > 115  # never above the target, nearly always at it
    random_masks = torch.rand(100, 196, generator=torch.Generator().manual_seed(0)).argsort(1) < 120
    block_boundary = sum(_boundary(b) for b in blocks) / 100
    random_boundary = sum(_boundary(m.view(GRID)) for m in random_masks) / 100  # ~173 at density 120/196
    assert block_boundary < 0.5 * random_boundary


def test_block_top_up_keeps_the_blocks():
    """Without the roll, every block-masked patch stays masked; the top-up adds random patches to 147."""
    gen = BlockMasking(max_roll=0)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    topped = gen(16, GRID, generator=g1)
    blocks = BlockMasking(total_masked=None, max_roll=0)(16, GRID, generator=g2)
    assert (topped | blocks).equal(topped)
    assert (topped.sum(1) == 147).all() and (blocks.sum(1) <= 120).all()


def test_mixing_mask_is_shared_and_exact():
    mask = MixingMask(0.5)(6, (7, 7), generator=torch.Generator().manual_seed(0))
    assert (mask == mask[0]).all()
    assert int(mask[0].sum()) == int(49 * 0.5) == 24


def test_mask_to_indices_round_trip():
    mask = RandomMasking(0.75)(3, (4, 4), generator=torch.Generator().manual_seed(0))
    keep, masked, restore = mask_to_indices(mask)
    assert keep.shape == (3, 4) and masked.shape == (3, 12)
    assert (~mask.gather(1, keep)).all() and mask.gather(1, masked).all()
    assert (keep.diff(dim=1) > 0).all()  # visible positions in ascending order
    order = torch.cat([keep, masked], dim=1)
    assert torch.equal(order.gather(1, restore), torch.arange(16).expand(3, 16))


def test_mask_to_indices_rejects_ragged_masks():
    with pytest.raises(ValueError, match="same number of tokens"):
        mask_to_indices(torch.tensor([[True, False], [True, True]]))
    with pytest.raises(ValueError, match="bool tensor"):
        mask_to_indices(torch.ones(2, 2))


@pytest.mark.parametrize("ratio", [0.0, 1.0, -0.5, 1.5])
def test_ratio_out_of_range_is_an_error(ratio):
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        RandomMasking(ratio)


def test_ratio_the_grid_cannot_honour_is_an_error():
    with pytest.raises(ValueError, match="no visible token"):
        RandomMasking(0.9).num_masked((2, 2))
    with pytest.raises(ValueError, match="no visible token"):
        BlockMasking(num_masking_patches=120, total_masked=147).num_masked((8, 8))


def test_unknown_generator_lists_the_registered_ones():
    with pytest.raises(UnknownPluginError) as err:
        MASK_GENERATORS.build(dict(type="RandomMask", ratio=0.5))
    message = str(err.value)
    assert "RandomMasking" in message and "BlockMasking" in message and "Did you mean 'RandomMasking'" in message
