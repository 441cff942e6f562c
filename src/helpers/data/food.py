"""Photos of dishes: the official Food-101 tree, the book's 10-class copy, or any ImageFolder of dishes.

A dataset root may have one of three layouts (``food_layout`` tells which):

* ``food-101``: the official archive's ``images/<class>/<id>.jpg`` with ``meta/train.txt`` and
  ``meta/test.txt`` (one ``<class>/<id>`` per line) saying which image belongs to which split;
* ``split-folders``: ``<split>/<class>/<image>`` (the offline copy ``food101_10`` looks like this);
* ``class-folders``: ``<class>/<image>`` with no split, divided here by a seeded draw per class
  (a quarter for testing, Food-101's own ratio).

Corrupt or unreadable images are skipped and listed (``ImageFolderSet.skipped``); a class with
fewer readable images than asked for is an error that names it.
"""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torchvision.transforms import v2
from tqdm import tqdm

from helpers.data.images import ImageFolderSet, scan_image_folder
from helpers.data.store import Location, fetch_folder

DATASET = "food"
OFFLINE_COPY = "food101_10"
SPLITS = ("train", "test")
TEST_FRACTION = 0.25  # Food-101 keeps 250 of every 1,000 images for testing
MIN_PER_CLASS = 2


def food_layout(root: Path) -> str:
    """``"food-101"``, ``"split-folders"`` or ``"class-folders"``; a clear error for anything else."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"food image folder {root} does not exist")
    if (root / "images").is_dir() and all((root / "meta" / f"{s}.txt").is_file() for s in SPLITS):
        return "food-101"
    if all((root / s).is_dir() for s in SPLITS):
        return "split-folders"
    if (root / "images").is_dir() or (root / "meta").is_dir():
        raise ValueError(f"{root.name} looks like Food-101 but lacks meta/train.txt, meta/test.txt or images/")
    if any(d.is_dir() and not d.name.startswith(".") for d in root.iterdir()):
        return "class-folders"
    raise ValueError(
        f"{root.name} is not a folder of dishes: expected images/ + meta/{{train,test}}.txt (Food-101), "
        "train/<class>/ and test/<class>/, or <class>/ folders of images"
    )


def _check_counts(images: ImageFolderSet, split: str, min_per_class: int) -> ImageFolderSet:
    thin = {c: n for c, n in images.class_counts().items() if n < min_per_class}
    if thin:
        raise ValueError(
            f"{split} split: class(es) {thin} have fewer than {min_per_class} readable images "
            f"({len(images.skipped)} file(s) skipped as unreadable)"
        )
    return images


def _official_split(root: Path, split: str, classes: Sequence[str] | None, transform: Callable | None) -> ImageFolderSet:
    listed = [line.strip() for line in (root / "meta" / f"{split}.txt").read_text().splitlines() if line.strip()]
    classes = list(classes) if classes is not None else sorted({entry.split("/")[0] for entry in listed})
    chosen = set(classes)
    wanted = {entry for entry in listed if entry.split("/")[0] in chosen}
    scan = scan_image_folder(root / "images", classes=classes, min_per_class=0, transform=transform)
    ids = [f"{p.parent.name}/{p.stem}" for p in scan.paths]
    keep = [i for i, entry in enumerate(ids) if entry in wanted]
    skipped = [(rel, why) for rel, why in scan.skipped if Path(rel).with_suffix("").as_posix() in wanted]
    found = set(ids) | {Path(rel).with_suffix("").as_posix() for rel, _ in skipped}
    skipped += [(f"{entry}.jpg", f"listed in meta/{split}.txt but missing") for entry in sorted(wanted - found)]
    images = scan.subset(keep)
    return ImageFolderSet(images.paths, images.labels, images.classes, root, transform, skipped)


def _class_orders(images: ImageFolderSet, salt: str) -> list[list[int]]:
    """Per class, its indices in an order drawn from ``salt`` and the class name (stable across runs)."""
    orders = []
    for label, name in enumerate(images.classes):
        members = [int(i) for i in np.flatnonzero(images.labels == label)]
        random.Random(f"{salt}-{name}").shuffle(members)
        orders.append(members)
    return orders


def _seeded_split(scan: ImageFolderSet, split: str, seed: int) -> ImageFolderSet:
    keep = []
    for order in _class_orders(scan, f"split-{seed}"):
        n_test = round(len(order) * TEST_FRACTION)
        keep += order[:n_test] if split == "test" else order[n_test:]
    return scan.subset(sorted(keep))


def load_food(
    split: str,
    classes: Sequence[str] | None = None,
    *,
    full: bool = False,
    root: Path | None = None,
    min_per_class: int = MIN_PER_CLASS,
    seed: int = 0,
    transform: Callable | None = None,
) -> ImageFolderSet:
    """Food photos of ``split`` ('train' or 'test'), restricted to ``classes`` (labelled in that order).

    Without ``root``: the offline copy in ``$BOOK_DATA_DIR/food`` or, with ``full`` (or when there is
    none), the official Food-101 archive from the cache or its download. ``seed`` only matters for
    class folders without a split.
    """
    if split not in SPLITS:
        raise ValueError(f"food photos have splits {SPLITS}, not {split!r}")
    if root is None:
        location = fetch_folder(DATASET, local_copy=not full)
        if (location.path / OFFLINE_COPY).is_dir():
            location = replace(location, path=location.path / OFFLINE_COPY)
        root = location.path
    else:
        root = Path(root)
        location = Location(root, "folder", False, "unverified: a folder given by the caller")
    layout = food_layout(root)
    if layout == "food-101":
        images = _official_split(root, split, classes, transform)
    elif layout == "split-folders":
        images = scan_image_folder(root / split, classes=classes, min_per_class=0, transform=transform)
    else:
        images = _seeded_split(scan_image_folder(root, classes=classes, min_per_class=0, transform=transform), split, seed)
    return replace(_check_counts(images, split, min_per_class), location=location)


def take_per_class(images: ImageFolderSet, count: int, seed: int = 0) -> ImageFolderSet:
    """At most ``count`` images of each class, drawn with ``seed`` (smaller counts are nested in larger)."""
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    return images.subset(sorted(i for order in _class_orders(images, f"take-{seed}") for i in order[:count]))


def take_fraction(images: ImageFolderSet, fraction: float, seed: int = 0) -> ImageFolderSet:
    """A seeded ``fraction`` of each class (at least one image; smaller fractions are nested in larger)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    orders = _class_orders(images, f"take-{seed}")
    return images.subset(sorted(i for order in orders for i in order[: max(1, round(fraction * len(order)))]))


def square_tensor(images: ImageFolderSet, size: int, desc: str = "load images") -> torch.Tensor:
    """Every image resized (short side ``size``) and centre-cropped to ``size`` x ``size``: uint8 (N, 3, size, size)."""
    resize = v2.Compose([v2.PILToTensor(), v2.Resize(size, antialias=True), v2.CenterCrop(size)])
    raw = images.with_transform(None)
    out = torch.empty((len(raw), 3, size, size), dtype=torch.uint8)
    for i in tqdm(range(len(raw)), desc=desc, leave=False):
        out[i] = resize(raw[i][0])
    return out
