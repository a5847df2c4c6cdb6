"""Frozen-feature probes: one k-NN classifier, linear probe, effective rank and collapse statistic for every method,
used online during pretraining (:class:`mim_zoo.engine.hooks.RepresentationMonitorHook`), on every depth of a
checkpoint's encoder (``tools/benchmark.py --tasks depth_probe``) and by the comparison study
(``benchmarks/compare.py``).

* Features: an encoder's tokens pooled to ``[N, D]`` (:func:`pool`: the mean of the patch tokens after the final
  norm, prefix tokens dropped, as MAE/BootMAE fine-tuning and MixMIM pool; it also fits encoders without a class
  token). :func:`depth_features` gives every block's (ViT) or stage's (MixMIM Swin) output, pooled as the class token
  and as the mean of the patch tokens.
* k-NN: cosine similarity of L2-normalised features, ``k = 20`` neighbours voting with weights
  ``exp(sim / 0.07)``: the weighted k-NN of DINO (facebookresearch/dino ``eval_knn.py:knn_classifier``) and of
  solo-learn's online monitor (vturrisi/solo-learn ``solo/utils/knn.py:WeightedKNNClassifier``, same ``k`` and
  temperature). Test samples are processed in chunks, so a bank of 128k images fits.
* Linear probe: features standardised with the training split's mean and std (MAE's linear probe puts a
  ``BatchNorm1d(affine=False)`` before its head, facebookresearch/mae ``main_linprobe.py``), then multinomial
  logistic regression fitted by full-batch L-BFGS. The L2 weight is chosen from ``weight_decays`` on a held-out
  fifth of the training split, then the probe is refitted on the whole split. Deterministic.
* RankMe (Garrido et al., "RankMe: Assessing the Downstream Performance of Pretrained Self-Supervised
  Representations by Their Rank", ICML 2023, arXiv:2210.02885, Sec. 3): ``exp(-sum_k p_k log p_k)`` with
  ``p_k = sigma_k / ||sigma||_1 + 1e-7`` over the singular values of the ``[N, D]`` feature matrix; between 1 (one
  direction) and ``min(N, D)`` (a flat spectrum).
* Collapse: the per-dimension standard deviation of the L2-normalised features, averaged over dimensions
  (SimSiam, Chen & He, CVPR 2021, arXiv:2011.10566, Sec. 4.1): 0 for collapsed features, ``1 / sqrt(D)`` for
  features spread like an isotropic Gaussian; reported times ``sqrt(D)`` so that 1 means "spread" at any width.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core.contracts import EncoderProtocol, HierarchicalEncoderProtocol, PlainEncoderProtocol

KNN_K = 20
KNN_TEMPERATURE = 0.07
RANKME_EPS = 1e-7


# --- features ------------------------------------------------------------------------------------------------------
def pool(encoder: EncoderProtocol, tokens: Tensor) -> Tensor:
    """An encoder's output -> ``[B, D]``: the mean of a ``[B, C, H, W]`` feature map, or of the final tokens of
    ``[B, P + L, D]`` without the ``P = encoder.num_prefix_tokens`` prefix (class) tokens."""
    if tokens.dim() == 4:
        return tokens.float().mean(dim=(2, 3))
    return tokens[:, encoder.num_prefix_tokens :].float().mean(dim=1)


@contextlib.contextmanager
def frozen(encoder: nn.Module, dtype: torch.dtype | None = None) -> Iterator[None]:
    """Eval mode (dropout and drop-path off), no gradients and optionally autocast to ``dtype``; the encoder's mode
    is restored afterwards."""
    was_training = encoder.training
    encoder.eval()
    device = next(encoder.parameters()).device
    cast = torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
    try:
        with torch.no_grad(), cast:
            yield
    finally:
        encoder.train(was_training)


def extract_features(encoder: EncoderProtocol, images: Tensor, batch_size: int = 250,
                     dtype: torch.dtype | None = None) -> Tensor:
    """``[N, 3, H, W]`` normalised images -> ``[N, D]`` float32 pooled final tokens (:func:`pool`; encoder frozen,
    under autocast to ``dtype`` if given)."""
    with frozen(encoder, dtype):
        return torch.cat([pool(encoder, encoder(batch)) for batch in chunks(images, batch_size)])


@dataclass(frozen=True, order=True)
class Layer:
    """Where a probed feature comes from: ``depth`` (1-based block or stage; the final norm follows the last one),
    its ``name`` (``"block 3"``, ``"stage 2"``, ``"final norm"``) and the ``pooling`` (``"class token"``, ``"mean of
    patch tokens"``)."""

    depth: int
    name: str
    pooling: str


CLS, MEAN = "class token", "mean of patch tokens"


def layer_outputs(encoder: EncoderProtocol, imgs: Tensor) -> dict[Layer, Tensor]:
    """Every depth of ``encoder`` on ``imgs [B, 3, H, W]``, pooled: ``{Layer: [B, C]}``.

    ViT (:class:`PlainEncoderProtocol`): each block's raw output and the final-normed tokens, each as the class
    token and as the mean of the patch tokens (``depth`` ``1..D``, the final norm ``D + 1``). MixMIM Swin
    (:class:`HierarchicalEncoderProtocol`): each stage's output before its patch merging and the final-normed
    tokens, as the mean of the tokens (no class token).
    """
    if isinstance(encoder, PlainEncoderProtocol):
        latent, blocks = encoder.forward_visible(imgs, None, return_blocks=tuple(range(encoder.depth)))
        named = [(i + 1, f"block {i + 1}", blocks[i]) for i in range(encoder.depth)]
        named.append((encoder.depth + 1, "final norm", latent))
        p = encoder.num_prefix_tokens
        return {Layer(d, n, pooling): (t[:, 0] if pooling == CLS else t[:, p:].mean(1)).float()
                for d, n, t in named for pooling in (CLS, MEAN)}
    if isinstance(encoder, HierarchicalEncoderProtocol):
        latent, stages = encoder.forward_stages(imgs)
        named = [(i + 1, f"stage {i + 1}", s) for i, s in enumerate(stages)] + [(len(stages) + 1, "final norm", latent)]
        return {Layer(d, n, MEAN): t.float().mean(1) for d, n, t in named}
    raise TypeError(f"{type(encoder).__name__} is neither a PlainEncoderProtocol nor a HierarchicalEncoderProtocol "
                    "encoder; the depth probe needs its blocks or stages")


def depth_features(encoder: EncoderProtocol, batches: Iterable[Tensor], dtype: torch.dtype | None = None,
                   keep: torch.dtype = torch.float32) -> dict[Layer, Tensor]:
    """:func:`layer_outputs` of every batch of normalised images ``[B, 3, H, W]``, concatenated:
    ``{Layer: [N, C]}`` on the CPU in ``keep`` (float16 halves the memory of a large split)."""
    parts: dict[Layer, list[Tensor]] = {}
    with frozen(encoder, dtype):
        for images in batches:
            for layer, feats in layer_outputs(encoder, images).items():
                parts.setdefault(layer, []).append(feats.to("cpu", keep))
    return {layer: torch.cat(chunks) for layer, chunks in sorted(parts.items())}


def chunks(images: Tensor, batch_size: int = 250) -> Iterator[Tensor]:
    """``[N, ...]`` in batches of ``batch_size`` (the last may be smaller)."""
    return (images[i : i + batch_size] for i in range(0, len(images), batch_size))


# --- linear probe --------------------------------------------------------------------------------------------------
def standardize(train: Tensor, test: Tensor, eps: float = 1e-6) -> tuple[Tensor, Tensor]:
    """Both splits standardised with the training split's per-feature mean and std."""
    mean, std = train.mean(0), train.std(0) + eps
    return (train - mean) / std, (test - mean) / std


@contextlib.contextmanager
def intra_op_threads(count: int) -> Iterator[None]:
    """``torch.set_num_threads(count)`` inside the block; the previous setting is restored."""
    threads = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@contextlib.contextmanager
def threads_for(x: Tensor, small: int = 1 << 22) -> Iterator[None]:
    """One intra-op thread while working on a small CPU tensor (fewer than ``small`` elements): the ops of a probe
    on a few thousand features take microseconds, less than OpenMP's synchronisation between threads (one thread
    fitted the tiny probes 2.5x faster on this project's shared 2-core machine); the setting is restored."""
    if x.device.type != "cpu" or x.numel() >= small:
        yield
        return
    with intra_op_threads(1):
        yield


def fit_logistic(x: Tensor, y: Tensor, num_classes: int, weight_decay: float, max_iter: int = 200) -> nn.Linear:
    """Multinomial logistic regression ``x [N, D] -> logits [N, C]`` by full-batch L-BFGS on
    ``cross_entropy + weight_decay * ||W||^2``."""
    head = nn.Linear(x.shape[1], num_classes).to(x.device)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    optimizer = torch.optim.LBFGS(head.parameters(), max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(head(x), y) + weight_decay * head.weight.square().sum()
        loss.backward()
        return loss

    with torch.enable_grad(), threads_for(x):
        optimizer.step(closure)
    return head


def accuracy(logits: Tensor, labels: Tensor) -> float:
    return (logits.argmax(1) == labels).float().mean().item()


def linear_probe(train: Tensor, train_labels: Tensor, test: Tensor, test_labels: Tensor,
                 weight_decays: Sequence[float] = (1e-4, 1e-3, 1e-2), seed: int = 0) -> dict[str, float]:
    """Top-1 of a linear probe on frozen features (see the module docstring); returns the chosen weight decay too."""
    num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    train, test = standardize(train.float(), test.float())
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed)).to(train.device)
    held, fit = order[: len(order) // 5], order[len(order) // 5 :]
    scores = {wd: accuracy(fit_logistic(train[fit], train_labels[fit], num_classes, wd)(train[held]),
                           train_labels[held]) for wd in weight_decays}
    best = max(weight_decays, key=lambda wd: (scores[wd], wd))  # ties: the stronger regularisation
    head = fit_logistic(train, train_labels, num_classes, best)
    with torch.no_grad():
        return {"top1": accuracy(head(test), test_labels), "weight_decay": best}


def probe_depths(train: dict[Layer, Tensor], train_labels: Tensor, val: dict[Layer, Tensor], val_labels: Tensor,
                 weight_decays: Sequence[float] = (1e-4, 1e-3, 1e-2), device: torch.device | None = None,
                 seed: int = 0) -> list[dict]:
    """:func:`linear_probe` of every layer of :func:`depth_features` (train -> val): one row per layer, in depth
    order, ``{"depth", "layer", "pooling", "top1" (%), "weight_decay"}``."""
    rows = []
    for layer in sorted(train):
        x_train, x_val = (feats[layer].float().to(device) for feats in (train, val))
        result = linear_probe(x_train, train_labels.to(device), x_val, val_labels.to(device), weight_decays, seed)
        rows.append(dict(depth=layer.depth, layer=layer.name, pooling=layer.pooling, top1=100 * result["top1"],
                         weight_decay=result["weight_decay"]))
    return rows


# --- k-NN ----------------------------------------------------------------------------------------------------------
def knn_classify(train: Tensor, train_labels: Tensor, test: Tensor, k: int = KNN_K,
                 temperature: float = KNN_TEMPERATURE, chunk: int = 1024) -> Tensor:
    """Weighted k-NN predictions ``[N_test]``: cosine similarity, votes weighted by ``exp(sim / temperature)``.

    ``train [N, D]``, ``train_labels [N]``, ``test [M, D]``, on one device; ``chunk`` test rows at a time (the
    similarity block is ``[chunk, N]``).
    """
    num_classes = int(train_labels.max()) + 1
    train, test = F.normalize(train.float(), dim=1), F.normalize(test.float(), dim=1)
    predictions = []
    for start in range(0, len(test), chunk):
        sims, idx = (test[start : start + chunk] @ train.T).topk(min(k, len(train)), dim=1)  # [c, k]
        votes = torch.zeros(len(sims), num_classes, device=test.device)
        predictions.append(votes.scatter_add_(1, train_labels[idx], (sims / temperature).exp()).argmax(1))
    return torch.cat(predictions)


def knn_accuracy(train: Tensor, train_labels: Tensor, test: Tensor, test_labels: Tensor, k: int = KNN_K,
                 temperature: float = KNN_TEMPERATURE) -> float:
    return (knn_classify(train, train_labels, test, k, temperature) == test_labels).float().mean().item()


# --- spectrum and collapse -----------------------------------------------------------------------------------------
def rankme(features: Tensor, eps: float = RANKME_EPS) -> float:
    """RankMe of ``[N, D]`` features (module docstring): the exponential of the entropy of the normalised singular
    values."""
    sigma = torch.linalg.svdvals(features.float())
    p = sigma / sigma.sum() + eps
    return math.exp(-(p * p.log()).sum().item())


def normalised_std(features: Tensor) -> float:
    """``sqrt(D)`` times the mean over dimensions of the per-dimension std of the L2-normalised ``[N, D]`` features
    (module docstring): 0 when collapsed, about 1 when spread like an isotropic Gaussian."""
    z = F.normalize(features.float(), dim=1)
    return z.std(dim=0).mean().item() * math.sqrt(z.shape[1])
