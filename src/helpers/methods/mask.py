"""Foreground masks behind one interface, and the study's single OR-ed mask.

A masker maps one image (uint8, H x W or H x W x 3) to a boolean foreground mask. Three backends:

* ``otsu`` (default, offline): Otsu's threshold on the blurred gray image, the object taken to be
  the side that touches the image border least, small specks removed, holes filled, dilated;
* ``grabcut`` (offline, slower): OpenCV's GrabCut, started from the Otsu mask;
* ``rembg`` (optional): the U^2-Net background remover the original study used, only when the
  ``rembg`` package is installed *and* its model file is already on disk (it is never downloaded
  here).

``union_mask`` ORs the per-image masks into the one mask that every image is then cut with
(``apply_mask``), so that no object is clipped even where a single image's mask missed a part.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Protocol

import cv2
import numpy as np

METHODS = ("otsu", "grabcut", "rembg")


class Masker(Protocol):
    """Anything that maps an image to a boolean foreground mask."""

    name: str

    def __call__(self, image: np.ndarray) -> np.ndarray: ...


def to_gray(image: np.ndarray) -> np.ndarray:
    """A uint8 H x W view of an H x W or H x W x 3 (RGB) image."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got dtype {image.dtype}")
    if image.ndim == 2:
        return image
    if image.ndim == 3 and image.shape[-1] == 3:
        return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    raise ValueError(f"expected an H x W or H x W x 3 image, got shape {image.shape}")


