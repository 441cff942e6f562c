"""MVTec AD, any category, in its official folder layout.

```
<category>/train/good/NNN.png                   defect-free training images
<category>/test/good/NNN.png                    defect-free test images
<category>/test/<defect>/NNN.png                defective test images
<category>/ground_truth/<defect>/NNN_mask.png   one binary mask per defective test image
```

``load_mvtec(category)`` reads a reduced local copy (``$BOOK_DATA_DIR/mvtec/<category>``) when
there is one, else the book-sized archive when it holds the category (screw, at
512 px), else the official per-category archive (cache or download, sha256-checked,
unpacked once); ``full=True`` always takes the official archive. Every defective test image must have its
mask and every image must decode: anything else is an error naming the files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from helpers.data.registry import book_archive, spec
from helpers.data.store import (
    Location,
    _unpack,
    cache_dir,
    data_dir,
    fetch_book_copy,
    fetch_file,
    fetch_folder,
)

NAME = "mvtec"
CATEGORIES = ("bottle", "cable", "capsule", "carpet", "grid", "hazelnut", "leather", "metal_nut", "pill", "screw",
              "tile", "toothbrush", "transistor", "wood", "zipper")
GOOD = "good"


@dataclass(frozen=True)
class TestImage:
    """One test image: its defect type ('good' for defect-free) and its ground-truth mask file."""

    path: Path
    defect: str
    mask_path: Path | None  # None for defect-free images

    @property
    def label(self) -> int:
        """1 for a defective image, 0 for a defect-free one."""
        return int(self.defect != GOOD)


@dataclass(frozen=True)
class MvtecCategory:
    """The file lists of one MVTec AD category and where they were found."""

    category: str
    root: Path
    location: Location
    train: tuple[Path, ...]
    test: tuple[TestImage, ...]

    @property
    def labels(self) -> np.ndarray:
        """Test labels (1 = defective)."""
        return np.array([t.label for t in self.test])

    @property
    def defects(self) -> dict[str, int]:
        """Test images per defect type ('good' included)."""
        counts: dict[str, int] = {}
        for t in self.test:
            counts[t.defect] = counts.get(t.defect, 0) + 1
        return counts

    def describe(self) -> str:
        """One line: counts of train and test images and defect types."""
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(self.defects.items()))
        return f"MVTec AD {self.category}: {len(self.train)} train images; {len(self.test)} test images ({kinds})"

    def subset(self, train: np.ndarray | slice, test: np.ndarray | slice) -> "MvtecCategory":
        """The same category restricted to the given train and test indices (e.g. a seeded sample)."""
        return MvtecCategory(self.category, self.root, self.location, _pick(self.train, train), _pick(self.test, test))


def _pick(items: tuple, index: np.ndarray | slice) -> tuple:
    if isinstance(index, slice):
        return items[index]
    return tuple(items[int(i)] for i in np.asarray(index).ravel())


def _pngs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() == ".png" and not p.name.startswith("."))


def scan_category(root: Path, category: str, location: Location) -> MvtecCategory:
    """List one category folder in the official layout; a missing folder or mask is an error."""
    root = Path(root)
    for sub in ("train/good", "test"):
        if not (root / sub).is_dir():
            raise FileNotFoundError(f"{location.describe()}: no {category}/{sub} folder (not the MVTec AD layout)")
    train = tuple(_pngs(root / "train" / GOOD))
    if not train:
        raise ValueError(f"{location.describe()}: {category}/train/good holds no PNG images")
    test, missing = [], []
    for folder in sorted(p for p in (root / "test").iterdir() if p.is_dir()):
        for path in _pngs(folder):
            mask = None
            if folder.name != GOOD:
                mask = root / "ground_truth" / folder.name / f"{path.stem}_mask.png"
                if not mask.is_file():
                    missing.append(f"{category}/ground_truth/{folder.name}/{mask.name}")
            test.append(TestImage(path, folder.name, mask))
    if missing:
        raise FileNotFoundError(
            f"{location.describe()}: {len(missing)} defective test image(s) lack their ground-truth mask, "
            f"e.g. {missing[:3]}; the copy is incomplete"
        )
    if not test:
        raise ValueError(f"{location.describe()}: {category}/test holds no images")
    return MvtecCategory(category, root, location, train, tuple(test))


def load_mvtec(category: str, *, full: bool = False) -> MvtecCategory:
    """One MVTec AD category: local or book-sized copy (not ``full``), else official."""
    if category not in CATEGORIES:
        raise ValueError(f"unknown MVTec AD category {category!r}; categories: {', '.join(CATEGORIES)}")
    local = data_dir()
    if not full and local is not None and (local / NAME / category).is_dir():
        location = fetch_folder(NAME)
        return scan_category(location.path / category, category, location)
    book = book_archive(NAME)
    if not full and book is not None and book.holds(category):
        location = fetch_book_copy(NAME)
        return scan_category(location.path / category, category, location)
    filename = f"{category}.tar.xz"
    archive = fetch_file(NAME, filename)
    folder = cache_dir() / NAME
    folder.mkdir(parents=True, exist_ok=True)
    _unpack(archive.path, folder, spec(NAME).file(filename))
    location = Location(folder / category, archive.source, True, archive.verified)
    return scan_category(folder / category, category, location)


def read_image(path: Path) -> np.ndarray:
    """An MVTec image as uint8: H x W for grayscale categories, H x W x 3 (RGB) for colour ones."""
    with Image.open(path) as image:
        image.load()
        if image.mode in ("L", "I;16", "I"):
            return np.asarray(image.convert("L"))
        return np.asarray(image.convert("RGB"))


def read_images(paths: list[Path] | tuple[Path, ...]) -> np.ndarray:
    """A stack of equally sized images (N x H x W or N x H x W x 3); mixed sizes are an error."""
    images = [read_image(p) for p in paths]
    if not images:
        raise ValueError("no images to read")
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        odd = next(p for p, im in zip(paths, images) if im.shape != images[0].shape)
        raise ValueError(
            f"images of mixed sizes {sorted(shapes)}: {Path(odd).name} differs from {Path(paths[0]).name}; "
            "resize them to one size first"
        )
    return np.stack(images)


def read_ground_truth(test: tuple[TestImage, ...] | list[TestImage], shape: tuple[int, int]) -> np.ndarray:
    """Boolean ground-truth masks (N x H x W); defect-free images get an empty mask."""
    masks = np.zeros((len(test), *shape), dtype=bool)
    for i, item in enumerate(test):
        if item.mask_path is None:
            continue
        if not item.mask_path.is_file():
            raise FileNotFoundError(f"ground-truth mask {item.mask_path.name} of {item.defect}/{item.path.name} is missing")
        with Image.open(item.mask_path) as mask:
            array = np.asarray(mask.convert("L")) > 127
        if array.shape != shape:
            raise ValueError(f"mask {item.mask_path.name} is {array.shape}, its image {shape}")
        masks[i] = array
    return masks
