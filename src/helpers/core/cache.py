"""Load if cached, else build: verified, atomic caching of expensive artifacts.

Trained models, encoded datasets and feature tensors go to ``<cache>/artifacts/<kind>/`` as
``torch.save`` files, each with a ``.sha256`` sidecar. A file whose content no longer matches
its sidecar (truncated, edited, half-written) is treated as missing and rebuilt, never loaded.
``Checkpointer`` gives training loops the same guarantees for resuming after an interruption.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, TypeVar

import torch

from helpers.data.store import cache_dir, file_digest

T = TypeVar("T")


ENV_ARTIFACTS = "BOOK_ARTIFACTS_DIR"  # a dry run points it at an empty folder: nothing is loaded, nothing kept


def artifact_dir(kind: str) -> Path:
    """``<cache>/artifacts/<kind>`` (or ``$BOOK_ARTIFACTS_DIR/<kind>``), created on demand."""
    base = Path(os.environ[ENV_ARTIFACTS]) if os.environ.get(ENV_ARTIFACTS) else cache_dir() / "artifacts"
    folder = base / kind
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def key_of(**parts: Any) -> str:
    """A short, stable key for a configuration (same parts, same key)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def atomic_save(obj: Any, path: Path) -> Path:
    """``torch.save`` to a temporary file, record its sha256, then rename into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        digest = file_digest(Path(tmp))
        os.replace(tmp, path)
        sidecar_tmp = _sidecar(path).with_suffix(".tmp")
        sidecar_tmp.write_text(digest + "\n")
        os.replace(sidecar_tmp, _sidecar(path))
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def load_verified(path: Path, *, weights_only: bool = True) -> Any | None:
    """The object saved at ``path`` if it is intact, else None (a corrupt file is removed)."""
    sidecar = _sidecar(path)
    if not (path.is_file() and sidecar.is_file()):
        return None
    if file_digest(path) != sidecar.read_text().strip():
        path.unlink(missing_ok=True)
        sidecar.unlink(missing_ok=True)
        return None
    return torch.load(path, map_location="cpu", weights_only=weights_only)


def load_or_build(kind: str, key: str, build: Callable[[], T], *, weights_only: bool = True) -> tuple[T, bool]:
    """``(object, was_cached)``: the cached ``<kind>/<key>.pt`` if intact, else ``build()`` saved there."""
    path = artifact_dir(kind) / f"{key}.pt"
    cached = load_verified(path, weights_only=weights_only)
    if cached is not None:
        return cached, True
    obj = build()
    atomic_save(obj, path)
    return obj, False


class Checkpointer:
    """Save and resume a training state (a dict of state_dicts, counters, histories) atomically."""

    def __init__(self, path: Path, every: int = 1) -> None:
        self.path = Path(path)
        self.every = max(1, every)

    def load(self) -> dict | None:
        """The last intact checkpoint, or None to start from scratch."""
        return load_verified(self.path, weights_only=False)

    def maybe_save(self, step: int, state: Callable[[], dict]) -> bool:
        """Save ``state()`` when ``step`` is a multiple of ``every``; return whether it saved."""
        if step % self.every:
            return False
        atomic_save(state(), self.path)
        return True

    def save(self, state: dict) -> None:
        """Save now (e.g. at the end of training)."""
        atomic_save(state, self.path)

    def clear(self) -> None:
        """Remove the checkpoint (after a finished run has stored its result elsewhere)."""
        self.path.unlink(missing_ok=True)
        _sidecar(self.path).unlink(missing_ok=True)
