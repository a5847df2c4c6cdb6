"""Losses as pure functions of tensors and masks (STYLE R6). Shapes: ``B`` batch, ``L`` tokens, ``D`` channels."""

from __future__ import annotations

from torch import Tensor


def per_token_mse(pred: Tensor, target: Tensor) -> Tensor:
    """``[B, L, D], [B, L, D] -> [B, L]``: squared error averaged over channels (float32)."""
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    return (pred.float() - target.float()).pow(2).mean(dim=-1)


def masked_mse(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """MSE over the masked tokens only (facebookresearch/mae ``models_mae.py:forward_loss``).

    Args:
        pred: ``[B, L, D]`` predictions.
        target: ``[B, L, D]`` targets.
        mask: ``[B, L]``, True/1 where the loss applies.

    Returns:
        Scalar ``sum_{b,l} m_bl * mean_d (pred - target)^2 / sum_{b,l} m_bl``.
    """
    return weighted_mse(pred, target, mask.float(), mask.float())


def weighted_mse(pred: Tensor, target: Tensor, weight: Tensor, normalizer: Tensor) -> Tensor:
    """Per-token weighted MSE, normalised by the sum of ``normalizer``.

    BootMAE's centre-weighted loss (LightDXY/BootMAE ``run_pretraining.py``:
    ``mean(w * (p - t)^2) / mean(loss_mask)``) is this with ``weight = w`` and ``normalizer = loss_mask``.

    Args:
        pred, target: ``[B, L, D]``.
        weight: ``[B, L]`` per-token weights.
        normalizer: ``[B, L]``; the loss is divided by its sum.

    Returns:
        Scalar ``sum(weight * per_token_mse) / sum(normalizer)``.
    """
    return (per_token_mse(pred, target) * weight.float()).sum() / normalizer.float().sum()
