"""Folders of images (ImageFolder layout: ``root/<class>/<image>``) and Imagenette.

``scan_image_folder`` lists and checks every image once: unreadable or corrupt files are skipped
and reported (``ImageFolderSet.skipped``), never a crash half-way through training. Images are
returned as RGB through ``to_rgb``, which converts grayscale, palette, CMYK and RGBA explicitly.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from helpers.data.store import Location, fetch_folder

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


def to_rgb(image: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """An RGB copy of ``image``: transparency is composited on ``background``, CMYK/L/P converted."""
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, background)
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return image.convert("RGB")


def open_rgb(path: Path) -> Image.Image:
    """Open an image file as RGB (see ``to_rgb``)."""
    with Image.open(path) as image:
        image.load()
        return to_rgb(image)


@dataclass
class ImageFolderSet(Dataset):
    """Image paths with integer labels; items are ``(transform(RGB image), label)``."""

    paths: list[Path]
    labels: np.ndarray
    classes: tuple[str, ...]
    root: Path
    transform: Callable | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (relative path, reason)
    location: Location | None = None  # where the files came from (set by the dataset loaders)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        image = open_rgb(self.paths[index])
        return (self.transform(image) if self.transform else image), int(self.labels[index])

    def subset(self, indices) -> "ImageFolderSet":
        """The same set restricted to ``indices`` (a seeded subsample, a split)."""
        indices = np.asarray(indices, dtype=int)
        return replace(self, paths=[self.paths[i] for i in indices], labels=self.labels[indices])

    def with_transform(self, transform: Callable | None) -> "ImageFolderSet":
        """The same images with another transform."""
        return replace(self, transform=transform)

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.labels, minlength=len(self.classes))
        return {c: int(n) for c, n in zip(self.classes, counts)}


def _readable(path: Path) -> str | None:
    """None if Pillow can decode ``path``, else the reason it cannot."""
    try:
        with Image.open(path) as image:
            image.load()
        return None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        return f"{type(err).__name__}: {err}"


def scan_image_folder(root: Path, *, min_per_class: int = 1, check: bool = True,
                      transform: Callable | None = None, classes: Sequence[str] | None = None) -> ImageFolderSet:
    """Every image under ``root/<class>/`` (sorted), checking that each decodes when ``check``.

    ``classes`` restricts the scan to those class folders, labelled in the order given.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist")
    found = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not found:
        raise ValueError(f"{root} has no class sub-folders (expected root/<class>/<image>)")
    if classes is not None:
        missing = [c for c in classes if c not in found]
        if missing or not classes or len(set(classes)) != len(classes):
            raise ValueError(f"classes {list(classes)} must be distinct class folders of {root.name}; "
                             f"missing: {missing}; it has: {', '.join(found)}")
    classes = list(classes) if classes is not None else found
    paths, labels, skipped = [], [], []
    for label, name in enumerate(classes):
        files = sorted(p for p in (root / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        kept = 0
        for path in files:
            reason = _readable(path) if check else None
            if reason:
                skipped.append((str(path.relative_to(root)), reason))
                continue
            paths.append(path)
            labels.append(label)
            kept += 1
        if kept < min_per_class:
            raise ValueError(
                f"class folder {name!r} under {root.name} has {kept} readable images; at least {min_per_class} are needed"
            )
    return ImageFolderSet(paths, np.asarray(labels, dtype=np.int64), tuple(classes), root, transform, skipped)



IMAGENETTE_CLASSES = {
    "n01440764": "tench", "n02102040": "English springer", "n02979186": "cassette player",
    "n03000684": "chain saw", "n03028079": "church", "n03394916": "French horn",
    "n03417042": "garbage truck", "n03425413": "gas pump", "n03445777": "golf ball", "n03888257": "parachute",
}

def load_imagenette(split: str, *, full: bool = False, transform: Callable | None = None) -> ImageFolderSet:
    """Imagenette ``split`` ('train' or 'val'): the offline copy, or with ``full`` the official download."""
    if split not in ("train", "val"):
        raise ValueError(f"Imagenette has splits 'train' and 'val', not {split!r}")
    location = fetch_folder("imagenette", local_copy=not full)
    images = scan_image_folder(location.path / split, transform=transform)
    unknown = set(images.classes) - set(IMAGENETTE_CLASSES)
    if unknown:
        raise ValueError(f"{location.describe()}: unexpected class folders {sorted(unknown)}")
    return replace(images, location=location)
