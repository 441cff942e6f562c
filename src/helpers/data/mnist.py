"""MNIST and Fashion-MNIST from their official IDX files, as ordinary torch Datasets."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from helpers.data.idx import read_idx
from helpers.data.store import Location, fetch_file

SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
CLASSES = {
    "mnist": tuple(str(d) for d in range(10)),
    "fashion-mnist": (
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    ),
}


@dataclass
class ImageSplit(Dataset):
    """Images (N, H, W) uint8 and integer labels of one split; items are ``(image, label)``."""

    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]
    name: str
    split: str
    sources: tuple[Location, ...] = ()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return torch.from_numpy(self.images[index]), int(self.labels[index])

    def subset(self, indices: np.ndarray) -> "ImageSplit":
        """The same split restricted to ``indices`` (e.g. a seeded subsample)."""
        return ImageSplit(self.images[indices], self.labels[indices], self.classes, self.name, self.split, self.sources)

    def class_counts(self) -> dict[str, int]:
        """Number of images per class name."""
        counts = np.bincount(self.labels, minlength=len(self.classes))
        return {c: int(n) for c, n in zip(self.classes, counts)}

    def describe(self) -> str:
        """One line: dataset, split, count and image size."""
        h, w = self.images.shape[1:3]
        return f"{self.name} {self.split}: {len(self)} images of {h}x{w}, {len(self.classes)} classes"


def load_idx_split(name: str, split: str) -> ImageSplit:
    """Load ``split`` ('train' or 'test') of ``name`` ('mnist' or 'fashion-mnist')."""
    if name not in CLASSES:
        raise ValueError(f"unknown IDX dataset {name!r}; choose from {sorted(CLASSES)}")
    if split not in SPLIT_FILES:
        raise ValueError(f"unknown split {split!r}; choose from {sorted(SPLIT_FILES)}")
    image_file, label_file = SPLIT_FILES[split]
    images_at, labels_at = fetch_file(name, image_file), fetch_file(name, label_file)
    images, labels = read_idx(images_at.path), read_idx(labels_at.path)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(
            f"{name} {split}: images {images.shape} and labels {labels.shape} do not pair up "
            "(expected (N, H, W) and (N,))"
        )
    return ImageSplit(images, labels.astype(np.int64), CLASSES[name], name, split, (images_at, labels_at))
