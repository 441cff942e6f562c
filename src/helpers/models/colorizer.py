"""Colorization heads over a frozen VGG trunk: Dahl's residual encoder, its ablations, and two objectives.

``VGGTaps`` cuts a torchvision VGG ``.features`` (plain or with batch norm) after its first pooling
layers and returns every stage's pooled output (the trunk's "hypercolumn" taps, shallow to deep).
The heads turn those taps into an output at the first tap's resolution (half the input's):

* ``ResidualEncoder``: top-down decoder; at each scale the upsampled decoder state and the trunk
  tap, each batch-normalised, are added (a residual shortcut) and a 3x3 conv reduces the width to
  the next shallower tap's. A global branch (pooled deepest tap -> MLP) is fused at the top.
  ``shortcuts=False`` drops the taps below the deepest one: the "last layer only, no shortcut"
  variant of the study.
* ``HypercolumnHead``: every tap upsampled to the first tap's size and concatenated, then 1x1 convs.

``Bugs`` switches on the three bugs of the original implementation, one by one or all together
(``Bugs.faithful()``). ``L2Regression`` is the original objective; ``BinnedAB`` is the remedy
for its greyish, desaturated output: classification over quantised ab bins with class
rebalancing and an annealed-mean read-out (Zhang, Isola and Efros 2016).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter
from torch import nn

from helpers.backbones import vgg_pool_indices
from helpers.methods.color import AB_SCALE


@dataclass(frozen=True)
class Bugs:
    """The original implementation's three bugs, each switchable (all False: the fixed model)."""

    detached_fusion: bool = False  # the fusion branch's output is taken with `.data`: it never learns
    shared_batchnorm: bool = False  # one batch-norm layer normalises both the tap and the decoder path
    batchnorm_train_at_test: bool = False  # batch norm keeps using batch statistics at test time

    @classmethod
    def faithful(cls) -> "Bugs":
        """All three bugs, as in the original."""
        return cls(True, True, True)


class VGGTaps(nn.Module):
    """A frozen VGG trunk cut after ``stages`` pooling layers; ``forward`` returns each stage's pooled output."""

    def __init__(self, features: nn.Sequential, mean: Sequence[float], std: Sequence[float], stages: int = 4) -> None:
        super().__init__()
        pools = vgg_pool_indices(features)
        if not 1 <= stages <= len(pools):
            raise ValueError(f"the trunk has {len(pools)} pooling stages; asked for {stages}")
        starts = [0] + [p + 1 for p in pools[: stages - 1]]
        self.blocks = nn.ModuleList(features[a: p + 1] for a, p in zip(starts, pools[:stages]))
        self.channels = tuple(
            [m.out_channels for m in block if isinstance(m, nn.Conv2d)][-1] for block in self.blocks)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    @property
    def stride(self) -> int:
        """How much smaller the deepest tap is than the input."""
        return 2 ** len(self.blocks)

    def train(self, mode: bool = True) -> "VGGTaps":
        """The trunk is frozen: it stays in eval mode (its batch norm, if any, uses ImageNet statistics)."""
        return super().train(False)

    def forward(self, rgb: torch.Tensor) -> list[torch.Tensor]:
        """Taps (shallow to deep) of an ``N x 3 x H x W`` RGB batch in [0, 1]; H and W must divide by ``stride``."""
        if rgb.ndim != 4 or rgb.shape[1] != 3:
            raise ValueError(f"expected an N x 3 x H x W batch, got shape {tuple(rgb.shape)}")
        if rgb.shape[-1] % self.stride or rgb.shape[-2] % self.stride:
            raise ValueError(f"height and width must be multiples of {self.stride}, got {tuple(rgb.shape[-2:])}")
        x = (rgb - self.mean) / self.std
        taps = []
        for block in self.blocks:
            x = block(x)
            taps.append(x)
        return taps


def _conv3x3(c_in: int, c_out: int) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, padding=1)


def _zero_output(layer: nn.Conv2d) -> nn.Conv2d:
    """Start from ab = 0 (grey; for bins, the uniform distribution) instead of random colour noise."""
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


