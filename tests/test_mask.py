import sys
import types

import cv2
import numpy as np
import pytest

from helpers.methods import mask as mask_module
from helpers.methods.mask import (
    GrabCutMasker,
    OtsuMasker,
    apply_mask,
    available_methods,
    make_masker,
    union_mask,
)


def object_on_background(dark_object=True, size=96, seed=0):
    """A rod (the 'object') on a noisy flat background, and its true mask."""
    rng = np.random.default_rng(seed)
    background, foreground = (200, 60) if dark_object else (50, 210)
    image = np.clip(rng.normal(background, 8, (size, size)), 0, 255).astype(np.uint8)
    truth = np.zeros((size, size), np.uint8)
    cv2.rectangle(truth, (20, 40), (75, 55), 1, thickness=cv2.FILLED)
    image[truth > 0] = np.clip(rng.normal(foreground, 8, int(truth.sum())), 0, 255).astype(np.uint8)
    image[2, 2] = foreground  # a speck that must be dropped
    return image, truth.astype(bool)


def iou(a, b):
    return (a & b).sum() / (a | b).sum()


@pytest.mark.parametrize("dark_object", [True, False])
def test_otsu_finds_the_object_on_either_polarity(dark_object):
    image, truth = object_on_background(dark_object)
    found = OtsuMasker(dilate=0)(image)
    assert iou(found, truth) > 0.9 and not found[2, 2]
    assert OtsuMasker(dilate=4)(image).sum() > found.sum()  # the safety margin grows the mask


def test_otsu_and_grabcut_on_colour_images():
    image, truth = object_on_background()
    rgb = np.repeat(image[..., None], 3, axis=-1)
    assert iou(OtsuMasker(dilate=0)(rgb), truth) > 0.9
    assert iou(GrabCutMasker(dilate=0)(rgb), truth) > 0.8


def test_a_blank_image_gives_an_empty_or_full_mask_without_crashing():
    blank = np.full((32, 32), 128, np.uint8)
    for masker in (OtsuMasker(), GrabCutMasker()):
        assert masker(blank).shape == (32, 32)


def test_union_is_the_logical_or():
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    a[0, :2] = True
    b[0, 1:3] = True
    b[3, 3] = True
    union = union_mask([a, b])
    assert union.sum() == 4 and union[0, :3].all() and union[3, 3]
    assert not a[0, 2]  # inputs untouched
    with pytest.raises(ValueError, match="shape"):
        union_mask([a, np.zeros((5, 4), bool)])
    with pytest.raises(ValueError, match="no masks"):
        union_mask([])


def test_apply_mask_fills_outside_for_gray_and_colour_stacks():
    keep = np.zeros((3, 3), bool)
    keep[1, 1] = True
    gray = np.full((2, 3, 3), 9, np.uint8)
    out = apply_mask(gray, keep, fill=4)
    assert out[:, 1, 1].tolist() == [9, 9] and (out[:, 0] == 4).all() and (gray == 9).all()
    rgb = np.full((3, 3, 3), 9, np.uint8)
    assert apply_mask(rgb, keep)[0, 0].tolist() == [0, 0, 0]
    with pytest.raises(ValueError, match="mask"):
        apply_mask(gray, np.ones((4, 4), bool))


def test_unknown_method_and_bad_images_are_errors():
    with pytest.raises(ValueError, match="otsu"):
        make_masker("magic")
    with pytest.raises(ValueError, match="uint8"):
        OtsuMasker()(np.zeros((8, 8), np.float32))
    with pytest.raises(ValueError, match="shape"):
        OtsuMasker()(np.zeros((8, 8, 4), np.uint8))


def test_rembg_without_package_or_model_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("U2NET_HOME", str(tmp_path))
    monkeypatch.setattr(mask_module.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(RuntimeError, match="not installed"):
        make_masker("rembg")
    assert "rembg" not in available_methods()
    monkeypatch.setattr(mask_module.importlib.util, "find_spec", lambda name: object())
    with pytest.raises(RuntimeError, match="never downloads"):
        make_masker("rembg")


def test_rembg_backend_when_package_and_model_are_present(monkeypatch, tmp_path):
    monkeypatch.setenv("U2NET_HOME", str(tmp_path))
    (tmp_path / "u2net.onnx").write_bytes(b"model")
    fake = types.SimpleNamespace(
        new_session=lambda model: f"session:{model}",
        remove=lambda rgb, session, only_mask: np.where(rgb[..., 0] < 128, 255, 0).astype(np.uint8),
    )
    monkeypatch.setitem(sys.modules, "rembg", fake)
    monkeypatch.setattr(mask_module.importlib.util, "find_spec", lambda name: object())
    image, truth = object_on_background()
    masker = make_masker("rembg")
    assert masker.name == "rembg" and iou(masker(image), truth) > 0.9
    assert "rembg" in available_methods()
