"""Provenance of a chapter run and its machine-readable results file.

A chapter calls ``run = results.start("01", profile, seed)`` in its setup cell, records the
data it read with ``run.add_data(...)``, and ends with ``run.finish(metrics, claims)``,
which writes ``results/<chapter>.<profile>.json`` atomically. The scoreboard and status
pages of the book are generated from those files (``helpers.core.scoreboard``).
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping

import pandas as pd
import psutil
import torch
import torchvision

import helpers
from helpers.core.profiles import DRYRUN, Profile, get

VERDICTS = ("reproduced", "differs", "not comparable")
ENV_RESULTS = "BOOK_RESULTS_DIR"
CODE_PATHS = ("src", "pyproject.toml", "constraints.txt")


@dataclass(frozen=True)
class Claim:
    """One claim of a study beside our measurement of it."""

    id: str
    claim: str
    paper: Any
    ours: Any
    verdict: str
    why: str

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"claim {self.id!r}: verdict {self.verdict!r} is not one of {VERDICTS}")
        if not self.why.strip():
            raise ValueError(f"claim {self.id!r}: say why the verdict was given")


def at_a_glance(claims: Iterable[Claim]) -> pd.DataFrame:
    """Claim, paper, ours and verdict of each claim: the table at the top of a chapter."""
    rows = [{"claim": c.claim, "paper": _short(c.paper), "ours": _short(c.ours), "verdict": c.verdict}
            for c in claims]
    return pd.DataFrame(rows, index=[c.id for c in claims])


def _short(value: Any) -> str:
    """A paper or measured value as text for a summary table (dicts and lists spelled out)."""
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {_short(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(_short(v) for v in value)
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def glue(name: str, value: Any) -> None:
    """Store ``value`` for the book's ``{glue:}`` references (myst-nb); nothing where myst-nb is absent.

    The website shows a glued value wherever the chapter's markdown names it (e.g. the "Results at
    a glance" box at the top); a reader running the chapter in Colab sees the value where it is
    computed instead.
    """
    try:
        from myst_nb import glue as myst_glue
    except ImportError:
        return
    myst_glue(name, value, display=False)


def project_root(start: Path | None = None) -> Path | None:
    """The book's checkout (the folder holding ``_config.yml`` and ``chapters/``), if inside one."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "_config.yml").is_file() and (folder / "chapters").is_dir():
            return folder
    return None


def results_dir() -> Path:
    """Where results files go: ``$BOOK_RESULTS_DIR``, else ``<checkout>/results``, else ``./results``."""
    if os.environ.get(ENV_RESULTS):
        return Path(os.environ[ENV_RESULTS])
    root = project_root()
    return (root / "results") if root else Path("results")


def dryrun_dir() -> Path:
    """Where dry runs leave their notebooks and results: ``<checkout>/_build/runs/dryrun``, never ``results/``."""
    root = project_root()
    return (root if root else Path(".")) / "_build" / "runs" / DRYRUN


def _git_commit() -> tuple[str, bool | None]:
    root = project_root() or Path(helpers.__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True)
        # "dirty" means the code that produces the numbers changed: the package or its pins. The
        # notebook being executed and the results/pages it writes are always changing during a run.
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", *CODE_PATHS],
            cwd=root, capture_output=True, text=True, check=True,
        )
        return commit.stdout.strip(), bool(status.stdout.strip())
    except (OSError, subprocess.CalledProcessError):
        return f"package {helpers.__version__} (no git checkout)", None


def device_name(device: str) -> str:
    """A readable name of the compute device: the GPU model, or the CPU and its core count."""
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    cpu = platform.processor() or platform.machine()
    threads = torch.get_num_threads()
    return f"CPU ({cpu}, {os.cpu_count()} cores, {threads} torch thread{'' if threads == 1 else 's'})"


