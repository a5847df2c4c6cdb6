"""The frozen-feature probes: k-NN and linear probe on data whose answer is known, RankMe and the collapse statistic
against hand-computed values, feature pooling and the features of every depth."""

from __future__ import annotations

import math

import pytest
import torch

from mim_zoo.core.encoders import MixMIMEncoder, ViTEncoder
from mim_zoo.engine.probes import (
    CLS,
    MEAN,
    Layer,
    chunks,
    depth_features,
    extract_features,
    knn_accuracy,
    knn_classify,
    linear_probe,
    normalised_std,
    rankme,
    standardize,
)


def blobs(n_per_class: int, num_classes: int, dim: int, spread: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(num_classes, dim, generator=torch.Generator().manual_seed(99)) * 5
    labels = torch.arange(num_classes).repeat_interleave(n_per_class)
    return centres[labels] + spread * torch.randn(len(labels), dim, generator=g), labels


def test_knn_with_one_neighbour_is_the_nearest_neighbour_by_cosine():
    train = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    labels = torch.tensor([0, 1, 2])
    test = torch.tensor([[0.9, 0.1], [0.1, 5.0], [-3.0, -0.5]])  # scale does not matter for cosine
    assert knn_classify(train, labels, test, k=1).tolist() == [0, 1, 2]


def test_knn_votes_are_weighted_by_similarity():
    # two far neighbours of class 1 lose to one very close neighbour of class 0 at a low temperature
    train = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.05, 1.0]])
    labels = torch.tensor([0, 1, 1])
    test = torch.tensor([[1.0, 0.02]])
    assert knn_classify(train, labels, test, k=3, temperature=0.07).item() == 0
    assert knn_classify(train, labels, test, k=3, temperature=100.0).item() == 1  # ~uniform votes: majority


def test_knn_and_linear_probe_separate_separable_classes():
    train, train_labels = blobs(40, 4, 8, 0.3, seed=0)
    test, test_labels = blobs(10, 4, 8, 0.3, seed=1)
    assert knn_accuracy(train, train_labels, test, test_labels) == 1.0
    assert linear_probe(train, train_labels, test, test_labels)["top1"] == 1.0


def test_linear_probe_is_at_chance_on_noise_and_deterministic():
    g = torch.Generator().manual_seed(0)
    train, test = torch.randn(400, 16, generator=g), torch.randn(400, 16, generator=g)
    train_labels, test_labels = torch.randint(4, (400,), generator=g), torch.randint(4, (400,), generator=g)
    first = linear_probe(train, train_labels, test, test_labels)
    assert first == linear_probe(train, train_labels, test, test_labels)
    assert 0.15 < first["top1"] < 0.4  # chance is 0.25


def test_standardize_uses_the_training_statistics_only():
    train = torch.tensor([[0.0, 10.0], [2.0, 30.0]])
    test = torch.tensor([[1.0, 20.0], [5.0, 10.0]])
    s_train, s_test = standardize(train, test)
    assert torch.allclose(s_train.mean(0), torch.zeros(2), atol=1e-6)
    assert torch.allclose(s_test[0], torch.zeros(2), atol=1e-5)  # the training mean maps to 0
    assert torch.allclose(s_test[1], (test[1] - train.mean(0)) / (train.std(0) + 1e-6))


def test_features_are_the_mean_of_the_patch_tokens(tiny_vit_cfg):
    cfg = {k: v for k, v in tiny_vit_cfg.items() if k != "type"}
    encoder = ViTEncoder(**cfg).train()
    images = torch.randn(5, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    features = extract_features(encoder, images, batch_size=2)
    assert encoder.training  # the mode it found is restored
    with torch.no_grad():
        expected = encoder.eval()(images)[:, 1:].mean(1)  # class token dropped
    assert features.shape == (5, 64) and torch.allclose(features, expected, atol=1e-6)


def test_knn_in_chunks_equals_knn_in_one_block():
    train, train_labels = blobs(30, 5, 6, 2.0, seed=0)
    test, _ = blobs(7, 5, 6, 2.0, seed=1)
    assert torch.equal(knn_classify(train, train_labels, test, chunk=4), knn_classify(train, train_labels, test))


def test_rankme_is_the_exponential_entropy_of_the_normalised_singular_values():
    # singular values 3 and 1: p = (0.75, 0.25) (+ 1e-7), exp(-(0.75 ln 0.75 + 0.25 ln 0.25)) = 1.7548
    z = torch.tensor([[3.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    assert rankme(z) == pytest.approx(math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25))), rel=1e-5)
    assert rankme(torch.eye(8) * 5.0) == pytest.approx(8.0, rel=1e-5)  # a flat spectrum: full rank
    q, _ = torch.linalg.qr(torch.randn(8, 8, generator=torch.Generator().manual_seed(0)))
    assert rankme(torch.eye(8) @ q) == pytest.approx(8.0, rel=1e-5)  # a rotation does not change it
    collapsed = torch.ones(100, 16) + 1e-9 * torch.randn(100, 16)
    assert rankme(collapsed) == pytest.approx(1.0, abs=1e-3)  # one direction


def test_normalised_std_is_zero_when_collapsed_and_one_when_spread():
    assert normalised_std(torch.ones(50, 32) * 3.0) == pytest.approx(0.0, abs=1e-6)
    gaussian = torch.randn(20000, 64, generator=torch.Generator().manual_seed(0))
    assert normalised_std(gaussian) == pytest.approx(1.0, abs=0.02)  # SimSiam's 1 / sqrt(d), times sqrt(d)


def test_depth_features_are_every_block_and_the_final_norm_of_a_vit(tiny_vit_cfg):
    cfg = {k: v for k, v in tiny_vit_cfg.items() if k != "type"}
    encoder = ViTEncoder(**cfg)
    images = torch.randn(5, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    feats = depth_features(encoder, chunks(images, 2))
    assert list(feats) == [Layer(1, "block 1", CLS), Layer(1, "block 1", MEAN), Layer(2, "block 2", CLS),
                           Layer(2, "block 2", MEAN), Layer(3, "final norm", CLS), Layer(3, "final norm", MEAN)]
    with torch.no_grad():
        x = encoder.eval()._prepend_cls(encoder.embed(images))
        first = encoder.vit.blocks[0](x)
        final = encoder.vit.norm(encoder.vit.blocks[1](first))
    assert torch.allclose(feats[Layer(1, "block 1", CLS)], first[:, 0], atol=1e-5)
    assert torch.allclose(feats[Layer(1, "block 1", MEAN)], first[:, 1:].mean(1), atol=1e-5)
    assert torch.allclose(feats[Layer(3, "final norm", MEAN)], extract_features(encoder, images), atol=1e-5)
    assert torch.allclose(feats[Layer(3, "final norm", CLS)], final[:, 0], atol=1e-5)


def test_depth_features_of_a_mixmim_swin_are_its_stages():
    encoder = MixMIMEncoder(arch=dict(embed_dims=16, depths=[1, 1], num_heads=[1, 2]), img_size=32, patch_size=2,
                            window_size=[4, 4])
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    feats = depth_features(encoder, [images])
    assert list(feats) == [Layer(1, "stage 1", MEAN), Layer(2, "stage 2", MEAN), Layer(3, "final norm", MEAN)]
    assert [f.shape for f in feats.values()] == [(3, 16), (3, 32), (3, 32)]  # the width doubles at the merge
    assert torch.allclose(feats[Layer(3, "final norm", MEAN)], extract_features(encoder, images), atol=1e-5)
