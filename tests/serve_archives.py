"""Serve the book-sized data archives on 127.0.0.1 and run a command that uses them.

    python tests/serve_archives.py [--source DIR] [--cache DIR] [-- COMMAND ...]

Packs the offline datasets (``--source``, default ``$BOOK_DATA_DIR`` or
``../shared/datasets``) into a temporary folder, checks each archive against the
registry, serves the folder over HTTP on a free port of 127.0.0.1, and runs COMMAND
(default ``make test``) with ``BOOK_DATA_URL`` pointing at the server, ``BOOK_DATA_DIR``
unset and an empty cache (``--cache`` keeps one). Reports the bytes downloaded.
``ArchiveServer`` is also the tests' server (tests/test_data_download.py).
"""

from __future__ import annotations

import argparse
import functools
import os
import subprocess
import sys
import tempfile
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BLOCK = 64 * 1024


class _Handler(SimpleHTTPRequestHandler):
    """Serves files of one folder; counts the bytes sent; may cut a body short."""

    timeout = 30  # seconds a silent client may hold a connection

    def copyfile(self, source, outputfile) -> None:
        limit = self.server.cut_after
        sent = 0
        for block in iter(lambda: source.read(BLOCK), b""):
            if limit is not None and sent + len(block) > limit:
                outputfile.write(block[: limit - sent])
                sent = limit
                self.close_connection = (
                    True  # the client sees the connection close early
                )
                break
            outputfile.write(block)
            sent += len(block)
        self.server.record(self.path, sent)

    def log_message(self, format, *args) -> None:  # noqa: A002 - the base class's name
        pass


class ArchiveServer(ThreadingHTTPServer):
    """An HTTP server of ``folder`` on 127.0.0.1 (a free port); ``start`` runs it."""

    daemon_threads = True

    def __init__(self, folder: Path) -> None:
        super().__init__(
            ("127.0.0.1", 0), functools.partial(_Handler, directory=str(folder))
        )
        self.folder = Path(folder)
        self.cut_after: int | None = None  # bytes of each body to send before closing
        self.served: dict[str, int] = {}  # path -> bytes sent
        self.requests = 0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL (ends with a slash)."""
        return f"http://127.0.0.1:{self.server_address[1]}/"

    def record(self, path: str, sent: int) -> None:
        """Count one response body."""
        with self._lock:
            self.requests += 1
            self.served[path] = self.served.get(path, 0) + sent

    @property
    def total_bytes(self) -> int:
        """Bytes of every body sent so far."""
        with self._lock:
            return sum(self.served.values())

    def start(self) -> "ArchiveServer":
        """Serve in a daemon thread."""
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)


def _default_source() -> Path | None:
    value = os.environ.get("BOOK_DATA_DIR")
    if value:
        return Path(value)
    beside = ROOT.parent / "shared" / "datasets"
    return beside if beside.is_dir() else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--source",
        type=Path,
        default=_default_source(),
        help="the offline datasets folder",
    )
    parser.add_argument(
        "--cache", type=Path, help="BOOK_CACHE_DIR for the run (default: empty)"
    )
    parser.add_argument("command", nargs="*", help="what to run (default: make test)")
    args = parser.parse_args(argv)
    if args.source is None or not args.source.is_dir():
        parser.error(
            "no offline datasets folder: pass --source DIR or set BOOK_DATA_DIR"
        )
    sys.path.insert(0, str(ROOT / "src"))
    from helpers.data import archives
    from helpers.data.registry import BOOK_ARCHIVES

    with tempfile.TemporaryDirectory(prefix="book-archives-") as tmp:
        packed = archives.pack_all(args.source, Path(tmp) / "archives")
        stale = [
            a.name
            for a in packed
            if BOOK_ARCHIVES.get(a.name) is None
            or BOOK_ARCHIVES[a.name].sha256 != a.sha256
        ]
        if stale:
            print(
                f"the registry does not match the packed archives of {stale}: "
                "run `python -m helpers data pack --write-registry` first",
                file=sys.stderr,
            )
            return 2
        server = ArchiveServer(Path(tmp) / "archives").start()
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("BOOK_OFFLINE", "BOOK_REQUIRE_DATA")
        }
        env.update(
            BOOK_DATA_URL=server.url,
            BOOK_DATA_DIR="",
            BOOK_CACHE_DIR=str(args.cache or Path(tmp) / "cache"),
        )
        command = args.command or ["make", "test", "BOOK_DATA_DIR="]
        print(
            f"serving {len(packed)} archives at {server.url}; "
            f"running {' '.join(command)}"
        )
        try:
            code = subprocess.call(command, cwd=ROOT, env=env)
        finally:
            server.stop()
        for path, sent in sorted(server.served.items()):
            print(f"downloaded {path}: {sent:,} bytes")
        print(
            f"total downloaded: {server.total_bytes:,} bytes "
            f"in {server.requests} requests "
            f"(goal < 250 MB); command exit status {code}"
        )
        return code


if __name__ == "__main__":
    sys.exit(main())
