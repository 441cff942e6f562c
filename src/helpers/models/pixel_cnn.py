"""A small convolutional classifier of decoded 28x28 grayscale images: the pixel baseline of chapter 01."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class PixelCNN(nn.Module):
    """Two conv-ReLU-maxpool stages (16 and 32 channels) and a linear layer: (B, 1, 28, 28) -> logits."""

    def __init__(self, num_classes: int = 10, size: int = 28) -> None:
        super().__init__()
        self.size = size
        self.body = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(32 * (size // 4) ** 2, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, size, size) float pixels in [0, 1] -> (B, num_classes) logits."""
        if x.ndim != 4 or x.shape[1:] != (1, self.size, self.size):
            raise ValueError(f"expected images of shape (batch, 1, {self.size}, {self.size}), got {tuple(x.shape)}")
        return self.body(x)


def to_pixels(images: np.ndarray) -> torch.Tensor:
    """A uint8 stack (N, H, W) as the float tensor (N, 1, H, W) in [0, 1] the model reads."""
    images = np.asarray(images)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(f"expected a uint8 stack (N, H, W), got {images.dtype} of shape {images.shape}")
    return torch.from_numpy(images).float().div(255).unsqueeze(1)
