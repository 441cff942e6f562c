"""Check the packaged ImageNet weights: top-1 accuracy on the imagenette photos.

Imagenette's ten classes are ten of ImageNet-1k's, so a packaged network's 1,000 logits
can be scored as they are (1000-way top-1) and restricted to the ten classes (10-way
top-1). The val split is scored first; then the images of the copy whose file names are
ILSVRC-2012 *validation* names (``ILSVRC2012_val_*``), from both splits: the only ones
ImageNet training never saw. imagenette2's other files carry ImageNet *train* names
(``<wnid>_<n>.JPEG``).
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import timm
import torch
from torch.utils.data import DataLoader
from torchvision.transforms import v2

from helpers.backbones import RECORDS_FOLDER, packaged, write_json
from helpers.core import results
from helpers.data.images import IMAGENETTE_CLASSES, load_imagenette

# ImageNet-1k class index of each imagenette wnid (a test checks torchvision's names).
IMAGENET_INDEX = {
    "n01440764": 0,
    "n02102040": 217,
    "n02979186": 482,
    "n03000684": 491,
    "n03028079": 497,
    "n03394916": 566,
    "n03417042": 569,
    "n03425413": 571,
    "n03445777": 574,
    "n03888257": 701,
}
UNSEEN_PREFIX = "ILSVRC2012_val_"


def eval_transform(size: int) -> v2.Compose:
    """The whole (square) photo resized to ``size`` px, bicubic; RGB in [0, 1]."""
    return v2.Compose(
        [
            v2.ToImage(),
            v2.Resize(
                (size, size), interpolation=v2.InterpolationMode.BICUBIC, antialias=True
            ),
            v2.ToDtype(torch.float32, scale=True),
        ]
    )


@torch.no_grad()
def imagenet_logits(
    model: torch.nn.Module,
    images,
    size: int,
    batch_size: int = 25,
) -> tuple[np.ndarray, np.ndarray]:
    """``(logits (N, 1000), imagenette labels)`` of an imagenette image set."""
    mean = torch.tensor(packaged.MEAN).view(1, 3, 1, 1)
    std = torch.tensor(packaged.STD).view(1, 3, 1, 1)
    logits, labels = [], []
    for x, y in DataLoader(
        images.with_transform(eval_transform(size)), batch_size=batch_size
    ):
        logits.append(model((x - mean) / std))
        labels.append(y)
    return torch.cat(logits).numpy(), torch.cat(labels).numpy()


def top1(
    logits: np.ndarray, labels: np.ndarray, classes: tuple[str, ...]
) -> dict[str, float]:
    """10-way (over the imagenette classes' logits) and 1000-way top-1 accuracy."""
    index = np.array([IMAGENET_INDEX[c] for c in classes])
    return {
        "top1_10way": round(float((logits[:, index].argmax(1) == labels).mean()), 4),
        "top1_1000way": round(float((logits.argmax(1) == index[labels]).mean()), 4),
    }


def check(name: str, batch_size: int = 25) -> dict[str, Any]:
    """Score packaged ``name`` on imagenette val and on the copy's unseen images."""
    run = results.start(f"backbone-{name}", "cpu")
    began = time.perf_counter()
    model = packaged.load_model(name)
    load_s = time.perf_counter() - began
    spec = packaged.PACKAGES[name]
    val = load_imagenette("val")
    location = val.location
    train = load_imagenette("train")
    unknown = set(val.classes) - set(IMAGENET_INDEX)
    if unknown:
        raise ValueError(f"no ImageNet index for imagenette classes {sorted(unknown)}")
    began = time.perf_counter()
    val_logits, val_labels = imagenet_logits(model, val, spec.input_size, batch_size)
    seconds = time.perf_counter() - began
    val_unseen = [p.name.startswith(UNSEEN_PREFIX) for p in val.paths]
    train_unseen = np.flatnonzero(
        [p.name.startswith(UNSEEN_PREFIX) for p in train.paths]
    )
    train_logits, train_labels = imagenet_logits(
        model, train.subset(train_unseen), spec.input_size, batch_size
    )
    unseen_logits = np.concatenate([val_logits[val_unseen], train_logits])
    unseen_labels = np.concatenate([val_labels[val_unseen], train_labels])
    provenance = run.provenance()
    return {
        "arch": name,
        "weights": "imagenet",
        "source": {
            "package": spec.package,
            "version": packaged.installed_version(name),
            "file": spec.filename,
            "sha256": spec.sha256,
        },
        "architecture": f"timm {timm.__version__} {name}",
        "data": {
            "dataset": "imagenette",
            "source": location.describe(),
            "official": location.official,
            "val_images": len(val_labels),
            "unseen_images": len(unseen_labels),
            "unseen_from_val": int(sum(val_unseen)),
            "unseen_from_train": len(train_unseen),
            "classes": [IMAGENETTE_CLASSES.get(c, c) for c in val.classes],
        },
        "input_size": spec.input_size,
        "preprocessing": (
            f"whole photo resized to {spec.input_size} x {spec.input_size} px "
            f"(bicubic), RGB in [0, 1] normalised with mean {packaged.MEAN[0]} "
            f"and std {packaged.STD[0]}"
        ),
        "val": top1(val_logits, val_labels, val.classes),
        "unseen": top1(unseen_logits, unseen_labels, val.classes),
        "load_s": round(load_s, 3),
        "val_images_per_s": round(len(val_labels) / seconds, 1),
        "wall_s": provenance["wall_s"],
        "date": datetime.now(timezone.utc).date().isoformat(),
        "provenance": {
            **{
                k: provenance[k]
                for k in (
                    "device",
                    "python",
                    "torch",
                    "torchvision",
                    "git_commit",
                    "git_dirty",
                    "started_at",
                    "peak_rss_mib",
                )
            },
            "timm": timm.__version__,
        },
    }


def record_filename(name: str) -> str:
    """``<arch>.imagenet.json``: one packaged network's check."""
    return f"{name}.imagenet.json"


def write_record(record: dict[str, Any], directory: Path | None = None) -> Path:
    """Write a check's record to ``results/backbones/`` (the book's page shows it)."""
    folder = directory or results.results_dir() / RECORDS_FOLDER
    return write_json(record, folder / record_filename(record["arch"]))
