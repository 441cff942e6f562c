import io
import tarfile
from pathlib import Path

import pytest
from conftest import sha256

from helpers.data import registry, store
from helpers.data.store import (
    ChecksumMismatch,
    DatasetUnavailable,
    fetch_file,
    fetch_folder,
)

CONTENT = b"IDX-like payload for the toy dataset\n" * 100
UNREACHABLE = "http://127.0.0.1:9/toy/payload.bin"  # nothing listens on the discard port: fails at once


def toy_spec(url: str, content: bytes = CONTENT, name: str = "toy") -> registry.DatasetSpec:
    return registry.DatasetSpec(
        name=name, title="toy", homepage="https://example.org", licence="CC0",
        files=(registry.RemoteFile("payload.bin", (url,), sha256=sha256(content), size=len(content)),),
    )


@pytest.fixture
def served(tmp_path) -> str:
    """A file:// URL standing in for the official download."""
    origin = tmp_path / "origin" / "payload.bin"
    origin.parent.mkdir()
    origin.write_bytes(CONTENT)
    return origin.as_uri()


def test_present_in_book_data_dir(isolated, register_temp, monkeypatch):
    register_temp(toy_spec(UNREACHABLE))
    local = isolated / "data" / "toy"
    local.mkdir(parents=True)
    (local / "payload.bin").write_bytes(CONTENT)
    monkeypatch.setenv("BOOK_DATA_DIR", str(isolated / "data"))
    found = fetch_file("toy", "payload.bin")
    assert found.source == "BOOK_DATA_DIR" and found.official
    assert found.describe().startswith("$BOOK_DATA_DIR/toy/payload.bin")


def test_book_data_dir_mismatch_is_an_error(isolated, register_temp, monkeypatch, served):
    register_temp(toy_spec(served))
    local = isolated / "data" / "toy"
    local.mkdir(parents=True)
    (local / "payload.bin").write_bytes(CONTENT[:-1] + b"?")
    monkeypatch.setenv("BOOK_DATA_DIR", str(isolated / "data"))
    with pytest.raises(ChecksumMismatch, match="delete it"):
        fetch_file("toy", "payload.bin")


def test_download_then_cache_hit(isolated, register_temp, served):
    register_temp(toy_spec(served))
    first = fetch_file("toy", "payload.bin")
    assert first.source == "download" and first.path.read_bytes() == CONTENT
    assert first.path.parent == isolated / "cache" / "toy"
    assert [p.name for p in first.path.parent.iterdir()] == ["payload.bin"]  # no temporary files left
    second = fetch_file("toy", "payload.bin")
    assert second.source == "cache" and second.path == first.path


