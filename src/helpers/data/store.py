"""Find a dataset on disk or download it once, always checked against a checksum.

Resolution order, for every dataset:

1. ``$BOOK_DATA_DIR/<name>/``: a folder the reader (or CI) points at;
2. the user cache, ``$BOOK_CACHE_DIR`` or ``~/.cache/compressed-images-book/``;
3. the dataset's book-sized archive (``registry.BOOK_ARCHIVES``: the offline copy the
   cpu and smoke profiles use), downloaded from ``registry.book_data_url()``, checked
   and unpacked atomically into ``<cache>/book-sized/<name>/``;
4. only for what the book-sized copy does not hold, or with ``full`` /
   ``local_copy=False`` (the gpu profile): the official files in
   ``helpers.data.registry``, written atomically (temporary file, checksum, rename);
5. otherwise ``DatasetUnavailable``, naming the dataset, every place looked in, the
   URL and what to do (``BOOK_DATA_DIR``, the URL to fetch by hand, ``BOOK_OFFLINE``).

A checksum mismatch is always an error, on a cache hit too. Checksums are computed once
per process and file version (path, size, times, inode).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from helpers import BOOK_SLUG
from helpers.data.registry import REGISTRY, BookArchive, RemoteFile, book_archive, spec

ENV_DATA = "BOOK_DATA_DIR"
ENV_CACHE = "BOOK_CACHE_DIR"
ENV_OFFLINE = "BOOK_OFFLINE"
MANIFEST = "SHA256SUMS.txt"
BOOK_SIZED = "book-sized"  # cache folder of the unpacked book-sized archives
STAMP = ".archive-sha256"  # in an unpacked copy: the sha256 of its archive


class DatasetUnavailable(RuntimeError):
    """A dataset (or one of its files) is neither on disk nor downloadable."""


class ChecksumMismatch(RuntimeError):
    """A dataset file's content differs from its registered or manifest checksum."""


@dataclass(frozen=True)
class Location:
    """Where a dataset file or folder was found, and how it was checked."""

    path: Path
    source: str  # "BOOK_DATA_DIR", "cache" or "download"
    official: bool  # the publisher's own files (True) or a reduced local copy (False)
    verified: str  # how its content was checked

    def describe(self) -> str:
        """A machine-independent description, for provenance and printed output."""
        root = data_dir() if self.source == "BOOK_DATA_DIR" else cache_dir()
        try:
            shown = f"{'$' + ENV_DATA if self.source == 'BOOK_DATA_DIR' else '<cache>'}/{self.path.relative_to(root)}"
        except (ValueError, TypeError):
            shown = self.path.name
        kind = "official files" if self.official else "reduced local copy"
        return f"{shown} ({self.source}; {kind}; {self.verified})"


def data_dir() -> Path | None:
    """The folder named by ``$BOOK_DATA_DIR``, or None when unset."""
    value = os.environ.get(ENV_DATA)
    return Path(value).expanduser() if value else None


def cache_dir() -> Path:
    """The user cache of downloaded datasets (created on demand)."""
    value = os.environ.get(ENV_CACHE)
    if value:
        return Path(value).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / BOOK_SLUG


def offline() -> bool:
    """True when ``$BOOK_OFFLINE`` forbids downloads."""
    return os.environ.get(ENV_OFFLINE, "").lower() in {"1", "true", "yes"}


