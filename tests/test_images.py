import numpy as np
import pytest
from PIL import Image

from helpers.data import load_imagenette, scan_image_folder, to_rgb


def make_folder(root, per_class=3, corrupt=0):
    for c in ("cats", "dogs"):
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(root / c / f"{i}.png")
    for i in range(corrupt):
        (root / "dogs" / f"broken{i}.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (root / "dogs" / "notes.txt").write_text("not an image")
    return root


def test_scan_lists_sorted_classes_and_skips_corrupt_files(tmp_path):
    images = scan_image_folder(make_folder(tmp_path / "set", corrupt=2))
    assert images.classes == ("cats", "dogs") and images.class_counts() == {"cats": 3, "dogs": 3}
    assert len(images.skipped) == 2 and all(r.startswith("dogs/broken") for r, _ in images.skipped)
    image, label = images[4]
    assert image.mode == "RGB" and label == 1
    assert len(images.subset([0, 5])) == 2


def test_scan_restricted_to_chosen_classes_in_the_given_order(tmp_path):
    images = scan_image_folder(make_folder(tmp_path / "set"), classes=["dogs"])
    assert images.classes == ("dogs",) and set(images.labels) == {0} and len(images) == 3
    swapped = scan_image_folder(tmp_path / "set", classes=["dogs", "cats"])
    assert swapped.class_counts() == {"dogs": 3, "cats": 3} and swapped.paths[0].parent.name == "dogs"
    with pytest.raises(ValueError, match="missing: \\['birds'\\]"):
        scan_image_folder(tmp_path / "set", classes=["cats", "birds"])
    with pytest.raises(ValueError, match="distinct"):
        scan_image_folder(tmp_path / "set", classes=["cats", "cats"])


def test_empty_or_thin_folders_are_clear_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no class sub-folders"):
        scan_image_folder(tmp_path / "empty")
    with pytest.raises(ValueError, match="at least 5"):
        scan_image_folder(make_folder(tmp_path / "thin"), min_per_class=5)
    with pytest.raises(FileNotFoundError):
        scan_image_folder(tmp_path / "missing")


def test_to_rgb_converts_every_mode_explicitly():
    rgba = Image.new("RGBA", (2, 2), (255, 0, 0, 0))  # fully transparent red
    assert to_rgb(rgba).getpixel((0, 0)) == (255, 255, 255)
    assert to_rgb(Image.new("L", (2, 2), 7)).getpixel((0, 0)) == (7, 7, 7)
    assert to_rgb(Image.new("CMYK", (2, 2), (0, 0, 0, 0))).mode == "RGB"


def test_real_imagenette_offline_copy(shared_data):
    train = load_imagenette("train")
    location = train.location
    assert len(train) == 1500 and set(train.class_counts().values()) == {150} and not train.skipped
    assert location.source == "BOOK_DATA_DIR" and not location.official
    with pytest.raises(ValueError, match="splits"):
        load_imagenette("test")
