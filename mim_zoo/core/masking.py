"""Mask generators: one contract for every masking strategy (``MaskGeneratorProtocol`` in
:mod:`mim_zoo.core.contracts`)::

    generator(batch_size, grid_size, *, device="cpu", generator=None, **context) -> BoolTensor[B, L]

``L = grid_size[0] * grid_size[1]`` in raster order and ``True`` means *masked* (hidden from the encoder, or for
mixing: taken from the partner image). Given a seeded ``torch.Generator`` the output is reproducible; without one
the global torch RNG is used. Every random number is drawn on the CPU, from a CPU generator (another device's is
refused), so a seed gives the same mask on every device; the mask is returned on ``device`` (the images' device, in
:meth:`~mim_zoo.core.algorithms.base.BaseMIM.draw_mask`). ``**context`` carries the per-batch inputs a
data-dependent strategy names in ``context_keys`` (e.g. teacher attention), supplied by the algorithm's
``mask_context``; the others declare none and ignore it.

Every algorithm also accepts an explicit mask, so two algorithms (or two implementations) can be compared on the
same mask; :func:`mask_to_indices` turns any mask with a constant count per row into gather indices.
"""

from __future__ import annotations

import math
import random
from abc import ABC, abstractmethod

import torch
from torch import Tensor

from .registry import MASK_GENERATORS, InvalidValueError

GridSize = tuple[int, int]


class MaskGenerator(ABC):
    """Base class: subclasses implement :meth:`generate`, drawing on the CPU (and name the ``**context`` they read)."""

    context_keys: tuple[str, ...] = ()  # per-batch inputs read from ``**context``; none for data-independent ones

    def __call__(
        self,
        batch_size: int,
        grid_size: GridSize,
        *,
        device: torch.device | str = "cpu",
        generator: torch.Generator | None = None,
        **context: object,
    ) -> Tensor:
        if generator is not None and generator.device.type != "cpu":
            raise ValueError(
                f"{type(self).__name__} draws its masks on the CPU (the same masks on every device for a seed) and "
                f"takes a CPU torch.Generator, got one on {generator.device}; pass torch.Generator().manual_seed(s) "
                "(the mask is returned on `device`)"
            )
        mask = self.generate(batch_size, tuple(grid_size), generator, **context)
        return mask.to(device=device, dtype=torch.bool)

    @abstractmethod
    def generate(self, batch_size: int, grid_size: GridSize, generator: torch.Generator | None,
                 **context: object) -> Tensor:
        """``[B, L]`` bool mask, its random numbers drawn on the CPU from ``generator`` (the CPU, or the device of a
        ``**context`` tensor it was computed from)."""

    def num_masked(self, grid_size: GridSize) -> int | None:
        """Masked tokens per sample when the strategy fixes it exactly, else ``None``."""
        return None


def _check_ratio(ratio: float, name: str = "ratio") -> None:
    if not 0.0 < ratio < 1.0:
        raise InvalidValueError(f"a mask {name} must lie strictly between 0 and 1, got {ratio}", name)


@MASK_GENERATORS.register_module()
class RandomMasking(MaskGenerator):
    """MAE's per-sample uniform random masking (facebookresearch/mae ``models_mae.py:random_masking``).

    Exactly ``L - int(L * (1 - ratio))`` tokens are masked per sample, as in the official code (49 of 196 kept
    at ratio 0.75).
    """

    def __init__(self, ratio: float = 0.75) -> None:
        _check_ratio(ratio)
        self.ratio = ratio

    def num_masked(self, grid_size: GridSize) -> int:
        num_tokens = grid_size[0] * grid_size[1]
        num_keep = int(num_tokens * (1 - self.ratio))
        if num_keep < 1:
            raise InvalidValueError(
                f"mask ratio {self.ratio} leaves no visible token on a {grid_size[0]}x{grid_size[1]} grid; "
                "lower the ratio or use a larger image / smaller patch", "ratio"
            )
        return num_tokens - num_keep

    def generate(self, batch_size: int, grid_size: GridSize, generator: torch.Generator | None,
                 **context: object) -> Tensor:
        num_tokens = grid_size[0] * grid_size[1]
        num_masked = self.num_masked(grid_size)
        noise = torch.rand(batch_size, num_tokens, generator=generator)  # [B, L]
        ranks = noise.argsort(dim=1).argsort(dim=1)  # rank of each token's noise
        return ranks >= num_tokens - num_masked  # the largest-noise tokens are masked


