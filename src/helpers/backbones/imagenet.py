"""torchvision's ImageNet weights: found in the torch hub cache, downloaded once, or a clear error.

The files are the ones torchvision itself uses (``IMAGENET1K_V1`` of each architecture), kept in
``torch.hub.get_dir()/checkpoints``. Each file name carries the start of its sha256, which is
checked on download and again whenever a cached file is used.
"""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import torch
from torchvision import models

from helpers.data.store import ENV_OFFLINE, file_digest, offline

# The weights each name gets when ImageNet weights are available (torchvision's first release of each).
WEIGHTS_ENUM = {
    "vgg16": "VGG16_Weights.IMAGENET1K_V1",
    "wide_resnet50_2": "Wide_ResNet50_2_Weights.IMAGENET1K_V1",
    "resnet18": "ResNet18_Weights.IMAGENET1K_V1",
}
URLS: dict[str, str] = {name: models.get_weight(enum).url for name, enum in WEIGHTS_ENUM.items()}
_HASH_PREFIX = re.compile(r"-([a-f0-9]+)\.")


class BackboneUnavailable(RuntimeError):
    """Weights that were asked for are neither cached nor downloadable (or are corrupt)."""


def hub_checkpoints() -> Path:
    """The torch hub folder where downloaded weights are kept."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def weights_file(name: str) -> Path:
    """Where the ImageNet weights of ``name`` sit once downloaded."""
    return hub_checkpoints() / Path(urlparse(URLS[name]).path).name


def hash_prefix(name: str) -> str:
    """The start of the sha256 that torchvision puts in the weights' file name."""
    match = _HASH_PREFIX.search(Path(urlparse(URLS[name]).path).name)
    if match is None:
        raise ValueError(f"the weights file of {name!r} carries no hash in its name: {URLS[name]}")
    return match.group(1)


def cached(name: str) -> bool:
    """True when the ImageNet weights of ``name`` are already in the torch hub cache."""
    return weights_file(name).is_file()


def downloadable(name: str, timeout: float = 5.0) -> tuple[bool, str]:
    """``(reachable, why)``: whether the weights' URL answers now (never when ``$BOOK_OFFLINE`` is set)."""
    if offline():
        return False, f"${ENV_OFFLINE} is set"
    try:
        with urllib.request.urlopen(urllib.request.Request(URLS[name], method="HEAD"), timeout=timeout):
            return True, "reachable"
    except (urllib.error.URLError, OSError, ValueError) as err:
        return False, f"{URLS[name]} is not reachable ({getattr(err, 'reason', err)})"


def _unavailable(name: str, why: str) -> BackboneUnavailable:
    return BackboneUnavailable(
        f"ImageNet weights for {name!r} are not available: {why}.\n"
        f"  weights file: {weights_file(name).name}\n"
        f"  torch hub cache folder: {hub_checkpoints()}\n"
        f"  official URL: {URLS[name]}\n"
        "What to do: connect to the internet and run again (the file is downloaded once), or copy the "
        "file into the hub cache folder yourself, or ask for weights='standin' (trained by the book on "
        "imagenette) or weights='auto' (which falls back to the stand-in)."
    )


def state_dict(name: str) -> dict[str, torch.Tensor]:
    """The ImageNet state dict of ``name``: verified from the hub cache, else downloaded, else an error."""
    path = weights_file(name)
    if not path.is_file():
        reachable, why = downloadable(name)
        if not reachable:
            raise _unavailable(name, why)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:  # torch writes to a temporary file, checks the hash prefix, then renames
            torch.hub.download_url_to_file(URLS[name], str(path), hash_prefix=hash_prefix(name), progress=True)
        except (urllib.error.URLError, OSError, RuntimeError) as err:
            raise _unavailable(name, f"the download failed ({err})") from err
    if not file_digest(path).startswith(hash_prefix(name)):
        raise BackboneUnavailable(
            f"{path.name} in the torch hub cache folder {path.parent} is corrupt: its sha256 does not start with "
            f"{hash_prefix(name)}. Delete it and run again (it will be downloaded afresh)."
        )
    return torch.load(path, map_location="cpu", weights_only=True)