def _check_taps(taps: Sequence[torch.Tensor], channels: Sequence[int]) -> None:
    if [t.shape[1] for t in taps] != list(channels):
        raise ValueError(f"head built for tap channels {list(channels)}, got {[t.shape[1] for t in taps]}")


class ResidualEncoder(nn.Module):
    """Dahl's residual encoder over trunk taps, with a fused global branch and the original's bugs as switches."""

    def __init__(self, channels: Sequence[int], out_channels: int = 2, *, shortcuts: bool = True,
                 fusion: bool = True, bugs: Bugs = Bugs(), final_width: int = 16) -> None:
        super().__init__()
        if len(channels) < 2:
            raise ValueError("the residual encoder needs at least two trunk taps")
        self.channels, self.shortcuts, self.bugs = tuple(channels), shortcuts, bugs
        deep = len(channels) - 1
        widths = [final_width, *channels[:-1]]  # the conv at level i maps channels[i] -> widths[i]
        self.deep_norm = nn.BatchNorm2d(channels[deep])
        self.top = nn.Conv2d(channels[deep], channels[deep - 1], 1)
        self.tap_norms = nn.ModuleList(nn.BatchNorm2d(c) for c in channels[:deep]) if shortcuts else None
        shared = bugs.shared_batchnorm and shortcuts
        self.up_norms = None if shared else nn.ModuleList(nn.BatchNorm2d(c) for c in channels[:deep])
        self.convs = nn.ModuleList(_conv3x3(channels[i], widths[i]) for i in range(deep))
        self.fusion = nn.Sequential(nn.Linear(channels[deep], 256), nn.ReLU(), nn.Linear(256, channels[deep - 1])) \
            if fusion else None
        self.out = _zero_output(nn.Conv2d(final_width, out_channels, 1))

    def train(self, mode: bool = True) -> "ResidualEncoder":
        """Set the mode; with the ``batchnorm_train_at_test`` bug, batch norm stays in training mode."""
        super().train(mode)
        if self.bugs.batchnorm_train_at_test:
            for layer in self.modules():
                if isinstance(layer, nn.BatchNorm2d):
                    layer.training = True
        return self

    def forward(self, taps: Sequence[torch.Tensor]) -> torch.Tensor:
        """Raw output (ab before tanh, or bin logits) at the first tap's resolution."""
        _check_taps(taps, self.channels)
        deepest = taps[-1]
        x = self.top(self.deep_norm(deepest))
        if self.fusion is not None:
            glob = self.fusion(deepest.mean(dim=(2, 3)))
            if self.bugs.detached_fusion:
                glob = glob.data  # the original's bug: no gradient reaches the fusion branch
            x = x + glob[:, :, None, None]
        for i in reversed(range(len(self.convs))):
            up = F.interpolate(x, size=taps[i].shape[-2:], mode="bilinear", align_corners=False)
            if not self.shortcuts:
                x = self.up_norms[i](up)
            elif self.up_norms is None:  # the original's bug: one layer, two inputs, mixed statistics
                x = self.tap_norms[i](up) + self.tap_norms[i](taps[i])
            else:
                x = self.up_norms[i](up) + self.tap_norms[i](taps[i])
            x = F.relu(self.convs[i](x))
        return self.out(x)


class HypercolumnHead(nn.Module):
    """The plain hypercolumn model: all taps upsampled to the first tap's size, concatenated, then 1x1 convs."""

    def __init__(self, channels: Sequence[int], out_channels: int = 2, hidden: Sequence[int] = (128, 64)) -> None:
        super().__init__()
        self.channels = tuple(channels)
        self.norms = nn.ModuleList(nn.BatchNorm2d(c) for c in channels)
        layers: list[nn.Module] = []
        width = sum(channels)
        for h in hidden:
            layers += [nn.Conv2d(width, h, 1), nn.ReLU()]
            width = h
        self.mlp = nn.Sequential(*layers, _zero_output(nn.Conv2d(width, out_channels, 1)))

    def forward(self, taps: Sequence[torch.Tensor]) -> torch.Tensor:
        """Raw output at the first tap's resolution."""
        _check_taps(taps, self.channels)
        size = taps[0].shape[-2:]
        columns = [F.interpolate(norm(t), size=size, mode="bilinear", align_corners=False) if t.shape[-2:] != size
                   else norm(t) for norm, t in zip(self.norms, taps)]
        return self.mlp(torch.cat(columns, dim=1))


