"""JPEG compression with Pillow at an exact quality, the study's Q-then-75 re-save, and quality tables.

Pillow's encoder is used with its defaults apart from ``quality`` (4:2:0 chroma subsampling, the
standard IJG tables scaled by quality), as in the study. Every input image is converted to RGB
explicitly first (``helpers.data.to_rgb``), so grayscale, palette, CMYK and RGBA inputs all work.
"""

from __future__ import annotations

import io
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
from PIL import Image

from helpers.data.images import to_rgb
from helpers.methods.metrics import psnr, ssim

TEST_QUALITIES: tuple[int, ...] = (80, 61, 41, 31, 22, 17, 12, 10, 7, 5, 3, 2)  # the study's test sweep
MIX_QUALITIES: tuple[int, ...] = (22, 10, 7, 2)  # the qualities of the extra training copies
RESAVE_QUALITY = 75  # Pillow's default quality, which the study's copies were re-saved at


def check_quality(quality: int) -> int:
    """``quality`` as an int if Pillow's JPEG encoder takes it (1..100), else a clear error."""
    if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)) or not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be an integer from 1 to 100, got {quality!r}")
    return int(quality)


def encode(image: Image.Image, quality: int) -> bytes:
    """The JPEG file of ``image`` (converted to RGB) at exactly ``quality``."""
    buffer = io.BytesIO()
    to_rgb(image).save(buffer, format="JPEG", quality=check_quality(quality))
    return buffer.getvalue()


def decode(data: bytes) -> Image.Image:
    """An RGB image from JPEG bytes (fully loaded)."""
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return to_rgb(image)


def compress(image: Image.Image, quality: int) -> Image.Image:
    """``image`` after one JPEG round trip at ``quality``."""
    return decode(encode(image, quality))


def compress_then_resave(image: Image.Image, quality: int, resave: int | None = RESAVE_QUALITY) -> Image.Image:
    """The study's training copy: JPEG at ``quality``, then decoded and saved again at ``resave``.

    ``resave=None`` gives the single compression (the study's intent without its re-save).
    """
    once = compress(image, quality)
    return once if resave is None else compress(once, resave)


def quality_sweep(image: Image.Image, qualities: Sequence[int] = TEST_QUALITIES) -> dict[int, Image.Image]:
    """``{quality: compressed image}`` for every quality of the sweep (one JPEG round trip each)."""
    return {int(q): compress(image, q) for q in qualities}


def bits_per_pixel(image: Image.Image, quality: int) -> float:
    """Size of the JPEG file of ``image`` at ``quality``, in bits per pixel."""
    return 8 * len(encode(image, quality)) / (image.width * image.height)


def quality_table(images: Iterable[Image.Image], qualities: Sequence[int] = TEST_QUALITIES) -> pd.DataFrame:
    """Per quality: mean and sd of PSNR (dB), SSIM and bits per pixel over ``images`` vs their originals."""
    rows = []
    for image in images:
        reference = np.asarray(to_rgb(image))
        for q in qualities:
            data = encode(image, q)
            test = np.asarray(decode(data))
            rows.append({"quality": int(q), "psnr": psnr(reference, test), "ssim": ssim(reference, test),
                         "bpp": 8 * len(data) / (reference.shape[0] * reference.shape[1])})
    if not rows:
        raise ValueError("quality_table needs at least one image")
    frame = pd.DataFrame(rows)
    table = frame.groupby("quality", sort=False).agg(["mean", "std"])
    table.columns = [f"{metric}_{stat}" for metric, stat in table.columns]
    return table.loc[[int(q) for q in qualities]]
