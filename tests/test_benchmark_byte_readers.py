"""benchmarks/byte_readers.py: the designs build and learn shapes; --quick writes the record chapter 01 reads."""

import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import ROOT

from helpers.codecs.jpeg_bytes import PAD_TOKEN
from helpers.studies import ch01_jpeg_bytes as study

sys.path.insert(0, str(ROOT / "benchmarks"))
from byte_reader_designs import DESIGNS

HEADER, SCAN = 40, 64


@pytest.mark.parametrize("name", sorted(DESIGNS))
def test_every_design_gives_logits_and_gradients_for_rows_of_the_fixed_layout(name):
    torch.manual_seed(0)
    rows = torch.randint(0, 256, (3, HEADER + SCAN + 8))
    rows[:, HEADER:HEADER + 8] = PAD_TOKEN  # the fixed layout's padding sits before the scan
    model = DESIGNS[name][0](HEADER, SCAN)
    logits = model(rows)
    assert logits.shape == (3, 10) and torch.isfinite(logits).all()
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


@pytest.mark.skipif(not os.environ.get("BOOK_DATA_DIR"), reason="needs the offline datasets (BOOK_DATA_DIR)")
def test_a_quick_run_writes_the_record_the_chapter_reads(tmp_path):
    out = tmp_path / study.READER_BENCHMARK_FILE
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "byte_readers.py"), "--quick", "--designs",
                           "bit reader", "block slots", "--out", str(out)], check=False, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "TQDM_DISABLE": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    record = study.load_reader_benchmark(tmp_path)
    assert [r["design"] for r in record["rows"]] == ["bit reader", "block slots"]
    assert [r["restart_markers"] for r in record["rows"]] == [False, False]
    for row in record["rows"]:
        assert row["seconds"][-1] >= record["env"]["budget_s"] and len(row["seconds"]) == len(row["test_acc"])
        assert 0 <= row["final_test_acc"] <= 1 and row["files_seen"] > 0
    table = study.reader_benchmark_table(record)
    assert list(table.columns)[:3] == ["what it tries", "restart markers", "parameters"]
    assert table["test accuracy"].is_monotonic_decreasing


def test_the_benchmark_record_is_required_and_checked(tmp_path):
    with pytest.raises(FileNotFoundError, match="byte_readers.py"):
        study.load_reader_benchmark(tmp_path)
    (tmp_path / study.READER_BENCHMARK_FILE).write_text(json.dumps({"rows": []}))
    with pytest.raises(ValueError, match="no measured designs"):
        study.load_reader_benchmark(tmp_path)
    rows = [{"design": d, "description": d, "params": 10, "files_per_s": 5.0, "epochs": 1.0, "seconds": [1.0, 2.0],
             "test_acc": [0.3, acc], "final_test_acc": acc, "train_acc": 0.5} for d, acc in
            (("bit reader", 0.6), ("convs + GRU", 0.4), ("post", 0.2))]
    (tmp_path / study.READER_BENCHMARK_FILE).write_text(json.dumps({"rows": rows}))
    record = study.load_reader_benchmark(tmp_path)
    assert list(study.reader_benchmark_table(record).index) == ["bit reader", "convs + GRU", "post"]
    assert len(study.plot_reader_benchmark(record).axes[0].lines) == 3 + 2  # designs, chance, goal
