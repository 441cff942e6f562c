"""Book-sized archives: deterministic packing and the registry the pack writes."""

from __future__ import annotations

import hashlib
import os
import tarfile

import pytest
from conftest import ROOT, sha256

from helpers.core import cli
from helpers.data import archives, book_archives, registry
from helpers.data.store import ChecksumMismatch


def toy_dataset(root, name="toyset"):
    folder = root / name
    (folder / "train" / "a").mkdir(parents=True)
    (folder / "train" / "a" / "1.txt").write_bytes(b"one")
    (folder / "train" / "a" / "2.txt").write_bytes(b"two")
    (folder / "README.md").write_text("toy\n")
    return folder


def test_two_packs_are_byte_identical_and_ignore_file_times(tmp_path):
    folder = toy_dataset(tmp_path / "src")
    first = archives.pack_folder(tmp_path / "src", "toyset", tmp_path / "a")
    os.utime(folder / "README.md", (1, 1))  # another checkout, other file times
    second = archives.pack_folder(tmp_path / "src", "toyset", tmp_path / "b")
    assert first.path.read_bytes() == second.path.read_bytes()
    assert first.sha256 == second.sha256 == sha256(first.path.read_bytes())
    assert (first.files, first.unpacked_bytes) == (3, 10)
    assert first.top == {"README.md": sha256(b"toy\n")[:16], "train": None}


def test_a_changed_file_changes_the_archive(tmp_path):
    folder = toy_dataset(tmp_path / "src")
    before = archives.pack_folder(tmp_path / "src", "toyset", tmp_path / "a").sha256
    (folder / "train" / "a" / "2.txt").write_bytes(b"TWO")
    assert (
        archives.pack_folder(tmp_path / "src", "toyset", tmp_path / "b").sha256
        != before
    )


def test_archive_layout_is_sorted_with_fixed_metadata_and_a_manifest(tmp_path):
    toy_dataset(tmp_path / "src")
    packed = archives.pack_folder(tmp_path / "src", "toyset", tmp_path / "out")
    assert packed.path.read_bytes()[3:8] == bytes(
        5
    )  # gzip header: no file name, mtime 0
    with tarfile.open(packed.path) as tar:
        members = tar.getmembers()
        names = [m.name for m in members]
        manifest = tar.extractfile("SHA256SUMS.txt").read().decode()
    assert names == [
        "SHA256SUMS.txt",
        "toyset/README.md",
        "toyset/train/a/1.txt",
        "toyset/train/a/2.txt",
    ]
    assert {(m.mtime, m.uid, m.gid, m.mode, m.uname, m.gname) for m in members} == {
        (0, 0, 0, 0o644, "", "")
    }
    assert f"{sha256(b'one')}  toyset/train/a/1.txt\n" in manifest


def test_pack_refuses_a_source_that_contradicts_its_manifest(tmp_path):
    toy_dataset(tmp_path / "src")
    (tmp_path / "src" / "SHA256SUMS.txt").write_text(f"{'0' * 64}  toyset/README.md\n")
    with pytest.raises(ChecksumMismatch, match="toyset/README.md"):
        archives.pack_folder(tmp_path / "src", "toyset", tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="lacks the dataset folder"):
        archives.pack_all(tmp_path / "src", tmp_path / "out", ("toyset", "nope"))


def test_the_registry_source_round_trips(tmp_path):
    toy_dataset(tmp_path / "src")
    packed = archives.pack_folder(tmp_path / "src", "toyset", tmp_path / "out")
    target = archives.write_registry(
        [packed], "https://github.com/o/r", tmp_path / "book_archives.py"
    )
    namespace: dict = {}
    exec(target.read_text(), namespace)
    assert namespace["ARCHIVES"] == {"toyset": archives.record_of(packed)}
    assert (
        namespace["REPOSITORY"] == "https://github.com/o/r"
        and namespace["RELEASE"] == archives.RELEASE
    )
    assert max(len(line) for line in target.read_text().splitlines()) <= 88


def test_the_cli_packs_named_datasets(tmp_path, capsys):
    toy_dataset(tmp_path / "src")
    cli.main(
        [
            "data",
            "pack",
            "toyset",
            "--source",
            str(tmp_path / "src"),
            "--out",
            str(tmp_path / "out"),
        ]
    )
    printed = capsys.readouterr().out
    digest = hashlib.sha256(
        (tmp_path / "out" / "toyset.tar.gz").read_bytes()
    ).hexdigest()
    assert f"sha256 {digest}" in printed and "in 1 archives" in printed


def test_every_offline_dataset_has_a_registered_archive_on_the_release(monkeypatch):
    monkeypatch.delenv("BOOK_DATA_URL", raising=False)  # as on a reader's machine
    repository = archives.repository_url(ROOT / "_config.yml")
    assert (
        book_archives.REPOSITORY == repository
    )  # the release address follows _config.yml
    assert set(registry.BOOK_ARCHIVES) == set(archives.DATASETS)
    for name, archive in registry.BOOK_ARCHIVES.items():
        assert archive.filename == f"{name}.tar.gz" and len(archive.sha256) == 64
        assert archive.size > 0 and archive.files > 0
        assert (
            archive.url
            == f"{repository}/releases/download/{book_archives.RELEASE}/{name}.tar.gz"
        )
        assert name in registry.REGISTRY  # coco-mini included
    total = sum(a.size for a in registry.BOOK_ARCHIVES.values())
    assert total < 250e6, f"the book-sized archives weigh {total / 1e6:.0f} MB"


def test_book_data_url_overrides_the_release(monkeypatch):
    monkeypatch.setenv("BOOK_DATA_URL", "http://127.0.0.1:8123")
    assert registry.book_archive("mnist").url == "http://127.0.0.1:8123/mnist.tar.gz"
    monkeypatch.delenv("BOOK_DATA_URL")
    assert registry.book_data_url() == registry.release_url()


def test_the_mnist_book_copy_holds_the_official_test_files_only():
    mnist, official = registry.book_archive("mnist"), registry.spec("mnist")
    for f in official.files:
        assert mnist.holds(f.filename, f.sha256) == f.filename.startswith("t10k")
    assert not mnist.holds("t10k-images-idx3-ubyte.gz", "0" * 64)
    assert registry.book_archive("mvtec").holds("screw") and not registry.book_archive(
        "mvtec"
    ).holds("bottle")


@pytest.mark.parametrize("name", ["mnist", "frames"])
def test_the_offline_folders_reproduce_the_registered_archives(
    shared_data, tmp_path, name
):
    packed = archives.pack_folder(shared_data, name, tmp_path)
    assert (packed.sha256, packed.size) == (
        registry.book_archive(name).sha256,
        registry.book_archive(name).size,
    )