def _draw_seed(generator: torch.Generator | None) -> int:
    return int(torch.randint(0, 2**62, (1,), generator=generator))


def beit_block_mask(
    rng: random.Random,
    grid_size: GridSize,
    num_masking_patches: int,
    min_num_patches: int,
    max_num_patches: int,
    log_aspect_ratio: tuple[float, float],
) -> Tensor:
    """One BEiT block-wise mask ``[H, W]`` (bool) with at most ``num_masking_patches`` masked patches.

    The algorithm of BEiT's ``MaskingGenerator`` (microsoft/unilm beit/masking_generator.py, as used by
    LightDXY/BootMAE ``masking_generator.py``): place random rectangles of area in [min, max] patches and aspect in
    ``exp(log_aspect_ratio)`` until the count is reached; a rectangle is accepted only if it adds between 1 and the
    remaining budget of new patches. Written anew; BootMAE retries until a block lands (``while True``), so do we,
    with a bounded number of tries that can only be exhausted on degenerate grids.
    """
    height, width = grid_size
    mask = torch.zeros(height, width, dtype=torch.bool)
    count = 0
    while count < num_masking_patches:
        budget = min(num_masking_patches - count, max_num_patches)
        added = 0
        for _ in range(1000):
            area = rng.uniform(min_num_patches, budget)
            aspect = math.exp(rng.uniform(*log_aspect_ratio))
            h = int(round(math.sqrt(area * aspect)))
            w = int(round(math.sqrt(area / aspect)))
            if not (w < width and h < height):
                continue
            top, left = rng.randint(0, height - h), rng.randint(0, width - w)
            block = mask[top : top + h, left : left + w]
            new = h * w - int(block.sum())
            if 0 < new <= budget:
                block.fill_(True)
                added = new
                break
        if added == 0:  # no rectangle fits the remaining budget
            break
        count += added
    return mask


