"""Frozen-feature evaluation: the same linear probe and k-NN classifier for every method.

* Features: the encoder's final (normed) tokens, prefix tokens dropped, averaged over tokens (global average
  pooling, as MAE/BootMAE fine-tuning and MixMIM do; it also fits encoders without a class token).
* Linear probe: features standardised with the training split's mean and std (MAE's linear probe puts a
  ``BatchNorm1d(affine=False)`` before its head, facebookresearch/mae ``main_linprobe.py``), then multinomial
  logistic regression fitted by full-batch L-BFGS. The L2 weight is chosen from ``weight_decays`` on a held-out
  fifth of the training split, then the probe is refitted on the whole split. Deterministic.
* k-NN: cosine similarity of L2-normalised features, ``k = 20`` neighbours voting with weights
  ``exp(sim / 0.07)`` (the weighted k-NN of DINO, facebookresearch/dino ``eval_knn.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

if TYPE_CHECKING:  # the protocol types the argument; importing mim_zoo here would load it before threads are set
    from mim_zoo.core.contracts import EncoderProtocol


def pool(encoder: EncoderProtocol, tokens: Tensor) -> Tensor:
    """An encoder's output -> ``[B, D]``: the mean of a ``[B, C, H, W]`` feature map, or of the final tokens of
    ``[B, P + L, D]`` without the ``P = encoder.num_prefix_tokens`` prefix (class) tokens."""
    if tokens.dim() == 4:
        return tokens.float().mean(dim=(2, 3))
    return tokens[:, encoder.num_prefix_tokens :].float().mean(dim=1)


@torch.no_grad()
def extract_features(encoder: EncoderProtocol, images: Tensor, batch_size: int = 250) -> Tensor:
    """``[N, 3, H, W]`` normalised images -> ``[N, D]`` pooled final tokens (:func:`pool`; encoder in eval mode)."""
    was_training = encoder.training
    encoder.eval()
    out = [pool(encoder, encoder(images[start : start + batch_size])) for start in range(0, len(images), batch_size)]
    encoder.train(was_training)
    return torch.cat(out)


def standardize(train: Tensor, test: Tensor, eps: float = 1e-6) -> tuple[Tensor, Tensor]:
    """Both splits standardised with the training split's per-feature mean and std."""
    mean, std = train.mean(0), train.std(0) + eps
    return (train - mean) / std, (test - mean) / std


def fit_logistic(x: Tensor, y: Tensor, num_classes: int, weight_decay: float, max_iter: int = 200) -> nn.Linear:
    """Multinomial logistic regression ``x [N, D] -> logits [N, C]`` by full-batch L-BFGS on
    ``cross_entropy + weight_decay * ||W||^2``."""
    head = nn.Linear(x.shape[1], num_classes)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    optimizer = torch.optim.LBFGS(head.parameters(), max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(head(x), y) + weight_decay * head.weight.square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return head


def accuracy(logits: Tensor, labels: Tensor) -> float:
    return (logits.argmax(1) == labels).float().mean().item()


def linear_probe(train: Tensor, train_labels: Tensor, test: Tensor, test_labels: Tensor,
                 weight_decays: Sequence[float] = (1e-4, 1e-3, 1e-2), seed: int = 0) -> dict[str, float]:
    """Top-1 of a linear probe on frozen features (see the module docstring); returns the chosen weight decay too."""
    num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    train, test = standardize(train.float(), test.float())
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
    held, fit = order[: len(order) // 5], order[len(order) // 5 :]
    scores = {wd: accuracy(fit_logistic(train[fit], train_labels[fit], num_classes, wd)(train[held]),
                           train_labels[held]) for wd in weight_decays}
    best = max(weight_decays, key=lambda wd: (scores[wd], wd))  # ties: the stronger regularisation
    head = fit_logistic(train, train_labels, num_classes, best)
    with torch.no_grad():
        return {"top1": accuracy(head(test), test_labels), "weight_decay": best}


def knn_classify(train: Tensor, train_labels: Tensor, test: Tensor, k: int = 20,
                 temperature: float = 0.07) -> Tensor:
    """Weighted k-NN predictions ``[N_test]``: cosine similarity, votes weighted by ``exp(sim / temperature)``."""
    num_classes = int(train_labels.max()) + 1
    train, test = F.normalize(train.float(), dim=1), F.normalize(test.float(), dim=1)
    sims, idx = (test @ train.T).topk(min(k, len(train)), dim=1)  # [N_test, k]
    votes = torch.zeros(len(test), num_classes).scatter_add_(1, train_labels[idx], (sims / temperature).exp())
    return votes.argmax(1)


def knn_accuracy(train: Tensor, train_labels: Tensor, test: Tensor, test_labels: Tensor, k: int = 20,
                 temperature: float = 0.07) -> float:
    return (knn_classify(train, train_labels, test, k, temperature) == test_labels).float().mean().item()
