"""Clean one category of photos with k-means on backbone features (the study's ramen step).

The study embedded every photo of its most varied category with an ImageNet VGG16 (the 4,096
values of fc6), split them into k = 8 clusters and dropped the cluster of off-type dishes.
``backbone_extractor`` taps fc6 when the backbone has torchvision's VGG classifier and the
globally pooled last convolutional features otherwise (a ResNet, a timm EfficientNet-Lite, or a
VGG without that head);
``kmeans_clean`` clusters L2-normalised features and picks the cluster to drop: the one whose
centre lies farthest from the rest of the category, or the one a reader names after looking.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torchvision
from sklearn.cluster import KMeans
from torch import nn
from tqdm import tqdm

FC6_INPUTS = 512 * 7 * 7  # torchvision VGG: 512 channels pooled to 7 x 7 feed the first linear layer


class FeatureTap(nn.Module):
    """ImageNet normalisation, a frozen backbone trunk, and the layer read out as features."""

    def __init__(self, trunk: nn.Module, readout: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.trunk, self.readout = trunk, readout
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Features (N, d) of images in [0, 1]."""
        return self.readout(self.trunk((x - self.mean) / self.std))


def backbone_extractor(model: nn.Module, mean: Sequence[float], std: Sequence[float]) -> tuple[FeatureTap, str]:
    """The study's fc6 tap for a torchvision VGG, else pooled trunk features; and a line saying which."""
    if isinstance(model, torchvision.models.VGG):
        first = model.classifier[0] if len(model.classifier) else None
        if isinstance(first, nn.Linear) and first.in_features == FC6_INPUTS:
            trunk = nn.Sequential(model.features, model.avgpool, nn.Flatten())
            tap = FeatureTap(trunk, nn.Sequential(first, nn.ReLU()), mean, std)
            return tap.eval(), f"fc6: the first fully connected layer of the VGG classifier ({first.out_features} values, after ReLU)"
        channels = [m.out_channels for m in model.features if isinstance(m, nn.Conv2d)][-1]
        tap = FeatureTap(model.features, nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()), mean, std)
        return tap.eval(), f"the VGG trunk's last convolutional features, averaged over the image ({channels} values)"
    if isinstance(model, torchvision.models.ResNet):
        trunk = nn.Sequential(*[getattr(model, n) for n in ("conv1", "bn1", "relu", "maxpool",
                                                              "layer1", "layer2", "layer3", "layer4")])
        tap = FeatureTap(trunk, nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()), mean, std)
        return tap.eval(), f"the ResNet trunk's layer4 features, averaged over the image ({model.fc.in_features} values)"
    if hasattr(model, "forward_features") and hasattr(model, "num_features"):
        tap = FeatureTap(_TimmTrunk(model), nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()), mean, std)
        return tap.eval(), (f"the {type(model).__name__} trunk's last features (after its 1x1 head convolution), "
                            f"averaged over the image ({model.num_features} values)")
    raise TypeError(f"no feature tap for a {type(model).__name__}: expected a torchvision VGG or ResNet, "
                    "or a timm network (as helpers.backbones.load returns)")


class _TimmTrunk(nn.Module):
    """A timm network's ``forward_features``: the last feature map, before pooling and classifier."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(x)


@torch.no_grad()
def extract_features(tap: nn.Module, images: torch.Tensor, *, batch_size: int = 16, device: str = "cpu",
                     desc: str = "backbone features") -> np.ndarray:
    """Features (N, d) of uint8 images (N, 3, H, W)."""
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise ValueError(f"expected uint8 images (N, 3, H, W), got {images.dtype} {tuple(images.shape)}")
    tap = tap.to(device).eval()
    out = [tap(images[i:i + batch_size].to(device).float() / 255).cpu()
           for i in tqdm(range(0, len(images), batch_size), desc=desc, leave=False)]
    return torch.cat(out).numpy()


@dataclass(frozen=True)
class Cleaning:
    """k-means clusters of one category and the cluster removed from it."""

    assignments: np.ndarray  # cluster of each image
    sizes: np.ndarray  # images per cluster
    distance_from_rest: np.ndarray  # per cluster: its centre's distance from the mean of all other images
    removed: int
    chosen_by: str  # "farthest from the rest" or "given"

    @property
    def keep(self) -> np.ndarray:
        """Boolean mask of the images kept."""
        return self.assignments != self.removed


def kmeans_clean(features: np.ndarray, k: int = 8, *, seed: int = 0, remove: int | None = None,
                 min_size: int = 2) -> Cleaning:
    """Cluster L2-normalised ``features`` into ``k`` groups and choose the one to remove.

    Without ``remove``, the cluster (of at least ``min_size`` images) whose centre is farthest
    from the mean of the category's other images goes.
    """
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or len(features) < 2 * k:
        raise ValueError(f"need at least {2 * k} feature vectors (N, d) for k = {k}, got shape {features.shape}")
    if remove is not None and not 0 <= remove < k:
        raise ValueError(f"remove must be a cluster number in [0, {k}), got {remove}")
    unit = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    assignments = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(unit)
    sizes = np.bincount(assignments, minlength=k)
    distance = np.array([
        np.linalg.norm(unit[assignments == c].mean(0) - unit[assignments != c].mean(0)) if sizes[c] else 0.0
        for c in range(k)
    ])
    if remove is None:
        candidates = np.where(sizes >= min_size, distance, -np.inf)
        return Cleaning(assignments, sizes, distance, int(np.argmax(candidates)), "farthest from the rest")
    return Cleaning(assignments, sizes, distance, remove, "given")


def spread(features: np.ndarray) -> float:
    """Mean distance of L2-normalised features from their centre (how varied a set of photos is)."""
    unit = np.asarray(features, dtype=np.float64)
    unit = unit / np.maximum(np.linalg.norm(unit, axis=1, keepdims=True), 1e-12)
    return float(np.linalg.norm(unit - unit.mean(0), axis=1).mean())