def test_corrupt_cache_is_detected_on_hit(isolated, register_temp, served):
    register_temp(toy_spec(served))
    cached = fetch_file("toy", "payload.bin").path
    cached.write_bytes(CONTENT[: len(CONTENT) // 2])  # truncated since the download
    with pytest.raises(ChecksumMismatch):
        fetch_file("toy", "payload.bin")


def test_download_with_wrong_checksum_leaves_nothing(isolated, register_temp, served):
    register_temp(toy_spec(served, content=b"something else"))
    with pytest.raises(ChecksumMismatch, match="expects"):
        fetch_file("toy", "payload.bin")
    assert not any((isolated / "cache" / "toy").iterdir())


def test_offline_and_missing_error_names_everything(isolated, register_temp):
    register_temp(toy_spec(UNREACHABLE))
    with pytest.raises(DatasetUnavailable) as info:
        fetch_file("toy", "payload.bin")
    message = str(info.value)
    for needle in ("'toy'", "payload.bin", "BOOK_DATA_DIR", UNREACHABLE, str(isolated / "cache" / "toy")):
        assert needle in message


def test_book_offline_skips_the_network(isolated, register_temp, monkeypatch, served):
    register_temp(toy_spec(served))
    monkeypatch.setenv("BOOK_OFFLINE", "1")
    with pytest.raises(DatasetUnavailable, match="BOOK_OFFLINE"):
        fetch_file("toy", "payload.bin")


def test_unknown_names_are_clear():
    with pytest.raises(KeyError, match="registered datasets"):
        registry.spec("no-such-dataset")
    with pytest.raises(KeyError, match="has no registered file"):
        registry.spec("mnist").file("nope.gz")
    with pytest.raises(ValueError, match="sha256"):
        registry.RemoteFile("x", ("https://example.org/x",))


def _tarball(path: Path, files: dict[str, bytes]) -> bytes:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path.read_bytes()


def test_folder_download_unpacks_once(isolated, register_temp):
    archive = isolated / "origin.tar.gz"
    data = _tarball(archive, {"toyset/train/a/1.txt": b"one", "toyset/test/a/2.txt": b"two"})
    register_temp(registry.DatasetSpec(
        name="toyset", title="toy", homepage="", licence="CC0", archive_root="toyset",
        files=(registry.RemoteFile("toyset.tar.gz", (archive.as_uri(),), sha256=sha256(data), archive=True),),
    ))
    first = fetch_folder("toyset")
    assert first.source == "download" and (first.path / "train" / "a" / "1.txt").read_bytes() == b"one"
    second = fetch_folder("toyset")
    assert second.source == "cache" and second.path == first.path


def test_folder_local_copy_checked_against_manifest(isolated, monkeypatch):
    root = isolated / "data"
    (root / "frames").mkdir(parents=True)
    (root / "frames" / "f1.jpg").write_bytes(b"jpeg")
    (root / "SHA256SUMS.txt").write_text(f"{sha256(b'jpeg')}  frames/f1.jpg\n")
    monkeypatch.setenv("BOOK_DATA_DIR", str(root))
    found = fetch_folder("frames")
    assert found.source == "BOOK_DATA_DIR" and not found.official and "1 files match" in found.verified
    (root / "frames" / "f1.jpg").write_bytes(b"jpeg, edited")
    with pytest.raises(ChecksumMismatch, match="frames/f1.jpg"):
        fetch_folder("frames")
    (root / "frames" / "f1.jpg").unlink()
    with pytest.raises(DatasetUnavailable, match="incomplete"):
        fetch_folder("frames")


def test_folder_without_source_says_where_to_put_it(isolated):
    with pytest.raises(DatasetUnavailable, match="no registered download source"):
        fetch_folder("my-cartoons")


def test_real_mnist_resolves_to_the_offline_copy(shared_data):
    found = fetch_file("mnist", "t10k-images-idx3-ubyte.gz")
    assert found.source == "BOOK_DATA_DIR" and found.official
    assert store.verify_local_copy(shared_data, "mnist") == "3 files match SHA256SUMS.txt"


def test_a_changed_official_archive_is_unpacked_again(isolated, register_temp):
    """The stamp holds the registered checksum of the archive unpacked; another archive re-unpacks."""
    def publish(content: bytes) -> None:
        archive = isolated / "origin.tar.gz"
        data = _tarball(archive, {"toyset/a.txt": content})
        register_temp(registry.DatasetSpec(
            name="toyset", title="toy", homepage="", licence="CC0", archive_root="toyset",
            files=(registry.RemoteFile("toyset.tar.gz", (archive.as_uri(),), sha256=sha256(data),
                                       archive=True),),
        ))
        (isolated / "cache" / "toyset" / "toyset.tar.gz").unlink(missing_ok=True)

    publish(b"first")
    assert (fetch_folder("toyset").path / "a.txt").read_bytes() == b"first"
    publish(b"second")
    found = fetch_folder("toyset")
    assert (found.path / "a.txt").read_bytes() == b"second"
    stamp = isolated / "cache" / "toyset" / ".unpacked-toyset.tar.gz"
    assert stamp.read_text().strip() == f"sha256:{registry.spec('toyset').files[0].sha256}"


def test_the_error_says_what_to_do(isolated, register_temp, monkeypatch):
    register_temp(toy_spec(UNREACHABLE))
    with pytest.raises(DatasetUnavailable) as online:
        fetch_file("toy", "payload.bin")
    assert "run again when" in str(online.value) and "download http" in str(online.value)
    monkeypatch.setenv("BOOK_OFFLINE", "1")
    with pytest.raises(DatasetUnavailable) as offline:
        fetch_file("toy", "payload.bin")
    message = str(offline.value)
    assert "connect to the internet" not in message
    assert "you are offline ($BOOK_OFFLINE is set)" in message and UNREACHABLE in message
    assert "set $BOOK_DATA_DIR to a folder that holds toy/" in message


def test_coco_mini_is_registered_with_its_book_sized_archive():
    assert registry.spec("coco-mini").files == ()
    assert registry.book_archive("coco-mini").filename == "coco-mini.tar.gz"