@MASK_GENERATORS.register_module()
class BlockMasking(MaskGenerator):
    """BEiT block-wise masking, optionally topped up with random patches to an exact count (BootMAE).

    BootMAE (LightDXY/BootMAE ``datasets.py``, ``utils.py:mask_to_index``) draws a block mask of
    ``num_masking_patches=120`` (blocks of 16-60 patches, aspect 0.3-3.3), then orders the patches
    "unmasked first (random order), block-masked last (random order)", rolls that order by a random 0-3 positions
    (one draw per batch) and masks the last ``total_masked=147`` of 196. Net: the block patches, minus up to 3 that
    the roll makes visible, plus random patches up to exactly 147.

    Args:
        num_masking_patches: patches the block stage aims for (BEiT/BootMAE: 120 of 196).
        min_num_patches: smallest block area (BootMAE ``--min_mask_patches_per_block`` 16).
        max_num_patches: largest block area (BootMAE ``--max_mask_patches_per_block`` 60); ``None`` = no cap.
        min_aspect: smallest block aspect ratio; the largest is ``1 / min_aspect`` (BEiT 0.3).
        total_masked: exact masked count after the random top-up (BootMAE ``--mask_num`` 147); ``None`` keeps the
            pure block mask (its count varies per sample).
        max_roll: the random roll of BootMAE's ``mask_to_index`` (``random.randint(0, 3)``); 0 disables it.
    """

    def __init__(
        self,
        num_masking_patches: int = 120,
        min_num_patches: int = 16,
        max_num_patches: int | None = 60,
        min_aspect: float = 0.3,
        total_masked: int | None = 147,
        max_roll: int = 3,
    ) -> None:
        if total_masked is not None and total_masked < 1:
            raise InvalidValueError(f"must be positive, got {total_masked}", "total_masked")
        self.num_masking_patches = num_masking_patches
        self.min_num_patches = min_num_patches
        self.max_num_patches = num_masking_patches if max_num_patches is None else max_num_patches
        self.log_aspect_ratio = (math.log(min_aspect), math.log(1 / min_aspect))
        self.total_masked = total_masked
        self.max_roll = max_roll

    def num_masked(self, grid_size: GridSize) -> int | None:
        num_tokens = grid_size[0] * grid_size[1]
        for name, count in (("num_masking_patches", self.num_masking_patches), ("total_masked", self.total_masked)):
            if count is not None and count >= num_tokens:
                raise InvalidValueError(
                    f"BlockMasking {name}={count} leaves no visible token on a {grid_size[0]}x{grid_size[1]} grid "
                    f"({num_tokens} patches); scale it with the grid (BootMAE: 120 and 147 of 196)", name
                )
        return self.total_masked

    def generate(self, batch_size: int, grid_size: GridSize, generator: torch.Generator | None,
                 **context: object) -> Tensor:
        self.num_masked(grid_size)
        rng = random.Random(_draw_seed(generator))
        blocks = torch.stack([
            beit_block_mask(rng, grid_size, self.num_masking_patches, self.min_num_patches,
                            self.max_num_patches, self.log_aspect_ratio).flatten()
            for _ in range(batch_size)
        ])  # [B, L]
        if self.total_masked is None:
            return blocks
        # unmasked first, block-masked last, each group in random order (score = (1 - m) + U(0, 1), descending)
        score = (~blocks).float() + torch.rand(blocks.shape, generator=generator)
        order = score.argsort(dim=1, descending=True)  # [B, L]
        order = order.roll(rng.randint(0, self.max_roll), dims=1)  # one roll per batch, as in BootMAE
        num_tokens = blocks.shape[1]
        mask = torch.zeros_like(blocks)
        mask.scatter_(1, order[:, num_tokens - self.total_masked :], True)
        return mask


@MASK_GENERATORS.register_module()
class MixingMask(MaskGenerator):
    """MixMIM's mixing mask: one random mask per batch, shared by every sample (Sense-X/MixMIM@2b2f5a9
    ``models_mixmim.py:MixMIM.random_masking``).

    Drawn on the encoder's coarsest grid (7x7 at stride 32 for Swin-B at 224); ``True`` marks the tokens that sample
    ``i`` takes from its batch mirror ``B - 1 - i``. The official code masks the ``int(L * r)`` tokens with the
    smallest noise, ``r = ratio + U(0, range_ratio)`` drawn once per batch (``range_mask_ratio``, default 0); every
    row is identical.

    Args:
        ratio: base mixing ratio (MixMIM: 0.5, i.e. 24 of 49 tokens from the partner).
        range_ratio: width of the uniform jitter added to ``ratio`` per batch (official ``range_mask_ratio``,
            default 0). The official code draws it with Python's ``random``; here it comes from the torch generator.
    """

    def __init__(self, ratio: float = 0.5, range_ratio: float = 0.0) -> None:
        _check_ratio(ratio)
        if range_ratio < 0 or ratio + range_ratio >= 1:
            raise InvalidValueError(f"must be >= 0 with ratio + range_ratio < 1, got {ratio} + {range_ratio}",
                                    "range_ratio")
        self.ratio = ratio
        self.range_ratio = range_ratio

    def _count(self, num_tokens: int, ratio: float) -> int:
        count = int(num_tokens * ratio)
        if count < 1:
            raise InvalidValueError(
                f"mixing ratio {ratio} takes no token from the partner on a grid of {num_tokens} tokens; raise the "
                "ratio or use a larger output grid", "ratio"
            )
        return count

    def num_masked(self, grid_size: GridSize) -> int | None:
        num_tokens = grid_size[0] * grid_size[1]
        count = self._count(num_tokens, self.ratio)
        return count if self.range_ratio == 0 else None

    def generate(self, batch_size: int, grid_size: GridSize, generator: torch.Generator | None,
                 **context: object) -> Tensor:
        num_tokens = grid_size[0] * grid_size[1]
        ratio = self.ratio
        if self.range_ratio > 0:
            ratio += self.range_ratio * float(torch.rand((), generator=generator))
        noise = torch.rand(num_tokens, generator=generator)  # one draw for the whole batch
        row = torch.zeros(num_tokens, dtype=torch.bool)
        row[noise.argsort()[: self._count(num_tokens, ratio)]] = True  # the smallest noise is taken from the partner
        return row.expand(batch_size, num_tokens).clone()


