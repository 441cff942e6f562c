"""PaDiM (Defard et al. 2021): a Gaussian per feature-map position, anomaly = Mahalanobis distance.

A frozen ImageNet-style backbone is tapped at strides 4, 8 and 16 (``layer1``-``layer3`` of a
ResNet, ``blocks.1``, ``blocks.2`` and ``blocks.4`` of an EfficientNet-Lite, through
``helpers.backbones.FeaturePyramid``); a fixed random subset of the tapped channels is kept (550
of 1,792 for wide_resnet50_2 and 100 of 448 for resnet18 in the paper), the deeper maps are
brought to the stride-4 resolution and the three are concatenated. Training fits one Gaussian
per position over the defect-free images; a test image's anomaly map is the Mahalanobis distance
of its features at each position, upsampled and smoothed.

Everything is batched float32 torch: each stage's chosen channels are picked *before* the deeper
maps are upsampled (the same numbers as picking after joining, at a fraction of the copying);
the per-position covariances are accumulated batch by batch (Chan's parallel update, so the
training features are never all held at once) and inverted in place with batched Cholesky, a
block of positions at a time; no Python loop runs over single positions. ROC-AUC comes from
scikit-learn.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter
from sklearn.metrics import roc_auc_score
from torch import nn
from torchvision.transforms.v2 import functional as TF

from helpers.backbones import IMAGENET_MEAN, IMAGENET_STD, FeaturePyramid

# The PaDiM paper's number of random feature dimensions per backbone architecture.
PAPER_DIMS = {"wide_resnet50_2": 550, "resnet18": 100}
TAPPED_STRIDES = (4, 8, 16)  # layer1-layer3 of a ResNet
DIMS_RULES = ("paper", "all")
POSITIONS_PER_INVERSE = 1024  # positions inverted at once: bounds the Cholesky's temporary memory


def feature_dims(arch: str, channels: int, rule: str | int = "paper") -> int:
    """Random dimensions for a backbone.

    ``"paper"``: the paper's choice for its architecture, else the same share (100 of 448);
    ``"all"``: every tapped channel (no random projection); a number: that many (at most ``channels``).
    """
    if isinstance(rule, int) and not isinstance(rule, bool):
        if rule < 1:
            raise ValueError(f"a number of dimensions must be at least 1, got {rule}")
        return min(rule, channels)
    if rule not in DIMS_RULES:
        raise ValueError(f"unknown dims rule {rule!r}; choose one of {DIMS_RULES} or a number")
    if rule == "all":
        return channels
    if arch in PAPER_DIMS:
        return min(PAPER_DIMS[arch], channels)
    return max(1, round(channels * PAPER_DIMS["resnet18"] / 448))


class Tap(nn.Module):
    """Chosen channels of a backbone's stride-4, -8 and -16 stages, joined at stride 4.

    ``backbone`` is a ``FeaturePyramid`` (as ``helpers.backbones.feature_pyramid`` gives) or a
    torchvision ResNet, tapped after ``layer1``-``layer3`` with ImageNet normalisation. ``index``
    holds the kept channels, numbered over the three stages in order (sorted, no repeats).
    """

    def __init__(self, backbone: nn.Module, index: torch.Tensor | None = None) -> None:
        super().__init__()
        if not isinstance(backbone, FeaturePyramid):
            backbone = FeaturePyramid(backbone, IMAGENET_MEAN, IMAGENET_STD, TAPPED_STRIDES)
        if len(backbone.strides) != 3:
            raise ValueError(f"PaDiM taps three stages, not {len(backbone.strides)} ({backbone.strides})")
        self.pyramid = backbone
        self.channels = sum(backbone.channels)
        self.select(torch.arange(self.channels) if index is None else index)

    def select(self, index: torch.Tensor) -> None:
        """Keep the channels ``index`` (numbered over the joined stages)."""
        index = torch.as_tensor(index).long()
        if len(index) == 0 or index.min() < 0 or index.max() >= self.channels or not bool((index.diff() > 0).all()):
            raise ValueError(f"channel index must be increasing values in 0..{self.channels - 1}")
        self.index, self.per_stage, start = index, [], 0
        for channels in self.pyramid.channels:
            chosen = index[(index >= start) & (index < start + channels)] - start
            self.per_stage.append(None if len(chosen) == channels else chosen)  # None: all of them
            start += channels

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        """B x 3 x H x W RGB in [0, 1] -> B x D x H/4 x W/4 chosen features."""
        maps = self.pyramid(rgb)
        size = maps[0].shape[-2:]
        parts = []
        for m, chosen in zip(maps, self.per_stage):
            if chosen is not None:
                if len(chosen) == 0:
                    continue
                m = m.index_select(1, chosen.to(m.device))
            parts.append(m if m.shape[-2:] == size else F.interpolate(m, size=size, mode="nearest"))
        return torch.cat(parts, dim=1)


def prepare_images(images: np.ndarray, resize: int, crop: int) -> torch.Tensor:
    """uint8 images (N x H x W gray or N x H x W x 3) -> N x 3 x crop x crop RGB floats in [0, 1]."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim not in (3, 4):
        raise ValueError(f"expected uint8 images N x H x W (x 3), got {images.dtype} {images.shape}")
    x = torch.from_numpy(images)
    x = x[:, None].expand(-1, 3, -1, -1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
    x = TF.resize(x, [resize, resize], antialias=True)
    return TF.center_crop(x, [crop, crop]).float().div_(255)


def prepare_masks(masks: np.ndarray, resize: int, crop: int) -> np.ndarray:
    """Boolean ground-truth masks (N x H x W) through the same resize and crop, nearest neighbour."""
    x = torch.from_numpy(np.asarray(masks, dtype=np.uint8))[:, None]
    x = TF.resize(x, [resize, resize], interpolation=TF.InterpolationMode.NEAREST)
    return TF.center_crop(x, [crop, crop])[:, 0].numpy().astype(bool)


def crop_view(images: np.ndarray, resize: int, crop: int) -> np.ndarray:
    """uint8 images (N x H x W or N x H x W x 3) as PaDiM sees them, resized and centre-cropped, for figures."""
    images = np.asarray(images)
    x = torch.from_numpy(images)
    x = x[:, None] if images.ndim == 3 else x.permute(0, 3, 1, 2)
    x = TF.center_crop(TF.resize(x, [resize, resize], antialias=True), [crop, crop])
    return x[:, 0].numpy() if images.ndim == 3 else x.permute(0, 2, 3, 1).numpy()


@dataclass
class GaussianFit:
    """One Gaussian per feature-map position: means (P x D) and precision matrices (P x D x D)."""

    mean: torch.Tensor
    precision: torch.Tensor
    grid: tuple[int, int]  # the feature map's height and width (P = height * width)
    count: int  # training images

    def distances(self, embeddings: torch.Tensor, batch: int = 32) -> torch.Tensor:
        """Mahalanobis distances (N x h x w) of embeddings laid out P x N x D."""
        out = []
        for start in range(0, embeddings.shape[1], batch):
            d = embeddings[:, start:start + batch] - self.mean[:, None]  # P x B x D
            squared = (torch.bmm(d, self.precision) * d).sum(-1).clamp_min_(0)  # P x B
            out.append(squared.sqrt().T)
        return torch.cat(out).reshape(-1, *self.grid)


class Padim:
    """PaDiM on a frozen backbone: ``embed`` test images once, ``fit`` on training images, ``score``.

    ``backbone``: a ``FeaturePyramid`` with three stages (strides 4, 8, 16) or a torchvision ResNet.
    """

    def __init__(self, backbone: nn.Module, dims: int, *, seed: int = 0, resize: int = 256, crop: int = 224,
                 batch_size: int = 32, eps: float = 0.01, device: str = "cpu") -> None:
        self.tap = Tap(backbone)
        if not 1 <= dims <= self.tap.channels:
            raise ValueError(f"dims must be 1..{self.tap.channels} (the tapped channels), not {dims}")
        generator = torch.Generator().manual_seed(seed)
        self.index = torch.randperm(self.tap.channels, generator=generator)[:dims].sort().values
        self.tap.select(self.index)
        self.tap = self.tap.to(device, memory_format=torch.channels_last).eval()  # ~30 % faster on CPU
        self.dims, self.resize, self.crop = dims, resize, crop
        self.batch_size, self.eps, self.device = batch_size, eps, device

    @torch.inference_mode()
    def _features(self, images: np.ndarray) -> torch.Tensor:
        """Selected features of one batch, laid out P x B x D."""
        x = prepare_images(images, self.resize, self.crop).to(self.device, memory_format=torch.channels_last)
        maps = self.tap(x)  # B x D x h x w
        self.grid = tuple(maps.shape[-2:])
        return maps.flatten(2).permute(2, 0, 1).contiguous()

    def batches(self, images: np.ndarray):
        """Feature batches (P x B x D) over ``images``."""
        for start in range(0, len(images), self.batch_size):
            yield self._features(images[start:start + self.batch_size])

    def embed(self, images: np.ndarray) -> torch.Tensor:
        """Selected features of all ``images``, P x N x D (for test images scored against many fits)."""
        return torch.cat(list(self.batches(images)), dim=1)

    @torch.inference_mode()
    def fit(self, images: np.ndarray) -> GaussianFit:
        """Per-position mean and covariance over ``images`` (batched), then batched Cholesky inversion."""
        if len(images) < 2:
            raise ValueError(f"PaDiM needs at least 2 training images, got {len(images)}")
        count, mean, scatter = 0, None, None
        for feats in self.batches(images):  # Chan et al.'s parallel update of mean and scatter matrix
            n = feats.shape[1]
            batch_mean = feats.mean(1)
            centred = feats - batch_mean[:, None]
            if mean is None:
                mean, scatter = batch_mean, torch.bmm(centred.transpose(1, 2), centred)
            else:  # in place: one P x D x D matrix for the whole fit
                delta = batch_mean - mean
                scatter.baddbmm_(centred.transpose(1, 2), centred)
                scatter.baddbmm_(delta[:, :, None], delta[:, None, :], alpha=count * n / (count + n))
                mean += delta * (n / (count + n))
            count += n
        covariance = scatter.div_(count - 1)
        covariance.diagonal(dim1=1, dim2=2).add_(self.eps)
        for start in range(0, len(covariance), POSITIONS_PER_INVERSE):  # in place: the precision
            block = covariance[start:start + POSITIONS_PER_INVERSE]
            block.copy_(torch.cholesky_inverse(torch.linalg.cholesky(block)))
        return GaussianFit(mean, covariance, self.grid, count)

    def score(self, fit: GaussianFit, embeddings: torch.Tensor, sigma: float = 4.0) -> np.ndarray:
        """Anomaly maps (N x crop x crop): distances upsampled bilinearly and Gaussian-smoothed."""
        distances = fit.distances(embeddings)
        maps = F.interpolate(distances[:, None], size=(self.crop, self.crop), mode="bilinear", align_corners=False)
        return gaussian_filter(maps[:, 0].cpu().numpy(), sigma=sigma, axes=(1, 2))


def image_auc(labels: np.ndarray, maps: np.ndarray) -> float:
    """Image-level ROC-AUC: each image scored by the maximum of its anomaly map."""
    labels = np.asarray(labels)
    if len(np.unique(labels)) < 2:
        raise ValueError("image ROC-AUC needs both normal (0) and anomalous (1) test images")
    return float(roc_auc_score(labels, np.asarray(maps).reshape(len(maps), -1).max(1)))


def pixel_auc(masks: np.ndarray, maps: np.ndarray) -> float:
    """Pixel-level ROC-AUC of anomaly maps against boolean ground-truth masks of the same shape."""
    masks, maps = np.asarray(masks, dtype=bool), np.asarray(maps)
    if masks.shape != maps.shape:
        raise ValueError(f"masks {masks.shape} and anomaly maps {maps.shape} differ in shape")
    if masks.all() or not masks.any():
        raise ValueError("pixel ROC-AUC needs both normal and anomalous pixels in the ground truth")
    return float(roc_auc_score(masks.ravel(), maps.ravel()))
