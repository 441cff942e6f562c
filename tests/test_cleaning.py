import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from helpers.methods.cleaning import (
    backbone_extractor,
    extract_features,
    kmeans_clean,
    spread,
)

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def category_with_an_off_type_group(seed=0, per_group=12, d=16):
    """Seven nearby kinds of one dish and one kind far from all of them (the study's Jiro-style ramen)."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=d)
    centres = [base + 0.4 * rng.normal(size=d) for _ in range(7)] + [-base + 0.4 * rng.normal(size=d)]
    features = np.concatenate([c + 0.05 * rng.normal(size=(per_group, d)) for c in centres])
    off_type = np.arange(len(features)) >= 7 * per_group
    return features, off_type


def test_kmeans_cleaning_removes_the_off_type_cluster():
    features, off_type = category_with_an_off_type_group()
    result = kmeans_clean(features, k=8, seed=0)
    assert result.chosen_by == "farthest from the rest" and result.sizes.sum() == len(features)
    assert np.array_equal(~result.keep, off_type)
    assert result.distance_from_rest[result.removed] == result.distance_from_rest.max()
    assert spread(features[result.keep]) < spread(features)


def test_a_cluster_can_be_named_by_hand_and_bad_requests_fail():
    features, _ = category_with_an_off_type_group()
    auto = kmeans_clean(features, k=8, seed=0)
    other = (auto.removed + 1) % 8
    given = kmeans_clean(features, k=8, seed=0, remove=other)
    assert given.removed == other and given.chosen_by == "given" and given.keep.sum() == len(features) - given.sizes[other]
    with pytest.raises(ValueError, match="cluster number"):
        kmeans_clean(features, k=8, remove=8)
    with pytest.raises(ValueError, match="at least 16"):
        kmeans_clean(features[:10], k=8)


def test_tiny_singleton_clusters_are_not_chosen():
    features, _ = category_with_an_off_type_group(per_group=12)
    lone = np.full((1, features.shape[1]), 50.0)  # one extreme photo forms its own cluster
    result = kmeans_clean(np.concatenate([features, lone]), k=9, seed=0, min_size=2)
    assert result.sizes[result.removed] >= 2


def tiny_vgg(fc6: bool) -> torchvision.models.VGG:
    features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 512, 1), nn.ReLU(),
                             nn.MaxPool2d(2))
    model = torchvision.models.VGG(features, num_classes=10, init_weights=False)
    first = nn.Linear(512 * 7 * 7, 16) if fc6 else nn.Linear(512, 16)
    model.classifier = nn.Sequential(first, nn.ReLU(), nn.Linear(16, 10))
    return model.eval()


def test_feature_taps_for_vgg_and_resnet():
    images = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    tap, label = backbone_extractor(tiny_vgg(fc6=True), MEAN, STD)
    assert label.startswith("fc6") and extract_features(tap, images, batch_size=2).shape == (3, 16)
    assert (extract_features(tap, images) >= 0).all()  # read after the ReLU
    tap, label = backbone_extractor(tiny_vgg(fc6=False), MEAN, STD)
    assert "last convolutional" in label and extract_features(tap, images).shape == (3, 512)
    tap, label = backbone_extractor(torchvision.models.resnet18(weights=None).eval(), MEAN, STD)
    assert "layer4" in label and extract_features(tap, images).shape == (3, 512)
    with pytest.raises(TypeError, match="VGG or ResNet"):
        backbone_extractor(nn.Linear(2, 2), MEAN, STD)
    with pytest.raises(ValueError, match="uint8"):
        extract_features(tap, images.float())
