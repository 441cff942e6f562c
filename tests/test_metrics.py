import numpy as np
import pytest

from helpers.methods.metrics import psnr, ssim


def test_psnr_of_a_known_error():
    a = np.zeros((8, 8), np.uint8)
    b = a.copy()
    b[0, 0] = 255  # MSE = 255^2 / 64, so PSNR = 10 log10(64) dB
    assert psnr(a, b) == pytest.approx(10 * np.log10(64))
    assert psnr(a, a) == float("inf")


def test_ssim_bounds_and_colour():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    noisy = np.clip(image + rng.normal(0, 40, image.shape), 0, 255).astype(np.uint8)
    assert ssim(image, image) == pytest.approx(1.0)
    assert 0 < ssim(image, noisy) < 0.9


def test_mismatched_shapes_are_rejected():
    with pytest.raises(ValueError, match="shape"):
        psnr(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(ValueError, match="H x W"):
        ssim(np.zeros(4), np.zeros(4))
