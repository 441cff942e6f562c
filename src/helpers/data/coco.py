"""COCO captions in their official layout, and Karpathy's train/val/test split of them.

Layout (COCO 2017, the offline ``coco-mini`` copy keeps it)::

    annotations/captions_train2017.json   annotations/captions_val2017.json
    train2017/<12-digit id>.jpg           val2017/<12-digit id>.jpg

Karpathy's split (``dataset_coco.json`` in ``caption_datasets.zip``) names COCO 2014 files; the
2017 release holds the same images under their 12-digit ids, in ``train2017/`` or ``val2017/``.
Its ``restval`` images join the training split, as in Karpathy and Fei-Fei (2015).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

from PIL import Image
from torch.utils.data import Dataset

from helpers.data.images import open_rgb
from helpers.data.store import Location, fetch_folder

COCO_SPLITS = ("train", "val")  # the folders of COCO 2017
KARPATHY_SPLITS = ("train", "val", "test")
KARPATHY_TRAIN_PARTS = ("train", "restval")


class CocoFormatError(ValueError):
    """A caption or split file that does not have the expected COCO / Karpathy structure."""


@dataclass
class CaptionSet(Dataset):
    """Images with their reference captions; items are ``(RGB image, [caption, ...])``."""

    ids: list[int]
    paths: list[Path]
    captions: dict[int, list[str]]
    split: str
    location: Location | None = None  # where the files came from (set by the dataset loaders)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> tuple[Image.Image, list[str]]:
        return open_rgb(self.paths[index]), self.captions[self.ids[index]]

    def image(self, index: int) -> Image.Image:
        """The RGB image at ``index``."""
        return open_rgb(self.paths[index])

    def references(self) -> list[list[str]]:
        """The captions of every image, in order."""
        return [self.captions[i] for i in self.ids]

    def subset(self, indices) -> "CaptionSet":
        """The same set restricted to ``indices`` (a seeded subsample)."""
        indices = [int(i) for i in indices]
        ids = [self.ids[i] for i in indices]
        return replace(self, ids=ids, paths=[self.paths[i] for i in indices], captions={i: self.captions[i] for i in ids})


def _require(mapping: dict, key: str, where: str) -> object:
    if not isinstance(mapping, dict) or key not in mapping:
        raise CocoFormatError(f"{where}: missing key {key!r} (is this a COCO caption JSON file?)")
    return mapping[key]


def read_caption_json(path: Path) -> tuple[dict[int, str], dict[int, list[str]]]:
    """``({image id: file name}, {image id: [caption, ...]})`` from a COCO caption JSON file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise CocoFormatError(f"{path.name} is not valid JSON: {err}") from err
    images = _require(data, "images", path.name)
    annotations = _require(data, "annotations", path.name)
    if not isinstance(images, list) or not isinstance(annotations, list):
        raise CocoFormatError(f"{path.name}: 'images' and 'annotations' must be lists")
    files = {}
    for entry in images:
        files[int(_require(entry, "id", f"{path.name} images[]"))] = str(_require(entry, "file_name", f"{path.name} images[]"))
    captions: dict[int, list[str]] = defaultdict(list)
    for entry in annotations:
        image_id = int(_require(entry, "image_id", f"{path.name} annotations[]"))
        caption = _require(entry, "caption", f"{path.name} annotations[] (an instances file, not captions?)")
        if image_id not in files:
            raise CocoFormatError(f"{path.name}: a caption refers to image id {image_id}, which 'images' does not list")
        captions[image_id].append(str(caption).strip())
    return files, dict(captions)


def _locate(root: Path, folders: tuple[str, ...], image_id: int, file_name: str | None) -> Path:
    """The file of ``image_id`` in one of ``folders`` (by its listed name, else its 12-digit name)."""
    names = [n for n in (file_name, f"{image_id:012d}.jpg") if n]
    for folder in folders:
        for name in names:
            candidate = root / folder / name
            if candidate.is_file():
                return candidate
    raise FileNotFoundError(
        f"COCO image id {image_id} has captions but no image file: looked for {names} in "
        f"{', '.join(folders)}/ under {root.name}; the image folders are incomplete"
    )


def load_coco_captions(split: str, *, full: bool = False) -> CaptionSet:
    """COCO 2017 ``split`` ('train' or 'val'): the offline ``coco-mini`` copy, or with ``full`` all of COCO."""
    if split not in COCO_SPLITS:
        raise ValueError(f"COCO 2017 has caption splits {COCO_SPLITS}, not {split!r}")
    location = fetch_folder("coco") if full else fetch_folder("coco-mini")
    files, captions = read_caption_json(location.path / "annotations" / f"captions_{split}2017.json")
    ids = sorted(captions)
    paths = [_locate(location.path, (f"{split}2017",), i, files[i]) for i in ids]
    return CaptionSet(ids, paths, captions, split, location)


def read_karpathy_split(path: Path) -> dict[str, list[int]]:
    """``{'train' (with restval), 'val', 'test': [COCO image id, ...]}`` from Karpathy's ``dataset_coco.json``."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise CocoFormatError(f"{path.name} is not valid JSON: {err}") from err
    split_ids: dict[str, list[int]] = {s: [] for s in KARPATHY_SPLITS}
    for entry in _require(data, "images", path.name):
        part = _require(entry, "split", f"{path.name} images[]")
        image_id = int(_require(entry, "cocoid", f"{path.name} images[] (Karpathy's COCO file has 'cocoid')"))
        name = "train" if part in KARPATHY_TRAIN_PARTS else part
        if name not in split_ids:
            raise CocoFormatError(f"{path.name}: unknown split {part!r} for image {image_id}")
        split_ids[name].append(image_id)
    return {name: sorted(ids) for name, ids in split_ids.items()}


def load_karpathy(split: str) -> CaptionSet:
    """Karpathy's ``split`` of COCO ('train', 'val' or 'test', 5,000 images each for val and test).

    Captions come from the COCO 2017 caption files, images from ``train2017/`` or ``val2017/``.
    """
    if split not in KARPATHY_SPLITS:
        raise ValueError(f"Karpathy's COCO split has parts {KARPATHY_SPLITS}, not {split!r}")
    karpathy = fetch_folder("coco-karpathy")
    ids = read_karpathy_split(karpathy.path / "dataset_coco.json")[split]
    location = fetch_folder("coco")
    files, captions = {}, {}
    for part in COCO_SPLITS:
        part_files, part_captions = read_caption_json(location.path / "annotations" / f"captions_{part}2017.json")
        files.update(part_files)
        captions.update(part_captions)
    missing = [i for i in ids if i not in captions]
    if missing:
        raise CocoFormatError(f"{len(missing)} image ids of Karpathy's {split!r} split have no COCO captions, e.g. {missing[:3]}")
    paths = [_locate(location.path, ("train2017", "val2017"), i, files[i]) for i in ids]
    return CaptionSet(ids, paths, {i: captions[i] for i in ids}, f"karpathy-{split}", location)