def _plain(value: Any) -> Any:
    """JSON-ready copy of ``value``: arrays and tensors to lists, tuples to lists, NaN to None."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if hasattr(value, "tolist"):  # NumPy arrays and scalars, torch tensors
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot store {type(value).__name__} in a results file: {value!r}")


@dataclass
class Run:
    """One execution of a chapter: profile, seed, data read, timing."""

    chapter: str
    profile: Profile
    seed: int
    started: float = field(default_factory=time.perf_counter)
    started_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    data: dict[str, dict[str, Any]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def add_data(self, name: str, source: str, **counts: int) -> None:
        """Record a dataset the chapter read: where from (machine-independent) and how many items."""
        self.data[name] = {"source": source, **counts}

    def note(self, **items: Any) -> None:
        """Record extra provenance (weights used, throughput, settings)."""
        self.extra.update(items)

    def provenance(self) -> dict[str, Any]:
        """Everything needed to tell how, where and on what the results were produced."""
        commit, dirty = _git_commit()
        return _plain({
            "chapter": self.chapter,
            "profile": self.profile.name,
            "seed": self.seed,
            "device": device_name(self.profile.device),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "platform": f"{platform.system()} {platform.machine()}",
            "git_commit": commit,
            "git_dirty": dirty,
            "started_at": self.started_at,
            "wall_s": round(time.perf_counter() - self.started, 1),
            "peak_rss_mib": round(_peak_rss_mib(), 0),
            "data": self.data,
            **self.extra,
        })

    def finish(self, metrics: Mapping[str, Any], claims: Iterable[Claim] = (), paper: Mapping[str, Any] | None = None) -> dict:
        """Write the results file and return the stored record."""
        return save(self.chapter, self.profile.name, metrics, self.provenance(), claims, paper)


def _peak_rss_mib() -> float:
    """Peak resident memory of this process in MiB (Linux and macOS)."""
    try:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 1024 if sys.platform != "darwin" else peak / 2**20
    except ImportError:  # Windows
        return psutil.Process().memory_info().peak_wset / 2**20


def start(chapter: str, profile: Profile | str, seed: int = 0) -> Run:
    """Begin timing a chapter run."""
    return Run(chapter, get(profile) if isinstance(profile, str) else profile, seed)


def save(
    chapter: str,
    profile: str,
    metrics: Mapping[str, Any],
    provenance: Mapping[str, Any],
    claims: Iterable[Claim] = (),
    paper: Mapping[str, Any] | None = None,
    directory: Path | None = None,
) -> dict:
    """Write ``results/<chapter>.<profile>.json`` atomically and return what was written."""
    get(profile)  # validates the name
    record = {
        "chapter": chapter,
        "profile": profile,
        "provenance": _plain(provenance),
        "metrics": _plain(metrics),
        "paper": _plain(paper or {}),
        "claims": [_plain(c.__dict__) for c in claims],
    }
    directory = directory or (dryrun_dir() if profile == DRYRUN else results_dir())
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"{chapter}.{profile}.json"
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=directory)
    with os.fdopen(fd, "w") as f:
        json.dump(record, f, indent=1, ensure_ascii=False)
        f.write("\n")
    os.replace(tmp, target)
    return record


def load_all(directory: Path | None = None) -> list[dict]:
    """Every results file in ``directory``, sorted by chapter then profile."""
    directory = directory or results_dir()
    records = []
    for path in sorted(directory.glob("*.json")):
        record = json.loads(path.read_text())
        for key in ("chapter", "profile", "provenance", "metrics"):
            if key not in record:
                raise ValueError(f"{path.name}: not a results file (no {key!r})")
        records.append(record)
    return records


PAGE_WIDTH = 100  # characters of printed output that fit a chapter page's code column at 1280 px


def wrap(text: object, width: int = PAGE_WIDTH) -> str:
    """``str(text)`` with every line longer than ``width`` wrapped at spaces (continuations indented).

    For chapters' prints: a long sentence or a dataclass's repr stays readable on the page
    instead of running past its right edge. Lines that fit are left as they are.
    """
    out = []
    for line in str(text).splitlines() or [""]:
        if len(line) <= width:
            out.append(line)
            continue
        indent = line[: len(line) - len(line.lstrip())] + "  "
        out.extend(textwrap.wrap(line, width, subsequent_indent=indent, break_on_hyphens=False))
    return "\n".join(out)


def format_provenance(provenance: Mapping[str, Any], width: int = PAGE_WIDTH) -> str:
    """The provenance record as aligned ``key: value`` lines for the chapter's last cell.

    Lines longer than ``width`` characters wrap at spaces, indented under their key, so that
    the record fits the page.
    """
    key_width = max(len(k) for k in provenance)
    lines = []

    def add(text: str, indent: str) -> None:
        lines.extend(textwrap.wrap(text, width, subsequent_indent=indent, break_long_words=False,
                                   break_on_hyphens=False) or [text])

    for key, value in provenance.items():
        if not isinstance(value, Mapping):
            add(f"{key:<{key_width}}  {value}", " " * (key_width + 4))
            continue
        lines.append(f"{key}:")
        for name, item in value.items():
            if isinstance(item, Mapping):
                item = ", ".join(f"{k}={v}" for k, v in item.items())
            add(f"  {name}: {item}", "      ")
    return "\n".join(lines)
