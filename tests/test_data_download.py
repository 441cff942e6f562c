"""The archives' download path, end to end, against a server on 127.0.0.1 only."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from serve_archives import ArchiveServer

from helpers.data import archives, registry
from helpers.data.images import IMAGENETTE_CLASSES, load_imagenette
from helpers.data.mnist import load_idx_split
from helpers.data.store import (
    BOOK_SIZED,
    ChecksumMismatch,
    DatasetUnavailable,
    fetch_book_copy,
)

WNID = next(iter(IMAGENETTE_CLASSES))


def write_imagenette(root, shade=40):
    """A tiny Imagenette folder: one class, 2 train + 1 val images."""
    for split, n in (("train", 2), ("val", 1)):
        folder = root / "imagenette" / split / WNID
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            pixels = np.full((12, 12, 3), shade + 10 * i, np.uint8)
            Image.fromarray(pixels).save(folder / f"{WNID}_{i}.JPEG", quality=90)
    (root / "imagenette" / "README.md").write_text("toy imagenette\n")
    return root


@pytest.fixture
def server(tmp_path):
    """An HTTP server of tmp/served on 127.0.0.1 (a free port), for one test."""
    served = tmp_path / "served"
    served.mkdir()
    srv = ArchiveServer(served).start()
    yield srv
    srv.stop()


@pytest.fixture
def publish(server, isolated, monkeypatch):
    """``publish(root, name, sha256=None)``: pack a dataset, serve it, register it."""

    def add(root, name, sha256=None):
        packed = archives.pack_folder(root, name, server.folder)
        record = archives.record_of(packed)
        if sha256:
            record["sha256"] = sha256
        monkeypatch.setitem(
            registry.BOOK_ARCHIVES, name, registry.BookArchive(name=name, **record)
        )
        return packed

    monkeypatch.setenv("BOOK_DATA_URL", server.url)
    return add


def book_files(isolated):
    folder = isolated / "cache" / BOOK_SIZED
    return (
        sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))
        if folder.exists()
        else []
    )


def test_download_unpack_and_load_then_serve_from_the_cache(publish, server, isolated):
    packed = publish(write_imagenette(isolated / "src"), "imagenette")
    train = load_imagenette("train")
    location = train.location
    assert len(train) == 2 and train.classes == (WNID,) and train[0][0].size == (12, 12)
    assert location.source == "download" and not location.official
    assert location.verified == "4 files match SHA256SUMS.txt"
    assert server.served == {"/imagenette.tar.gz": packed.size}
    assert "imagenette/.archive-sha256" in book_files(isolated)
    assert "imagenette.tar.gz" not in book_files(
        isolated
    )  # the archive is removed once unpacked
    val = load_imagenette("val")
    again = val.location
    assert len(val) == 1 and again.source == "cache" and server.requests == 1


def test_checksum_mismatch_is_a_clear_error_and_caches_nothing(publish, isolated):
    publish(write_imagenette(isolated / "src"), "imagenette", sha256="0" * 64)
    with pytest.raises(ChecksumMismatch) as info:
        load_imagenette("train")
    message = str(info.value)
    assert (
        "imagenette.tar.gz" in message
        and "0" * 64 in message
        and "BOOK_DATA_DIR" in message
    )
    assert book_files(isolated) == []


def test_interrupted_download_leaves_nothing_and_a_retry_succeeds(
    publish, server, isolated
):
    packed = publish(write_imagenette(isolated / "src"), "imagenette")
    server.cut_after = packed.size // 3
    with pytest.raises(DatasetUnavailable) as info:
        fetch_book_copy("imagenette")
    assert f"interrupted after {packed.size // 3:,} of {packed.size:,} bytes" in str(
        info.value
    )
    assert book_files(isolated) == []  # no partial archive, no half-unpacked folder
    server.cut_after = None
    assert fetch_book_copy("imagenette").source == "download"
    assert len(load_imagenette("train")) == 2


def test_offline_names_book_data_dir_and_the_url_and_sends_nothing(
    publish, server, isolated, monkeypatch
):
    publish(write_imagenette(isolated / "src"), "imagenette")
    monkeypatch.setenv("BOOK_OFFLINE", "1")
    with pytest.raises(DatasetUnavailable) as info:
        load_imagenette("train")
    message = str(info.value)
    assert (
        "BOOK_DATA_DIR" in message
        and "BOOK_OFFLINE" in message
        and "offline" in message
    )
    assert f"{server.url}imagenette.tar.gz" in message and server.requests == 0


def test_a_new_archive_version_replaces_the_unpacked_copy(publish, server, isolated):
    publish(write_imagenette(isolated / "src"), "imagenette")
    before = np.asarray(load_imagenette("train")[0][0]).mean()
    changed = publish(
        write_imagenette(isolated / "src", shade=90), "imagenette"
    )  # the registry moves on
    second = load_imagenette("train")
    location = second.location
    assert location.source == "download" and server.requests == 2
    assert (
        location.path.parent / ".archive-sha256"
    ).read_text().strip() == changed.sha256
    assert np.asarray(second[0][0]).mean() > before + 30


def test_an_archive_put_in_the_cache_by_hand_is_used_offline(
    publish, server, isolated, monkeypatch
):
    packed = publish(write_imagenette(isolated / "src"), "imagenette")
    placed = isolated / "cache" / BOOK_SIZED / "imagenette.tar.gz"
    placed.parent.mkdir(parents=True)
    placed.write_bytes(packed.path.read_bytes())
    monkeypatch.setenv("BOOK_OFFLINE", "1")
    assert len(load_imagenette("val")) == 1 and server.requests == 0


def test_real_mnist_through_the_archive(shared_data, isolated, server, monkeypatch):
    """The offline MNIST folder packs into the registered archive and loads from it."""
    packed = archives.pack_folder(shared_data, "mnist", server.folder)
    assert packed.sha256 == registry.book_archive("mnist").sha256
    monkeypatch.setenv("BOOK_DATA_URL", server.url)
    test = load_idx_split("mnist", "test")
    assert len(test) == 10000 and test.sources[0].source == "download"
    assert server.total_bytes == packed.size
