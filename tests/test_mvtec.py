import tarfile

import numpy as np
import pytest
from conftest import sha256
from PIL import Image

from helpers.data import registry
from helpers.data.mvtec import CATEGORIES, load_mvtec, read_ground_truth, read_images
from helpers.data.store import ChecksumMismatch


def write_category(root, category="screw", size=16, colour=False):
    """A tiny category in the official MVTec AD layout: 3 train, 2 good + 2 defective test images."""
    mode, shape = ("RGB", (size, size, 3)) if colour else ("L", (size, size))
    def save(path, value):
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full(shape, value, np.uint8), mode).save(path)
    base = root / category
    for i in range(3):
        save(base / "train" / "good" / f"{i:03d}.png", 100 + i)
    for i in range(2):
        save(base / "test" / "good" / f"{i:03d}.png", 110 + i)
        save(base / "test" / "scratch" / f"{i:03d}.png", 200 + i)
        mask = np.zeros((size, size), np.uint8)
        mask[2:5, 2:5] = 255
        (base / "ground_truth" / "scratch").mkdir(parents=True, exist_ok=True)
        Image.fromarray(mask).save(base / "ground_truth" / "scratch" / f"{i:03d}_mask.png")
    return base


def test_reads_a_local_copy_in_the_official_layout(isolated, monkeypatch):
    write_category(isolated / "data" / "mvtec", colour=True)
    monkeypatch.setenv("BOOK_DATA_DIR", str(isolated / "data"))
    cat = load_mvtec("screw")
    assert len(cat.train) == 3 and cat.labels.tolist() == [0, 0, 1, 1]
    assert cat.defects == {"good": 2, "scratch": 2}
    assert cat.location.source == "BOOK_DATA_DIR" and not cat.location.official
    assert "3 train images; 4 test images" in cat.describe()
    assert read_images(cat.train).shape == (3, 16, 16, 3)
    truth = read_ground_truth(cat.test, (16, 16))
    assert truth.sum(axis=(1, 2)).tolist() == [0, 0, 9, 9]
    small = cat.subset([0, 2], np.array([1, 3]))
    assert len(small.train) == 2 and [t.label for t in small.test] == [0, 1]


def test_missing_masks_unknown_categories_and_mixed_sizes_are_errors(isolated, monkeypatch):
    base = write_category(isolated / "data" / "mvtec")
    monkeypatch.setenv("BOOK_DATA_DIR", str(isolated / "data"))
    with pytest.raises(ValueError, match="screw, tile"):
        load_mvtec("screws")
    cat = load_mvtec("screw")
    Image.fromarray(np.zeros((20, 16), np.uint8)).save(base / "train" / "good" / "000.png")
    with pytest.raises(ValueError, match="mixed sizes"):
        read_images(cat.train)
    with pytest.raises(ValueError, match="mask 000_mask.png"):
        read_ground_truth(cat.test, (20, 16))
    (base / "ground_truth" / "scratch" / "001_mask.png").unlink()
    with pytest.raises(FileNotFoundError, match="001_mask.png of scratch/001.png is missing"):
        read_ground_truth(cat.test, (16, 16))
    with pytest.raises(FileNotFoundError, match="lack their ground-truth mask"):
        load_mvtec("screw")


def official_archive(tmp_path, category="bottle"):
    """A tiny stand-in for the official ``<category>.tar.xz`` and its registry entry."""
    staged = write_category(tmp_path / "staged", category)
    archive = tmp_path / "origin" / f"{category}.tar.xz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:xz") as tar:
        tar.add(staged, arcname=category)
    return archive


def mvtec_spec(archive, digest=None):
    return registry.DatasetSpec(
        name="mvtec", title="MVTec AD (test)", homepage="https://example.org", licence="CC BY-NC-SA 4.0",
        files=(registry.RemoteFile(archive.name, (archive.as_uri(),), sha256=digest or sha256(archive.read_bytes()),
                                   archive=True),),
    )


def test_downloads_unpacks_and_then_reuses_the_official_category(isolated, register_temp, monkeypatch):
    archive = official_archive(isolated)
    register_temp(mvtec_spec(archive))
    first = load_mvtec("bottle")
    assert first.location.source == "download" and first.location.official
    assert first.root == isolated / "cache" / "mvtec" / "bottle" and len(first.test) == 4
    archive.unlink()  # the origin is gone: the verified cache must serve now
    second = load_mvtec("bottle")
    assert second.location.source == "cache" and len(second.train) == 3
    write_category(isolated / "data" / "mvtec", "bottle", size=8)  # a reduced local copy
    monkeypatch.setenv("BOOK_DATA_DIR", str(isolated / "data"))
    assert load_mvtec("bottle").location.source == "BOOK_DATA_DIR"
    assert load_mvtec("bottle", full=True).location.official  # full: always the official files


def test_a_corrupt_official_archive_is_refused(isolated, register_temp):
    archive = official_archive(isolated)
    register_temp(mvtec_spec(archive, digest="0" * 64))
    with pytest.raises(ChecksumMismatch):
        load_mvtec("bottle")


def test_registry_lists_every_category():
    files = {f.filename for f in registry.spec("mvtec").files}
    assert files == {f"{c}.tar.xz" for c in CATEGORIES} and len(CATEGORIES) == 15


def test_the_offline_screw_copy(shared_data):
    screw = load_mvtec("screw")
    assert len(screw.train) == 320 and len(screw.test) == 160 and screw.labels.sum() == 119
    assert screw.defects["good"] == 41 and len(screw.defects) == 6
    assert read_images(screw.train[:2]).shape == (2, 512, 512)
    assert read_ground_truth(screw.test[-2:], (512, 512)).any(axis=(1, 2)).all()
