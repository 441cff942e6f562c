import hashlib
import io
import tarfile

import numpy as np
import pytest
from PIL import Image

from helpers.data import registry
from helpers.data.food import (
    food_layout,
    load_food,
    square_tensor,
    take_fraction,
    take_per_class,
)

BROKEN = b"\xff\xd8\xff\xe0 not really a jpeg"


def jpeg(shade: int, size=(12, 8)) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((size[1], size[0], 3), shade, np.uint8)).save(buffer, format="JPEG")
    return buffer.getvalue()


def write(path, data: bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def food101_tree(root, per_class=4, broken=(), missing=()):
    """A Food-101 layout: images/<class>/<id>.jpg, meta/train.txt and meta/test.txt (half each)."""
    lines = {"train": [], "test": []}
    for c, dish in enumerate(("ramen", "pho", "bibimbap")):
        for i in range(per_class):
            entry = f"{dish}/{100 * c + i}"
            lines["train" if i % 2 == 0 else "test"].append(entry)
            if entry not in missing:
                write(root / "images" / f"{entry}.jpg", BROKEN if entry in broken else jpeg(15 * i % 256))
    write(root / "images" / "ramen" / "999.jpg", jpeg(1))  # on disk but in neither list
    for split, entries in lines.items():
        write(root / "meta" / f"{split}.txt", ("\n".join(entries) + "\n").encode())
    return root


def test_official_layout_follows_the_meta_lists(tmp_path):
    root = food101_tree(tmp_path / "food-101", broken={"pho/102"}, missing={"ramen/2"})
    assert food_layout(root) == "food-101"
    train = load_food("train", ["pho", "ramen"], root=root, min_per_class=1)
    location = train.location
    assert train.classes == ("pho", "ramen") and train.class_counts() == {"pho": 1, "ramen": 1}
    assert sorted(rel for rel, _ in train.skipped) == ["pho/102.jpg", "ramen/2.jpg"]
    assert any("missing" in why for _, why in train.skipped) and location.source == "folder"
    test = load_food("test", root=root)  # all classes of the list, alphabetical
    assert test.classes == ("bibimbap", "pho", "ramen") and len(test) == 6 and not test.skipped
    assert not {p.stem for p in train.paths} & {p.stem for p in test.paths}


def test_split_folders_skip_corrupt_files_and_refuse_thin_classes(tmp_path):
    for split, n in (("train", 5), ("test", 2)):
        for dish in ("beignets", "bibimbap"):
            for i in range(n):
                write(tmp_path / split / dish / f"{i}.jpg", jpeg(30 * i))
    write(tmp_path / "train" / "bibimbap" / "bad.jpg", BROKEN)
    assert food_layout(tmp_path) == "split-folders"
    train = load_food("train", root=tmp_path, min_per_class=5)
    assert train.class_counts() == {"beignets": 5, "bibimbap": 5} and [r for r, _ in train.skipped] == ["bibimbap/bad.jpg"]
    with pytest.raises(ValueError, match=r"'bibimbap': 2.*at least|fewer than 3"):
        load_food("test", ["beignets", "bibimbap"], root=tmp_path, min_per_class=3)
    with pytest.raises(ValueError, match="missing: \\['ramen'\\]"):
        load_food("train", ["ramen"], root=tmp_path)
    with pytest.raises(ValueError, match="splits"):
        load_food("val", root=tmp_path)


def test_plain_class_folders_are_split_by_a_seeded_draw(tmp_path):
    for dish in ("apple_pie", "baklava"):
        for i in range(8):
            write(tmp_path / dish / f"{i}.jpg", jpeg(10 * i))
    assert food_layout(tmp_path) == "class-folders"
    train = load_food("train", root=tmp_path)
    test = load_food("test", root=tmp_path)
    assert train.class_counts() == {"apple_pie": 6, "baklava": 6} and len(test) == 4
    assert not set(train.paths) & set(test.paths)
    assert load_food("test", root=tmp_path).paths == test.paths
    assert load_food("test", root=tmp_path, seed=1).paths != test.paths


def test_unknown_layouts_are_clear_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="not a folder of dishes"):
        food_layout(tmp_path / "empty")
    write(tmp_path / "half" / "meta" / "train.txt", b"ramen/1\n")
    (tmp_path / "half" / "images").mkdir()
    with pytest.raises(ValueError, match="looks like Food-101"):
        food_layout(tmp_path / "half")
    with pytest.raises(FileNotFoundError):
        food_layout(tmp_path / "nowhere")


def test_seeded_subsets_are_nested_and_per_class(tmp_path):
    root = food101_tree(tmp_path / "food-101", per_class=16)
    train = load_food("train", root=root)
    quarter, half = take_fraction(train, 0.25), take_fraction(train, 0.5)
    assert set(quarter.class_counts().values()) == {2} and set(half.class_counts().values()) == {4}
    assert set(quarter.paths) <= set(half.paths)
    assert take_per_class(train, 3).class_counts() == {"bibimbap": 3, "pho": 3, "ramen": 3}
    assert take_per_class(train, 3, seed=1).paths != take_per_class(train, 3).paths
    assert set(take_per_class(train, 2).paths) == set(quarter.paths)  # same draw, same prefix
    with pytest.raises(ValueError):
        take_fraction(train, 0)
    with pytest.raises(ValueError):
        take_per_class(train, 0)


def test_square_tensor_crops_the_centre(tmp_path):
    root = food101_tree(tmp_path / "food-101")
    train = load_food("train", root=root)
    x = square_tensor(train, 4)
    assert x.shape == (len(train), 3, 4, 4) and x.dtype.is_floating_point is False


def test_official_archive_download_and_unpack(isolated, register_temp):
    tree = food101_tree(isolated / "build" / "food-101")
    archive = isolated / "origin" / "food-101.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tree, arcname="food-101")
    official = registry.spec("food")
    assert official.files[0].md5 == "85eeb15f3717b99a5da872d97d918f87" and official.archive_root == "food-101"
    register_temp(registry.DatasetSpec(
        name="food", title=official.title, homepage=official.homepage, licence=official.licence,
        archive_root="food-101", files=(registry.RemoteFile(
            "food-101.tar.gz", (archive.as_uri(),), md5=hashlib.md5(archive.read_bytes()).hexdigest(), archive=True),),
    ))
    train = load_food("train", ["ramen"], full=True, min_per_class=1)
    location = train.location
    assert location.source == "download" and location.official and train.class_counts() == {"ramen": 2}
    again = load_food("test", ["ramen"], full=True, min_per_class=1)
    location = again.location
    assert location.source == "cache" and len(again) == 2


def test_real_offline_copy(shared_data):
    train = load_food("train")
    location = train.location
    assert len(train.classes) == 10 and set(train.class_counts().values()) == {120} and not train.skipped
    assert location.describe().startswith("$BOOK_DATA_DIR/food/food101_10") and not location.official
    test = load_food("test", ["bibimbap", "beignets"])
    assert test.class_counts() == {"bibimbap": 40, "beignets": 40}
