"""Book-sized data archives: each offline dataset folder as one deterministic .tar.gz.

An archive holds ``SHA256SUMS.txt`` (one ``<sha256>  <name>/<path>`` line per file) and
the folder ``<name>/`` in its original public layout. Entries are sorted by name and
carry fixed metadata (mtime 0, uid/gid 0, mode 0644, no user names); the gzip header
has mtime 0 and no file name. Packing the same files gives the same bytes, and the same
sha256, on any machine with the same zlib. ``write_registry`` records each archive's
sha256 and size in ``helpers/data/book_archives.py``, which the registry reads.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from helpers.data.store import MANIFEST, verify_local_copy

DATASETS = (
    "mnist",
    "fashion-mnist",
    "frames",
    "mvtec",
    "food",
    "imagenette",
    "coco-mini",
)
RELEASE = "data-v1"  # the GitHub release tag the archives are uploaded to
REGISTRY_MODULE = Path(__file__).with_name("book_archives.py")
TOP_DIGEST_CHARS = 16  # top-level files are recorded by a prefix of their sha256


@dataclass(frozen=True)
class PackedArchive:
    """One packed archive: where it is, its checksum and what it holds."""

    name: str
    path: Path
    sha256: str
    size: int
    files: int
    unpacked_bytes: int
    top: dict[
        str, str | None
    ]  # top-level entries: sha256 prefix of a file, None for a folder


def dataset_files(folder: Path) -> list[str]:
    """Every regular file under ``folder``, sorted relative POSIX paths (no links)."""
    if not folder.is_dir():
        raise FileNotFoundError(f"dataset folder {folder} does not exist")
    names = []
    for path in folder.rglob("*"):
        if path.is_symlink():
            raise ValueError(
                f"{path} is a symbolic link: archives hold regular files only"
            )
        if path.is_file():
            names.append(path.relative_to(folder).as_posix())
    if not names:
        raise ValueError(f"dataset folder {folder} holds no files")
    return sorted(names)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _entry(arcname: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(arcname)
    info.size, info.mtime, info.mode = size, 0, 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def pack_folder(root: Path, name: str, out_dir: Path) -> PackedArchive:
    """Pack ``root/name`` into ``out_dir/<name>.tar.gz`` (atomically); describe it.

    When ``root`` has a ``SHA256SUMS.txt``, the folder is checked against it first.
    """
    root, out_dir = Path(root), Path(out_dir)
    folder = root / name
    files = dataset_files(folder)
    if (root / MANIFEST).is_file():
        verify_local_copy(root, name)
    digests = {rel: _sha256(folder / rel) for rel in files}
    manifest = "".join(f"{digests[rel]}  {name}/{rel}\n" for rel in files).encode()
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{name}.tar.gz"
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=out_dir)
    try:
        with (
            os.fdopen(fd, "wb") as raw,
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz,
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
        ):
            tar.addfile(_entry(MANIFEST, len(manifest)), io.BytesIO(manifest))
            for rel in files:
                path = folder / rel
                with path.open("rb") as f:
                    tar.addfile(_entry(f"{name}/{rel}", path.stat().st_size), f)
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)
    top: dict[str, str | None] = {}
    for rel in files:
        head, _, rest = rel.partition("/")
        top[head] = None if rest else digests[rel][:TOP_DIGEST_CHARS]
    return PackedArchive(
        name,
        target,
        _sha256(target),
        target.stat().st_size,
        len(files),
        sum((folder / rel).stat().st_size for rel in files),
        dict(sorted(top.items())),
    )


def pack_all(
    root: Path, out_dir: Path, names: tuple[str, ...] = DATASETS
) -> list[PackedArchive]:
    """Pack each dataset folder in ``names`` under ``root`` (all must be there)."""
    missing = [n for n in names if not (Path(root) / n).is_dir()]
    if missing:
        raise FileNotFoundError(f"{root} lacks the dataset folder(s) {missing}")
    return [pack_folder(root, name, out_dir) for name in names]


def repository_url(config: Path) -> str:
    """The repository address in the book's ``_config.yml`` (``repository.url``)."""
    import yaml

    url = (
        (yaml.safe_load(Path(config).read_text()) or {})
        .get("repository", {})
        .get("url")
    )
    if not url:
        raise ValueError(
            f"{config} has no repository.url: the release address derives from it"
        )
    return str(url).rstrip("/")


def registry_source(
    packed: dict[str, dict], repository: str, release: str = RELEASE
) -> str:
    """The text of ``book_archives.py`` for the records ``packed`` (name -> record)."""
    lines = [
        '"""The book-sized data archives: sha256, size and contents (generated).',
        "",
        "Written by `python -m helpers data pack --write-registry`: do not edit.",
        '"""',
        "",
        f"REPOSITORY = {repository!r}",
        f"RELEASE = {release!r}",
        "ARCHIVES: dict[str, dict] = {",
    ]
    for name in sorted(packed):
        record = packed[name]
        lines.append(f"    {name!r}: {{")
        for key in ("filename", "sha256", "size", "files", "unpacked_bytes"):
            lines.append(f"        {key!r}: {record[key]!r},")
        lines.append("        'top': {")
        lines += [
            f"            {k!r}: {v!r}," for k, v in sorted(record["top"].items())
        ]
        lines += ["        },", "    },"]
    lines.append("}")
    return "\n".join(lines).replace("'", '"') + "\n"


def record_of(archive: PackedArchive) -> dict:
    """The registry record of one packed archive."""
    return {
        "filename": archive.path.name,
        "sha256": archive.sha256,
        "size": archive.size,
        "files": archive.files,
        "unpacked_bytes": archive.unpacked_bytes,
        "top": archive.top,
    }


def write_registry(
    packed: list[PackedArchive],
    repository: str,
    path: Path = REGISTRY_MODULE,
    release: str = RELEASE,
) -> Path:
    """Record ``packed`` in ``path`` atomically (other datasets' entries are kept)."""
    from helpers.data.book_archives import ARCHIVES

    records = dict(ARCHIVES) if Path(path) == REGISTRY_MODULE else {}
    records.update({a.name: record_of(a) for a in packed})
    tmp = Path(path).with_suffix(".tmp")
    tmp.write_text(registry_source(records, repository, release))
    os.replace(tmp, path)
    return Path(path)
