"""CIE Lab for colorization: RGB <-> Lab (scikit-image), network scaling of L and ab, colourfulness.

A colorizer sees the lightness L and predicts the two colour channels a and b. Networks get
``L / 100`` in [0, 1] and ``ab / AB_SCALE`` in about [-1, 1] (the sRGB gamut spans a in
[-86, 98] and b in [-108, 95]). Inputs are converted explicitly: grayscale arrays are repeated
into three equal channels (they have ab = 0), RGBA is composited on white, Pillow images go
through ``helpers.data.to_rgb``; anything else, and images smaller than ``MIN_SIDE``, is an error.
"""

from __future__ import annotations

import warnings

import numpy as np
from PIL import Image
from skimage import color

from helpers.data import to_rgb

L_MAX = 100.0
AB_SCALE = 110.0
MIN_SIDE = 2  # a 1-pixel image has no neighbourhood for a network (or SSIM) to look at


def rgb_array(image: Image.Image | np.ndarray) -> np.ndarray:
    """An ``H x W x 3`` uint8 RGB array from a Pillow image or an uint8 / [0, 1] float array."""
    if isinstance(image, Image.Image):
        array = np.asarray(to_rgb(image))
    else:
        array = np.asarray(image)
        if array.dtype.kind == "f":
            if array.size and (np.nanmin(array) < 0 or np.nanmax(array) > 1 or np.isnan(array).any()):
                raise ValueError("a float image must hold values in [0, 1]")
            array = np.round(array * 255).astype(np.uint8)
        elif array.dtype != np.uint8:
            raise ValueError(f"expected an uint8 or float image, got dtype {array.dtype}")
        if array.ndim == 3 and array.shape[2] == 1:
            array = array[..., 0]
        if array.ndim == 2:  # grayscale: three equal channels, i.e. ab = 0
            array = np.repeat(array[..., None], 3, axis=2)
        elif array.ndim == 3 and array.shape[2] == 4:  # RGBA: composite on white, like to_rgb
            alpha = array[..., 3:].astype(np.float32) / 255
            array = np.round(array[..., :3] * alpha + 255 * (1 - alpha)).astype(np.uint8)
        elif not (array.ndim == 3 and array.shape[2] == 3):
            raise ValueError(f"expected an H x W, H x W x 1, x 3 or x 4 image, got shape {array.shape}")
    if min(array.shape[:2]) < MIN_SIDE:
        raise ValueError(f"image of {array.shape[1]}x{array.shape[0]} px is too small (at least {MIN_SIDE} px a side)")
    return array


def rgb_to_lab(image: Image.Image | np.ndarray) -> np.ndarray:
    """CIE Lab (D65) of an image as ``H x W x 3`` float32: L in [0, 100], a and b in about [-110, 110]."""
    return color.rgb2lab(rgb_array(image)).astype(np.float32)


def lab_to_rgb(lab: np.ndarray) -> np.ndarray:
    """``H x W x 3`` uint8 RGB of a Lab image; colours outside the sRGB gamut are clipped into it."""
    lab = np.asarray(lab, dtype=np.float64)
    if lab.ndim != 3 or lab.shape[2] != 3:
        raise ValueError(f"expected an H x W x 3 Lab image, got shape {lab.shape}")
    with warnings.catch_warnings():  # scikit-image warns when it clips out-of-gamut colours
        warnings.simplefilter("ignore", UserWarning)
        rgb = color.lab2rgb(lab)
    return np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8)


def split_lab(image: Image.Image | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(L, ab)`` scaled for a network: ``H x W`` L in [0, 1] and ``H x W x 2`` ab in about [-1, 1]."""
    lab = rgb_to_lab(image)
    return lab[..., 0] / L_MAX, lab[..., 1:] / AB_SCALE


def join_lab(lightness: np.ndarray, ab: np.ndarray) -> np.ndarray:
    """uint8 RGB from scaled ``L`` (``H x W``) and ``ab`` (``H x W x 2``), the inverse of ``split_lab``."""
    lightness, ab = np.asarray(lightness), np.asarray(ab)
    if ab.shape != (*lightness.shape, 2):
        raise ValueError(f"L of shape {lightness.shape} needs ab of shape {(*lightness.shape, 2)}, got {ab.shape}")
    return lab_to_rgb(np.concatenate([lightness[..., None] * L_MAX, ab * AB_SCALE], axis=-1))


def gray_rgb(lightness: np.ndarray) -> np.ndarray:
    """The uint8 gray RGB image a colorizer is given: scaled ``L`` with ``ab = 0``."""
    lightness = np.asarray(lightness)
    rgb = join_lab(lightness, np.zeros((*lightness.shape, 2), np.float32))
    # lab2rgb of ab = 0 can differ by one level between channels (white-point rounding): make it exactly gray
    return np.repeat(np.round(rgb.mean(axis=-1, keepdims=True)).astype(np.uint8), 3, axis=-1)


def colourfulness(image: Image.Image | np.ndarray) -> float:
    """Hasler and Süsstrunk's colourfulness M of an RGB image (0 for gray; about 100 for vivid photos)."""
    rgb = rgb_array(image).astype(np.float64)
    rg = rgb[..., 0] - rgb[..., 1]
    yb = 0.5 * (rgb[..., 0] + rgb[..., 1]) - rgb[..., 2]
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


def chroma(ab: np.ndarray) -> np.ndarray:
    """Chroma ``sqrt(a^2 + b^2)`` in Lab units of scaled ab (last axis of size 2)."""
    ab = np.asarray(ab)
    if ab.shape[-1] != 2:
        raise ValueError(f"expected ab on the last axis (size 2), got shape {ab.shape}")
    return np.hypot(ab[..., 0], ab[..., 1]) * AB_SCALE
