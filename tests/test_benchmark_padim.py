"""benchmarks/padim_compare.py: --quick writes the promised JSON; anomalib stays optional."""

import json
import subprocess
import sys

import pytest
from conftest import ROOT

BENCHMARKS = ROOT / "benchmarks"
ROW_KEYS = {
    "implementation",
    "crop",
    "resize",
    "dims",
    "status",
    "train",
    "test",
    "threads",
    "fit_s",
    "infer_s",
    "total_s",
    "backbone_s",
    "baseline_rss_mib",
    "peak_rss_above_baseline_mib",
    "image_auc",
    "pixel_auc",
}


def quick(tmp_path, only: str) -> dict:
    """Run ``--quick --only <only>`` in a subprocess and read what it wrote."""
    out = tmp_path / "padim_benchmark.json"
    done = subprocess.run(
        [
            sys.executable,
            str(BENCHMARKS / "padim_compare.py"),
            "--quick",
            "--only",
            only,
            "--threads",
            "1",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(out.read_text())


def test_quick_book_run_writes_environment_rows_and_ratios(shared_data, tmp_path):
    record = quick(tmp_path, "book")
    assert record["quick"] is True
    assert {"cpu", "threads", "torch", "date"} <= set(record["environment"])
    (row,) = record["rows"]
    assert ROW_KEYS <= set(row) and row["status"] == "ok"
    assert (
        row["implementation"],
        row["crop"],
        row["dims"],
        row["train"],
        row["test"],
    ) == ("book", 64, 100, 24, 24)
    assert 0 <= row["image_auc"] <= 1 and 0 <= row["pixel_auc"] <= 1
    assert (
        0 < row["backbone_s"] < row["total_s"]
        and row["peak_rss_above_baseline_mib"] > 0
    )
    (ratio,) = record["ratios"]
    assert 0 < ratio["book_padim_share_of_total"] < 1


def test_quick_anomalib_run_agrees_with_the_book(shared_data, tmp_path):
    pytest.importorskip("anomalib")
    record = quick(tmp_path, "book,anomalib")
    book, anomalib = record["rows"]
    assert anomalib["status"] == "ok" and anomalib["map_pearson_r"] > 0.99
    assert abs(anomalib["image_auc"] - book["image_auc"]) < 0.05
    assert {"book_speedup_vs_anomalib", "peak_rss_ratio_anomalib_over_book"} <= set(
        record["ratios"][0]
    )


def test_without_anomalib_the_error_names_the_bench_extra(monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import padim_compare

    monkeypatch.setattr(padim_compare, "anomalib_installed", lambda: False)
    assert padim_compare.main(["--quick"]) == 2
    assert 'pip install -e ".[bench]"' in capsys.readouterr().err
