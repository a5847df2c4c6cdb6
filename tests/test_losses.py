import itertools

import pytest
import torch

from mim_zoo.core.losses import masked_mse, per_token_mse, weighted_mse


def test_masked_mse_matches_hand_computation():
    pred = torch.tensor([[[1.0, 3.0], [0.0, 0.0], [2.0, 2.0]]])  # [1, 3, 2]
    target = torch.tensor([[[0.0, 1.0], [5.0, 5.0], [2.0, 4.0]]])
    mask = torch.tensor([[True, False, True]])
    # token 0: ((1-0)^2 + (3-1)^2) / 2 = 2.5; token 2: (0 + 4) / 2 = 2.0; mean over the 2 masked tokens = 2.25
    assert masked_mse(pred, target, mask).item() == pytest.approx(2.25)


def test_masked_mse_ignores_visible_tokens():
    g = torch.Generator().manual_seed(0)
    pred, target = torch.randn(2, 5, 3, generator=g), torch.randn(2, 5, 3, generator=g)
    mask = torch.tensor([[True, False, True, False, False], [False, True, True, True, False]])
    changed = pred.clone()
    changed[~mask] += 100.0
    assert torch.equal(masked_mse(pred, target, mask), masked_mse(changed, target, mask))


def test_weighted_mse_is_bootmae_formula():
    """mean(w * (p - t)^2) / mean(m) over all elements equals sum(w * mse_token) / sum(m)."""
    g = torch.Generator().manual_seed(1)
    pred, target = torch.randn(2, 6, 4, generator=g), torch.randn(2, 6, 4, generator=g)
    m = (torch.rand(2, 6, generator=g) > 0.4).float()
    w = m * (1 + torch.rand(2, 6, generator=g))
    reference = (w[..., None] * (pred - target) ** 2).mean() / m.mean()
    assert weighted_mse(pred, target, w, m).item() == pytest.approx(reference.item(), rel=1e-6)


def test_per_token_mse_rejects_shape_mismatch():
    with pytest.raises(ValueError, match="differ in shape"):
        per_token_mse(torch.zeros(1, 2, 3), torch.zeros(1, 2, 4))


def test_masked_mse_decreases_under_gradient_descent():
    g = torch.Generator().manual_seed(2)
    pred = torch.randn(2, 8, 4, generator=g, requires_grad=True)
    target = torch.randn(2, 8, 4, generator=g)
    mask = torch.rand(2, 8, generator=g) > 0.5
    opt = torch.optim.SGD([pred], lr=0.5)
    losses = []
    for _ in range(5):
        loss = masked_mse(pred, target, mask)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(b < a for a, b in itertools.pairwise(losses))