@MASK_GENERATORS.register_module()
class AttentionMasking(RandomMasking):
    """Attention-guided masking: the tokens a teacher attends to most tend to stay visible.

    Needs ``attention=[B, L]`` in the masking ``**context``: a non-negative importance per token, e.g. a teacher's
    [CLS] -> patch attention of its last block, averaged over heads (the algorithm computes and passes it). Exactly
    ``L - int(L * (1 - ratio))`` tokens are masked per sample (the count rule it inherits from :class:`RandomMasking`).

    * ``mode="sample"`` (default): MILAN's attention masking (mmpretrain ``models/selfsup/milan.py:attention_masking``:
      ``torch.multinomial(importance, L, replacement=False)``, the first ``K`` drawn stay visible): ``K`` tokens drawn
      without replacement with probability proportional to ``attention ** (1 / temperature)``. Implemented as the
      Gumbel-top-k trick (Kool et al., ICML 2019), which has exactly that distribution and takes a seeded
      ``torch.Generator``. A large temperature approaches random masking.
    * ``mode="topk"``: the ``K`` most-attended tokens stay visible, deterministically (ties: lower index first).

    MR-MAE's "focused mimicking" selects the visible tokens from the teacher's [CLS] attention, but the exact rule
    is not public (no code was released); both rules here are documented, configurable choices.

    Args:
        ratio: fraction of tokens masked (MAE / MR-MAE: 0.75).
        mode: ``"sample"`` or ``"topk"``.
        temperature: sharpness of ``"sample"`` (1 = proportional to the attention, as MILAN).
    """

    context_keys = ("attention",)  # supplied by the algorithm's mask_context (MRMAE with focus_teacher)

    def __init__(self, ratio: float = 0.75, mode: str = "sample", temperature: float = 1.0) -> None:
        super().__init__(ratio)
        if mode not in ("sample", "topk"):
            raise InvalidValueError(f"AttentionMasking mode must be 'sample' or 'topk', got {mode!r}", "mode")
        if temperature <= 0:
            raise InvalidValueError(f"AttentionMasking temperature must be positive, got {temperature}", "temperature")
        self.mode, self.temperature = mode, temperature

    def generate(self, batch_size: int, grid_size: GridSize, generator: torch.Generator | None,
                 **context: object) -> Tensor:
        num_tokens = grid_size[0] * grid_size[1]
        attention = context.get("attention")
        if not isinstance(attention, Tensor) or tuple(attention.shape) != (batch_size, num_tokens):
            got = tuple(attention.shape) if isinstance(attention, Tensor) else type(attention).__name__
            raise ValueError(
                f"AttentionMasking needs attention=[B, L] = [{batch_size}, {num_tokens}] in its context, got {got}; "
                "use it in an algorithm that passes teacher attention (e.g. MRMAE with focus_teacher=...)"
            )
        scores = attention.detach().float()  # [B, L], ranked where the attention is (no copy to the host)
        if self.mode == "sample":
            uniform = torch.rand(scores.shape, generator=generator).clamp_(min=1e-20)  # on the CPU, then moved
            gumbel = -torch.log(-torch.log(uniform)).to(scores.device)
            scores = scores.clamp(min=1e-20).log() / self.temperature + gumbel  # perturbed log-weights
        order = scores.argsort(dim=1, descending=True, stable=True)  # [B, L] most important first
        num_keep = num_tokens - self.num_masked(grid_size)
        mask = torch.ones(batch_size, num_tokens, dtype=torch.bool, device=scores.device)
        mask.scatter_(1, order[:, :num_keep], False)
        return mask


