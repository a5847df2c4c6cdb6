"""The frozen-feature evaluation: k-NN and linear probe on data whose answer is known, feature pooling."""

from __future__ import annotations

import torch

from benchmarks.probe import extract_features, knn_accuracy, knn_classify, linear_probe, standardize
from mim_zoo.core.encoders import ViTEncoder


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