def _disk(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def clean_mask(mask: np.ndarray, min_fraction: float = 0.1, dilate: int = 0) -> np.ndarray:
    """Keep the components at least ``min_fraction`` of the largest, fill their holes, then dilate."""
    mask = np.asarray(mask, dtype=bool)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count <= 1:
        return np.zeros_like(mask)
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = 1 + np.flatnonzero(areas >= min_fraction * areas.max())
    kept = np.isin(labels, keep).astype(np.uint8)
    contours, _ = cv2.findContours(kept, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    filled = np.zeros_like(kept)
    cv2.drawContours(filled, contours, -1, 1, thickness=cv2.FILLED)
    if dilate > 0:
        filled = cv2.dilate(filled, _disk(dilate))
    return filled.astype(bool)


def _border_fraction(mask: np.ndarray) -> float:
    border = np.concatenate([mask[0], mask[-1], mask[:, 0], mask[:, -1]])
    return float(border.mean())


@dataclass(frozen=True)
class OtsuMasker:
    """Otsu threshold; the object is the side touching the border least; cleaned and dilated."""

    blur: int = 5  # Gaussian blur kernel (odd) before thresholding
    dilate: int = 8  # safety margin around the object, in pixels
    min_fraction: float = 0.1  # components smaller than this fraction of the largest are specks
    name: str = "otsu"

    def __call__(self, image: np.ndarray) -> np.ndarray:
        gray = to_gray(image)
        if self.blur > 1:
            gray = cv2.GaussianBlur(gray, (self.blur, self.blur), 0)
        _, high = cv2.threshold(gray, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        high = high.astype(bool)
        foreground = high if _border_fraction(high) < _border_fraction(~high) else ~high
        return clean_mask(foreground, self.min_fraction, self.dilate)


@dataclass(frozen=True)
class GrabCutMasker:
    """GrabCut initialised from the Otsu mask (sure background far from it, probable inside)."""

    iterations: int = 3
    margin: int = 25  # pixels around the Otsu mask left for GrabCut to decide
    dilate: int = 8
    name: str = "grabcut"

    def __call__(self, image: np.ndarray) -> np.ndarray:
        gray = to_gray(image)
        rough = OtsuMasker(dilate=0)(image)
        if not rough.any():
            return rough
        labels = np.full(gray.shape, cv2.GC_BGD, np.uint8)
        labels[cv2.dilate(rough.astype(np.uint8), _disk(self.margin)) > 0] = cv2.GC_PR_BGD
        labels[rough] = cv2.GC_PR_FGD
        labels[cv2.erode(rough.astype(np.uint8), _disk(3)) > 0] = cv2.GC_FGD
        colour = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR) if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
        cv2.grabCut(colour, labels, None, bgd, fgd, self.iterations, cv2.GC_INIT_WITH_MASK)
        foreground = (labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)
        return clean_mask(foreground, dilate=self.dilate)


def rembg_model_path(model: str = "u2net") -> Path:
    """Where rembg keeps its model file (``$U2NET_HOME``, default ``~/.u2net``)."""
    home = Path(os.environ.get("U2NET_HOME", Path.home() / ".u2net")).expanduser()
    return home / f"{model}.onnx"


class RembgMasker:
    """rembg's U^2-Net background removal (the original study's tool), when installed with its model."""

    name = "rembg"

    def __init__(self, model: str = "u2net", dilate: int = 0) -> None:
        if importlib.util.find_spec("rembg") is None:
            raise RuntimeError(
                "the 'rembg' mask backend needs the rembg package, which is not installed; "
                "use method='otsu' or 'grabcut' (offline), or `pip install rembg` and place its model at "
                f"{rembg_model_path(model)}"
            )
        path = rembg_model_path(model)
        if not path.is_file():
            raise RuntimeError(
                f"rembg is installed but its model {path.name} is not on disk (looked for {path}); this book "
                "never downloads it at run time. Download it once with rembg itself, or use method='otsu'."
            )
        import rembg

        self._session = rembg.new_session(model)
        self._remove: Callable = rembg.remove
        self.dilate = dilate

    def __call__(self, image: np.ndarray) -> np.ndarray:
        to_gray(image)  # validates
        rgb = np.repeat(image[..., None], 3, axis=-1) if image.ndim == 2 else image
        alpha = np.asarray(self._remove(rgb, session=self._session, only_mask=True))
        return clean_mask(alpha > 127, dilate=self.dilate)


def available_methods() -> list[str]:
    """The mask methods usable here (rembg only when its package and model are present)."""
    usable = ["otsu", "grabcut"]
    if importlib.util.find_spec("rembg") is not None and rembg_model_path().is_file():
        usable.append("rembg")
    return usable


def make_masker(method: str = "otsu", **options) -> Masker:
    """The masker called ``method`` ('otsu', 'grabcut' or 'rembg'), with its options."""
    makers = {"otsu": OtsuMasker, "grabcut": GrabCutMasker, "rembg": RembgMasker}
    if method not in makers:
        raise ValueError(f"unknown mask method {method!r}; available: {list(METHODS)}")
    return makers[method](**options)


def union_mask(masks: Iterable[np.ndarray]) -> np.ndarray:
    """The logical OR of equally shaped boolean masks: the smallest region that holds every object."""
    union = None
    for i, mask in enumerate(masks):
        mask = np.asarray(mask, dtype=bool)
        if union is None:
            union = mask.copy()
        elif mask.shape != union.shape:
            raise ValueError(f"mask {i} has shape {mask.shape}, the first had {union.shape}")
        else:
            union |= mask
    if union is None:
        raise ValueError("no masks to combine")
    return union


def apply_mask(images: np.ndarray, mask: np.ndarray, fill: int = 0) -> np.ndarray:
    """Copies of ``images`` (one image, or N of them) with everything outside ``mask`` set to ``fill``."""
    images = np.asarray(images)
    mask = np.asarray(mask, dtype=bool)
    out = images.copy()
    if images.shape[-2:] == mask.shape:  # gray: ... x H x W
        out[..., ~mask] = fill
    elif images.ndim >= 3 and images.shape[-1] == 3 and images.shape[-3:-1] == mask.shape:  # RGB: ... x H x W x 3
        out[..., ~mask, :] = fill
    else:
        raise ValueError(f"the mask is {mask.shape} but the images are {images.shape}")
    return out