class L2Regression(nn.Module):
    """The original objective: ab = tanh(output), mean squared error against the true (scaled) ab."""

    name = "L2 regression"
    out_channels = 2

    def loss(self, output: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
        """Mean squared error of the predicted ab."""
        return F.mse_loss(torch.tanh(output), ab)

    def decode(self, output: torch.Tensor) -> torch.Tensor:
        """Scaled ab (``N x 2 x h x w``) from the raw output."""
        return torch.tanh(output)


class BinnedAB(nn.Module):
    """Classification over the occupied cells of a grid on the ab plane, rebalanced towards rare colours."""

    name = "rebalanced ab classification"

    def __init__(self, centres: torch.Tensor, weights: torch.Tensor, temperature: float = 0.38) -> None:
        super().__init__()
        if centres.ndim != 2 or centres.shape[1] != 2 or len(weights) != len(centres):
            raise ValueError(f"need Q x 2 centres and Q weights, got {tuple(centres.shape)} and {tuple(weights.shape)}")
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.register_buffer("centres", centres.float())
        self.register_buffer("weights", weights.float())
        self.temperature = temperature

    @property
    def out_channels(self) -> int:
        return len(self.centres)

    @classmethod
    def fit(cls, ab: torch.Tensor, grid: float = 10.0, sigma: float = 5.0, mix: float = 0.5,
            temperature: float = 0.38) -> "BinnedAB":
        """Bins seen in training ab (``N x 2 x h x w``, scaled) on a ``grid``-Lab-unit lattice, weighted
        ``1 / ((1 - mix) p + mix / Q)`` with p the colour distribution smoothed by a ``sigma``-unit Gaussian."""
        if ab.ndim != 4 or ab.shape[1] != 2 or not ab.numel():
            raise ValueError(f"expected a non-empty N x 2 x h x w ab tensor, got shape {tuple(ab.shape)}")
        a, b = (ab[:, i].flatten().numpy() * AB_SCALE for i in range(2))
        edges = np.arange(-AB_SCALE, AB_SCALE + grid, grid)
        counts, _, _ = np.histogram2d(a, b, bins=(edges, edges))
        smoothed = gaussian_filter(counts / counts.sum(), sigma / grid)
        occupied = counts > 0
        p = smoothed[occupied] / smoothed[occupied].sum()
        weights = 1 / ((1 - mix) * p + mix / len(p))
        weights /= (p * weights).sum()  # the expected weight under p is 1
        mids = (edges[:-1] + edges[1:]) / 2 / AB_SCALE
        ia, ib = np.nonzero(occupied)
        centres = torch.tensor(np.stack([mids[ia], mids[ib]], axis=1), dtype=torch.float32)
        return cls(centres, torch.tensor(weights, dtype=torch.float32), temperature)

    def classes(self, ab: torch.Tensor) -> torch.Tensor:
        """Index of the nearest bin centre of every pixel (``N x h x w``)."""
        pixels = ab.permute(0, 2, 3, 1).reshape(-1, 2)
        nearest = torch.cdist(pixels, self.centres).argmin(dim=1)
        return nearest.view(ab.shape[0], *ab.shape[2:])

    def loss(self, output: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
        """Class-rebalanced cross-entropy against the nearest bin of the true ab."""
        return F.cross_entropy(output, self.classes(ab), weight=self.weights)

    def decode(self, output: torch.Tensor) -> torch.Tensor:
        """Annealed mean of the predicted bin distribution (temperature 1: the mean; towards 0: the mode)."""
        probs = torch.softmax(output / self.temperature, dim=1)
        return torch.einsum("nqhw,qc->nchw", probs, self.centres)


Objective = L2Regression | BinnedAB


def predict_ab(head: nn.Module, objective: Objective, taps: Sequence[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
    """Scaled ab (``N x 2 x H x W``) predicted from taps, upsampled bilinearly to the input ``size``."""
    ab = objective.decode(head(taps))
    return F.interpolate(ab, size=size, mode="bilinear", align_corners=False).clamp(-1, 1)