_digests: dict[tuple, str] = {}


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file, memoised per file version so a changed file is re-hashed.

    The version includes the inode and ctime: unpacked archives give every file mtime 0.
    """
    st = path.stat()
    times = (st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
    key = (str(path.resolve()), st.st_size, *times, algorithm)
    if key not in _digests:
        h = hashlib.new(algorithm)
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _digests[key] = h.hexdigest()
    return _digests[key]


def verify(path: Path, remote: RemoteFile) -> str:
    """Check ``path`` against the registry entry; return how it was checked or raise ``ChecksumMismatch``."""
    algorithm, expected = ("sha256", remote.sha256) if remote.sha256 else ("md5", remote.md5)
    actual = file_digest(path, algorithm)
    if actual != expected:
        raise ChecksumMismatch(
            f"{path} has {algorithm} {actual}, but the registry expects {expected} for {remote.filename}. "
            "The file is corrupt, truncated or a different version: delete it and run again "
            "(it will be fetched afresh), or restore the original."
        )
    return f"{algorithm} matches registry"


def _download(remote: RemoteFile, dest: Path, log: list[str]) -> bool:
    """Try each URL in turn; on success the verified file is at ``dest``. Failures go to ``log``."""
    if offline():
        log.append(f"download skipped: ${ENV_OFFLINE} is set")
        return False
    dest.parent.mkdir(parents=True, exist_ok=True)
    for url in remote.urls:
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
        tmp_path = Path(tmp)
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
                announced = int(response.headers.get("Content-Length") or 0) or None
                total = remote.size or announced
                received = 0
                with tqdm(total=total, unit="B", unit_scale=True, desc=f"download {remote.filename}") as bar:
                    for block in iter(lambda: response.read(1 << 20), b""):
                        out.write(block)
                        received += len(block)
                        bar.update(len(block))
            if total and received < total:
                raise ConnectionError(
                    f"download interrupted after {received:,} of {total:,} bytes"
                )
            verify(tmp_path, remote)
            os.replace(tmp_path, dest)
            return True
        except ChecksumMismatch as err:
            log.append(f"{url}: downloaded, but {err}")
        except (urllib.error.URLError, http.client.HTTPException, OSError,
                ValueError) as err:
            log.append(f"{url}: {getattr(err, 'reason', None) or err}")
        finally:
            tmp_path.unlink(missing_ok=True)
    return False


def _unavailable(what: str, looked: list[str], log: list[str], url: str | None,
                 place: str, name: str) -> DatasetUnavailable:
    """The error for a dataset not found: where we looked and what to do."""
    lines = [f"{what} is not available.", "Looked in:"]
    lines += [f"  - {entry}" for entry in looked + log]
    lines.append("What to do (any one):")
    if url and offline():
        lines.append(f"  - you are offline (${ENV_OFFLINE} is set): "
                     f"unset it to download {url} once;")
    elif url:
        lines.append(f"  - run again when {url} is reachable "
                     "(it is downloaded, checked and cached once);")
    if url:
        lines.append(f"  - download {url} yourself and put it at {place};")
    else:
        lines.append(f"  - {place};")
    lines.append(
        f"  - set ${ENV_DATA} to a folder that holds {name}/, e.g. the book's offline "
        f"datasets (${ENV_DATA} is {os.environ.get(ENV_DATA) or 'not set'})."
    )
    if any("mismatch" in entry or "expects" in entry for entry in log):
        return ChecksumMismatch("\n".join(lines))
    return DatasetUnavailable("\n".join(lines))


def _book_copy_ready(root: Path, archive: BookArchive) -> bool:
    stamp = root / STAMP
    return stamp.is_file() and stamp.read_text().strip() == archive.sha256


def _unpack_book_copy(archive_file: Path, root: Path, archive: BookArchive) -> None:
    """Unpack a verified book-sized archive into ``root`` (temporary folder, rename)."""
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.unpack-", dir=root.parent))
    old = root.parent / f".{root.name}.old-{os.getpid()}"
    try:
        with tarfile.open(archive_file) as tf:
            tf.extractall(tmp, filter="data")
        if not (tmp / MANIFEST).is_file() or not (tmp / archive.name).is_dir():
            raise ChecksumMismatch(
                f"{archive.filename} lacks {MANIFEST} or {archive.name}/: "
                "not a book archive"
            )
        (tmp / STAMP).write_text(archive.sha256 + "\n")
        if root.exists():
            os.replace(root, old)
        try:
            os.replace(tmp, root)
        except OSError:
            if not _book_copy_ready(root, archive):  # else another process was first
                raise
    except (tarfile.TarError, EOFError) as err:
        raise ChecksumMismatch(
            f"{archive.filename} could not be unpacked ({err}); run again"
        ) from err
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def fetch_book_copy(name: str, looked: list[str] | None = None) -> Location:
    """The book-sized copy of ``name``: unpacked in the cache, or fetched and unpacked.

    A copy unpacked from another version of the archive (the registry changed) is
    replaced.
    """
    archive = book_archive(name)
    if archive is None:
        raise KeyError(f"dataset {name!r} has no book-sized archive")
    looked = list(looked or [])
    root = cache_dir() / BOOK_SIZED / name
    label, remedy = str(root), f"delete {root} and run again (it is fetched afresh)"
    if _book_copy_ready(root, archive):
        checked = verify_local_copy(root, name, label, remedy)
        return Location(root / name, "cache", False, checked)
    state = "from another archive version" if root.exists() else "no such folder"
    looked.append(f"cache {root}: {state}")
    download = cache_dir() / BOOK_SIZED / archive.filename
    log: list[str] = []
    source = "download"
    try:
        if download.is_file():  # put there by hand, or left by an interrupted unpack
            verify(download, archive.remote())
            source = "cache"
        elif not _download(archive.remote(), download, log):
            raise _unavailable(
                f"Dataset {name!r} (its book-sized archive {archive.filename}, "
                f"{archive.size / 1e6:.1f} MB)",
                looked, log, archive.url, str(download), name,
            )
        _unpack_book_copy(download, root, archive)
    finally:
        if source == "download" or _book_copy_ready(root, archive):
            download.unlink(missing_ok=True)  # a wrong file put there by hand stays
    checked = verify_local_copy(root, name, label, remedy)
    return Location(root / name, source, False, checked)


def fetch_file(name: str, filename: str) -> Location:
    """A file of ``name``: BOOK_DATA_DIR, cache, book-sized copy, or official URL."""
    remote = spec(name).file(filename)
    looked: list[str] = []
    local_root = data_dir()
    if local_root is not None:
        candidate = local_root / name / filename
        if candidate.is_file():
            return Location(candidate, "BOOK_DATA_DIR", True, verify(candidate, remote))
        looked.append(f"${ENV_DATA}/{name}/{filename}: no such file")
    else:
        looked.append(f"${ENV_DATA}: not set")
    cached = cache_dir() / name / filename
    if cached.is_file():
        return Location(cached, "cache", True, verify(cached, remote))
    looked.append(f"cache {cached}: no such file")
    log: list[str] = []
    archive = book_archive(name)
    if archive is not None and remote.sha256 and archive.holds(filename, remote.sha256):
        try:
            copy = fetch_book_copy(name)
            path = copy.path / filename
            return Location(path, copy.source, True, verify(path, remote))
        except (DatasetUnavailable, ChecksumMismatch) as err:
            why = str(err).splitlines()[0]
            log.append(f"book-sized archive {archive.url}: not available ({why})")
    if _download(remote, cached, log):
        return Location(cached, "download", True, verify(cached, remote))
    raise _unavailable(f"Dataset {name!r}, file {filename!r}", looked, log,
                       remote.urls[0], str(cached), name)


def _manifest_entries(root: Path, name: str) -> dict[str, str] | None:
    manifest = root / MANIFEST
    if not manifest.is_file():
        return None
    entries = {}
    for line in manifest.read_text().splitlines():
        if line.strip():
            digest, rel = line.split(maxsplit=1)
            rel = rel.lstrip("*")
            if rel.startswith(f"{name}/"):
                entries[rel] = digest
    return entries


def verify_local_copy(root: Path, name: str, label: str = f"${ENV_DATA}",
                      remedy: str = "restore it from its source") -> str:
    """Check ``root/name`` against ``root/SHA256SUMS.txt``; return how it was checked.

    ``label`` names ``root`` in errors; ``remedy`` says how to repair a damaged copy.
    """
    entries = _manifest_entries(root, name)
    if entries is None:
        return f"unverified: no {MANIFEST} beside it"
    if not entries:
        return f"unverified: {MANIFEST} lists no files under {name}/"
    for rel, digest in sorted(entries.items()):
        path = root / rel
        if not path.is_file():
            raise DatasetUnavailable(
                f"local copy of {name!r} is incomplete: {MANIFEST} lists {rel}, "
                f"which is missing under {label}; {remedy}"
            )
        actual = file_digest(path)
        if actual != digest:
            raise ChecksumMismatch(
                f"{label}/{rel} has sha256 {actual}, but {MANIFEST} says {digest}: "
                f"the local copy is corrupt or was changed; {remedy}"
            )
    return f"{len(entries)} files match {MANIFEST}"


def _stamp_of(remote: RemoteFile) -> str:
    return f"sha256:{remote.sha256}" if remote.sha256 else f"md5:{remote.md5}"


def _unpack(archive: Path, into: Path, remote: RemoteFile) -> None:
    """Unpack a verified .tar* or .zip archive into ``into`` (temporary folder first).

    A stamp records the registered checksum of the archive unpacked; a different archive
    (the registry changed) is unpacked again over the old files.
    """
    stamp = into / f".unpacked-{archive.name}"
    if stamp.is_file() and stamp.read_text().strip() == _stamp_of(remote):
        return
    stamp.unlink(missing_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".unpack-", dir=into))
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(tmp)
        else:
            with tarfile.open(archive) as tf:
                tf.extractall(tmp, filter="data")
        for entry in tmp.iterdir():
            target = into / entry.name
            if target.exists():
                shutil.rmtree(target) if target.is_dir() else target.unlink()
            os.replace(entry, target)
        stamp.write_text(_stamp_of(remote) + "\n")
    except (tarfile.TarError, zipfile.BadZipFile, EOFError) as err:
        raise ChecksumMismatch(f"{archive.name} could not be unpacked ({err}); delete it and run again") from err
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def fetch_folder(name: str, *, local_copy: bool = True) -> Location:
    """A dataset folder in its official layout.

    With ``local_copy`` (the default: the cpu and smoke profiles) a folder
    ``$BOOK_DATA_DIR/<name>`` wins; it may be a reduced copy, checked against
    ``$BOOK_DATA_DIR/SHA256SUMS.txt`` when that file exists. Next comes the dataset's
    book-sized archive, when it has one (cache, or download). The official archives
    (cache or download, checked, unpacked once) serve ``local_copy=False`` (the gpu
    profile's full set) and datasets that have no book-sized archive.
    """
    looked: list[str] = []
    local_root = data_dir()
    if local_copy and local_root is not None:
        candidate = local_root / name
        if candidate.is_dir():
            return Location(candidate, "BOOK_DATA_DIR", False, verify_local_copy(local_root, name))
        looked.append(f"${ENV_DATA}/{name}: no such folder")
    elif local_copy:
        looked.append(f"${ENV_DATA}: not set")
    if local_copy and book_archive(name) is not None:
        return fetch_book_copy(name, looked)
    if name not in REGISTRY or not spec(name).files:
        raise _unavailable(
            f"Dataset {name!r}", looked, ["download: this dataset has no registered download source"],
            None, f"put the images in a folder ${ENV_DATA}/{name}", name,
        )
    dataset = spec(name)
    folder = cache_dir() / name
    log: list[str] = []
    source = "cache"
    checks = []
    for remote in dataset.files:
        path = folder / remote.filename
        if path.is_file():
            checks.append(verify(path, remote))
            continue
        looked.append(f"cache {path}: no such file")
        if not _download(remote, path, log):
            raise _unavailable(
                f"Dataset {name!r}, file {remote.filename!r}", looked, log,
                remote.urls[0], str(path), name,
            )
        source = "download"
        checks.append(verify(path, remote))
    for remote in dataset.files:
        if remote.archive:
            _unpack(folder / remote.filename, folder, remote)
    root = folder / dataset.archive_root if dataset.archive_root else folder
    return Location(root, source, True, "; ".join(sorted(set(checks))))
