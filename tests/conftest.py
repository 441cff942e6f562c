"""Shared fixtures: an isolated data environment and the offline datasets beside the checkout."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from helpers.data import registry

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    """No BOOK_DATA_DIR, an empty cache in tmp, downloads allowed (tests use file:// URLs)."""
    monkeypatch.delenv("BOOK_DATA_DIR", raising=False)
    monkeypatch.delenv("BOOK_OFFLINE", raising=False)
    monkeypatch.setenv("BOOK_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("TQDM_DISABLE", "1")
    return tmp_path


@pytest.fixture
def shared_data() -> Path:
    """The offline datasets (``$BOOK_DATA_DIR``); CI requires them, elsewhere the test is skipped."""
    value = os.environ.get("BOOK_DATA_DIR")
    if value and Path(value).is_dir():
        return Path(value)
    if os.environ.get("BOOK_REQUIRE_DATA") == "1":
        pytest.fail("BOOK_REQUIRE_DATA=1 but BOOK_DATA_DIR does not point at the datasets")
    pytest.skip("BOOK_DATA_DIR is not set (make test sets it when ../shared/datasets exists)")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def register_temp(monkeypatch):
    """Register a throw-away dataset for one test: ``register_temp(spec)``."""

    def add(spec: registry.DatasetSpec) -> registry.DatasetSpec:
        monkeypatch.setitem(registry.REGISTRY, spec.name, spec)
        return spec

    return add


_passed = 0


def pytest_runtest_logreport(report):
    global _passed
    if report.when == "call" and report.passed:
        _passed += 1


def pytest_sessionfinish(session, exitstatus):
    """A run in which nothing passed is a failure, even if everything was skipped."""
    if exitstatus == 0 and _passed == 0 and not session.config.option.collectonly:
        session.exitstatus = 1


# The toleranced smoke-metrics tests compare what the notebook copies wrote in this session, so
# they run after every nbval item, whatever order the files are collected in.
SMOKE_METRICS_TEST = "test_smoke_metrics.py"


def pytest_sessionstart(session):
    session.config.book_started = time.time()
    session.config.book_copies_collected = set()


def pytest_collection_modifyitems(session, config, items):
    copies = {Path(str(i.fspath)).name for i in items if str(i.fspath).endswith(".ipynb")}
    config.book_copies_collected = copies
    late = [i for i in items if Path(str(i.fspath)).name == SMOKE_METRICS_TEST]
    items[:] = [i for i in items if Path(str(i.fspath)).name != SMOKE_METRICS_TEST] + late
