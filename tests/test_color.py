import numpy as np
import pytest
from PIL import Image

from helpers.methods.color import (
    AB_SCALE,
    chroma,
    colourfulness,
    gray_rgb,
    join_lab,
    lab_to_rgb,
    rgb_array,
    rgb_to_lab,
    split_lab,
)


def random_rgb(shape=(16, 20, 3), seed=0):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def test_lab_round_trip_is_exact_to_one_level():
    rgb = random_rgb()
    lightness, ab = split_lab(rgb)
    back = join_lab(lightness, ab)
    assert back.dtype == np.uint8 and back.shape == rgb.shape
    assert np.abs(back.astype(int) - rgb).max() <= 1


def test_scaling_ranges_and_known_colours():
    lightness, ab = split_lab(np.array([[[255, 255, 255], [0, 0, 0]], [[255, 0, 0], [0, 0, 255]]], np.uint8))
    assert lightness[0, 0] == pytest.approx(1.0, abs=1e-3) and lightness[0, 1] == pytest.approx(0.0, abs=1e-3)
    assert np.abs(ab[0]).max() < 1e-3  # white and black have no colour
    assert ab[1, 0, 0] * AB_SCALE == pytest.approx(80.1, abs=0.5)  # red: a* of sRGB red
    assert ab[1, 1, 1] * AB_SCALE == pytest.approx(-107.9, abs=0.5)  # blue: b* of sRGB blue
    full = split_lab(random_rgb((64, 64, 3)))[1]
    assert np.abs(full).max() <= 1.0


def test_gray_has_no_colour_and_keeps_lightness():
    lightness, _ = split_lab(random_rgb())
    gray = gray_rgb(lightness)
    assert (gray[..., 0] == gray[..., 1]).all() and (gray[..., 1] == gray[..., 2]).all()
    assert np.abs(split_lab(gray)[0] - lightness).max() < 0.01


def test_out_of_gamut_lab_is_clipped_silently():
    lab = np.array([[[50.0, 127.0, -127.0]]])
    rgb = lab_to_rgb(np.repeat(lab, 2, axis=1))
    assert rgb.dtype == np.uint8 and rgb.shape == (1, 2, 3)


def test_grayscale_rgba_and_float_inputs_are_converted_as_documented():
    gray = np.full((4, 4), 100, np.uint8)
    assert (rgb_array(gray) == 100).all() and rgb_array(gray).shape == (4, 4, 3)
    assert np.abs(split_lab(gray)[1]).max() < 1e-4  # a grayscale image has ab = 0
    assert rgb_array(gray[..., None]).shape == (4, 4, 3)
    rgba = np.zeros((4, 4, 4), np.uint8)  # transparent black: composited on white
    assert (rgb_array(rgba) == 255).all()
    assert (rgb_array(Image.new("LA", (4, 4), (30, 255))) == 30).all()
    assert (rgb_array(np.ones((3, 3, 3))) == 255).all()


def test_bad_inputs_are_clear_errors():
    with pytest.raises(ValueError, match="too small"):
        rgb_array(np.zeros((1, 5, 3), np.uint8))
    with pytest.raises(ValueError, match="shape"):
        rgb_array(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        rgb_array(np.full((4, 4, 3), 2.0))
    with pytest.raises(ValueError, match="dtype"):
        rgb_array(np.zeros((4, 4, 3), np.int32))
    with pytest.raises(ValueError, match="ab of shape"):
        join_lab(np.zeros((4, 4)), np.zeros((4, 4, 3)))
    with pytest.raises(ValueError, match="Lab image"):
        lab_to_rgb(np.zeros((4, 4)))
    with pytest.raises(ValueError, match="last axis"):
        chroma(np.zeros((4, 3)))


def test_colourfulness_orders_gray_pastel_and_vivid():
    gray = np.full((8, 8, 3), 128, np.uint8)
    pastel = np.zeros((8, 8, 3), np.uint8)
    pastel[:4], pastel[4:] = (200, 170, 170), (170, 170, 200)
    vivid = np.zeros((8, 8, 3), np.uint8)
    vivid[:4], vivid[4:] = (255, 0, 0), (0, 0, 255)
    assert colourfulness(gray) == 0
    assert 0 < colourfulness(pastel) < colourfulness(vivid)
    assert chroma(np.array([[0.3, 0.4]]))[0] == pytest.approx(0.5 * AB_SCALE)
    assert np.abs(rgb_to_lab(gray)[..., 1:]).max() < 0.01
