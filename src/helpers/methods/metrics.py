"""Image quality metrics shared by the chapters (PSNR and SSIM from scikit-image)."""

from __future__ import annotations

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity


def _pair(reference: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    reference, test = np.asarray(reference), np.asarray(test)
    if reference.shape != test.shape:
        raise ValueError(f"images differ in shape: {reference.shape} vs {test.shape}")
    if reference.ndim not in (2, 3):
        raise ValueError(f"expected an H x W or H x W x C image, got shape {reference.shape}")
    return reference, test


def psnr(reference: np.ndarray, test: np.ndarray, data_range: float = 255.0) -> float:
    """Peak signal-to-noise ratio in dB (inf for identical images)."""
    reference, test = _pair(reference, test)
    if np.array_equal(reference, test):
        return float("inf")
    return float(peak_signal_noise_ratio(reference, test, data_range=data_range))


def ssim(reference: np.ndarray, test: np.ndarray, data_range: float = 255.0) -> float:
    """Structural similarity (Wang et al. 2004), averaged over channels for colour images."""
    reference, test = _pair(reference, test)
    channel_axis = -1 if reference.ndim == 3 else None
    return float(structural_similarity(reference, test, data_range=data_range, channel_axis=channel_axis))
