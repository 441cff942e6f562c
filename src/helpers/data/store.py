"""Find a dataset on disk or download it once, always checked against a checksum.

Resolution order, for every dataset file:

1. ``$BOOK_DATA_DIR/<name>/``: a folder the reader (or CI) points at;
2. the user cache, ``$BOOK_CACHE_DIR`` or ``~/.cache/compressed-images-book/<name>/``;
3. a download from the official URL in ``helpers.data.registry``, written atomically
   (temporary file, checksum, then rename) into the cache;
4. otherwise ``DatasetUnavailable``, naming the dataset, every place looked in, the URL and
   ``BOOK_DATA_DIR``.

A checksum mismatch is always an error, on a cache hit too. Checksums are computed once
per process and file version (path, size, modification time).
"""

from __future__ import annotations

import hashlib
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
from helpers.data.registry import REGISTRY, RemoteFile, spec

ENV_DATA = "BOOK_DATA_DIR"
ENV_CACHE = "BOOK_CACHE_DIR"
ENV_OFFLINE = "BOOK_OFFLINE"
MANIFEST = "SHA256SUMS.txt"


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


_digests: dict[tuple[str, int, int, str], str] = {}


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file, memoised per (path, size, mtime) so a changed file is re-hashed."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns, algorithm)
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
                total = remote.size or int(response.headers.get("Content-Length") or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, desc=f"download {remote.filename}") as bar:
                    for block in iter(lambda: response.read(1 << 20), b""):
                        out.write(block)
                        bar.update(len(block))
            verify(tmp_path, remote)
            os.replace(tmp_path, dest)
            return True
        except ChecksumMismatch as err:
            log.append(f"{url}: downloaded, but {err}")
        except (urllib.error.URLError, OSError, ValueError) as err:
            log.append(f"{url}: {getattr(err, 'reason', err)}")
        finally:
            tmp_path.unlink(missing_ok=True)
    return False


def _unavailable(what: str, looked: list[str], log: list[str], hint: str) -> DatasetUnavailable:
    lines = [f"{what} is not available.", "Looked in:"]
    lines += [f"  - {entry}" for entry in looked + log]
    lines += [
        "What to do: connect to the internet and run again (the file is downloaded and cached once); "
        f"or {hint}; or set ${ENV_DATA} to a folder that holds it "
        f"(${ENV_DATA} is {os.environ.get(ENV_DATA) or 'not set'})."
    ]
    if any("mismatch" in entry or "expects" in entry for entry in log):
        return ChecksumMismatch("\n".join(lines))
    return DatasetUnavailable("\n".join(lines))


def fetch_file(name: str, filename: str) -> Location:
    """One registered file of dataset ``name``: from BOOK_DATA_DIR, the cache, or a download."""
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
    if _download(remote, cached, log):
        return Location(cached, "download", True, verify(cached, remote))
    raise _unavailable(
        f"Dataset {name!r}, file {filename!r}", looked, log,
        f"download {remote.urls[0]} yourself and put it at {cached}",
    )


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


def verify_local_copy(root: Path, name: str) -> str:
    """Check ``root/name`` against ``root/SHA256SUMS.txt``; return how it was checked."""
    entries = _manifest_entries(root, name)
    if entries is None:
        return f"unverified: no {MANIFEST} beside it"
    if not entries:
        return f"unverified: {MANIFEST} lists no files under {name}/"
    for rel, digest in sorted(entries.items()):
        path = root / rel
        if not path.is_file():
            raise DatasetUnavailable(
                f"local copy of {name!r} is incomplete: {MANIFEST} lists {rel}, which is missing under ${ENV_DATA}"
            )
        actual = file_digest(path)
        if actual != digest:
            raise ChecksumMismatch(
                f"${ENV_DATA}/{rel} has sha256 {actual}, but {MANIFEST} says {digest}: "
                "the local copy is corrupt or was changed; restore it from its source"
            )
    return f"{len(entries)} files match {MANIFEST}"


def _unpack(archive: Path, into: Path) -> None:
    """Unpack a .tar* or .zip archive into ``into`` atomically (temporary folder, then rename)."""
    stamp = into / f".unpacked-{archive.name}"
    if stamp.exists():
        return
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
        stamp.write_text(file_digest(archive) + "\n")
    except (tarfile.TarError, zipfile.BadZipFile, EOFError) as err:
        raise ChecksumMismatch(f"{archive.name} could not be unpacked ({err}); delete it and run again") from err
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def fetch_folder(name: str, *, local_copy: bool = True) -> Location:
    """A dataset folder in its official layout.

    With ``local_copy`` (the default) a folder ``$BOOK_DATA_DIR/<name>`` wins; it may be a
    reduced copy, checked against ``$BOOK_DATA_DIR/SHA256SUMS.txt`` when that file exists.
    Otherwise (or when ``local_copy=False``, for the full official set) the registered
    archives are taken from the cache or downloaded, checked, and unpacked once.
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
    if name not in REGISTRY:
        raise _unavailable(
            f"Dataset {name!r}", looked, ["download: this dataset has no registered download source"],
            f"put the images in a folder ${ENV_DATA}/{name}",
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
                f"download {remote.urls[0]} yourself and put it at {path}",
            )
        source = "download"
        checks.append(verify(path, remote))
    for remote in dataset.files:
        if remote.archive:
            _unpack(folder / remote.filename, folder)
    root = folder / dataset.archive_root if dataset.archive_root else folder
    return Location(root, source, True, "; ".join(sorted(set(checks))))
