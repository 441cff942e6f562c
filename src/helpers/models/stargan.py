"""StarGAN (Choi et al. 2018): a domain-conditioned generator and a PatchGAN critic with a domain head.

The generator follows the fast-style-transfer layout the study used (Johnson et al. 2016):
a 7x7 stem, strided down-sampling convolutions, residual blocks with instance norm, transposed
up-sampling convolutions and a 7x7 head with tanh. The target domain enters as one-hot maps
concatenated to the image channels. Being fully convolutional, it translates any image whose
sides are divisible by ``2 ** n_down``. Widths and depths are parameters so that the chapter can
shrink the network for a CPU and keep the study's sizes on a GPU.
"""

from __future__ import annotations

import torch
from torch import nn


def _norm(channels: int) -> nn.InstanceNorm2d:
    # Pure per-image statistics in training and evaluation alike (no running averages).
    return nn.InstanceNorm2d(channels, affine=True, track_running_stats=False)


def _check_sides(x: torch.Tensor, multiple: int, what: str) -> None:
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"{what} expects a batch of RGB images (N, 3, H, W), got shape {tuple(x.shape)}")
    if x.shape[-2] % multiple or x.shape[-1] % multiple:
        raise ValueError(f"{what} needs height and width divisible by {multiple}, got {tuple(x.shape[-2:])}")


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with instance norm, added to the input."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=False), _norm(channels), nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False), _norm(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def domain_maps(onehot: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Spread ``(N, num_classes)`` one-hot vectors into ``(N, num_classes, height, width)`` constant maps."""
    if onehot.dim() != 2:
        raise ValueError(f"domain codes must be (N, num_classes), got shape {tuple(onehot.shape)}")
    return onehot[:, :, None, None].expand(-1, -1, height, width)


class Generator(nn.Module):
    """Image + target-domain code -> translated image in [-1, 1]."""

    def __init__(self, num_classes: int, width: int = 64, n_down: int = 2, n_res: int = 6) -> None:
        super().__init__()
        if num_classes < 2 or width < 1 or n_down < 0 or n_res < 0:
            raise ValueError(f"bad generator sizes: num_classes={num_classes}, width={width}, n_down={n_down}, n_res={n_res}")
        self.num_classes, self.n_down = num_classes, n_down
        layers: list[nn.Module] = [nn.Conv2d(3 + num_classes, width, 7, padding=3, bias=False), _norm(width), nn.ReLU(True)]
        channels = width
        for _ in range(n_down):
            layers += [nn.Conv2d(channels, 2 * channels, 4, stride=2, padding=1, bias=False), _norm(2 * channels),
                       nn.ReLU(True)]
            channels *= 2
        layers += [ResidualBlock(channels) for _ in range(n_res)]
        for _ in range(n_down):
            layers += [nn.ConvTranspose2d(channels, channels // 2, 4, stride=2, padding=1, bias=False),
                       _norm(channels // 2), nn.ReLU(True)]
            channels //= 2
        layers += [nn.Conv2d(channels, 3, 7, padding=3, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Translate ``x`` (N, 3, H, W) in [-1, 1] to the domains coded one-hot in ``target`` (N, num_classes)."""
        _check_sides(x, 2 ** self.n_down, "Generator")
        if target.shape != (x.shape[0], self.num_classes):
            raise ValueError(f"target codes must be ({x.shape[0]}, {self.num_classes}), got {tuple(target.shape)}")
        maps = domain_maps(target.to(x.dtype), x.shape[-2], x.shape[-1])
        return self.net(torch.cat([x, maps], dim=1))


class Discriminator(nn.Module):
    """PatchGAN critic: a real/fake score per patch and domain logits (the auxiliary classifier)."""

    def __init__(self, image_size: int, num_classes: int, width: int = 64, n_layers: int = 6) -> None:
        super().__init__()
        if n_layers < 1 or image_size % 2 ** n_layers:
            raise ValueError(f"image_size {image_size} must be divisible by 2**n_layers = {2 ** n_layers}")
        self.image_size, self.n_layers = image_size, n_layers
        layers: list[nn.Module] = [nn.Conv2d(3, width, 4, stride=2, padding=1), nn.LeakyReLU(0.01)]
        channels = width
        for _ in range(1, n_layers):
            layers += [nn.Conv2d(channels, 2 * channels, 4, stride=2, padding=1), nn.LeakyReLU(0.01)]
            channels *= 2
        self.trunk = nn.Sequential(*layers)
        self.patch_side = image_size // 2 ** n_layers
        self.source = nn.Conv2d(channels, 1, 3, padding=1, bias=False)
        self.domain = nn.Conv2d(channels, num_classes, self.patch_side, bias=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(patch scores (N, 1, h, w), domain logits (N, num_classes))`` for images of at least the training size."""
        _check_sides(x, 2 ** self.n_layers, "Discriminator")
        if min(x.shape[-2:]) < self.image_size:
            raise ValueError(f"Discriminator was built for {self.image_size} px; got {tuple(x.shape[-2:])}")
        h = self.trunk(x)
        # At the training size the domain head sees the whole map (StarGAN's layout); larger inputs
        # give several such windows, whose logits are averaged.
        return self.source(h), self.domain(h).mean(dim=(2, 3))


def parameter_count(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
