import json

import numpy as np
import pytest

from helpers.core import results


def test_save_writes_a_complete_record(tmp_path):
    run = results.start("07", "smoke", seed=5)
    run.add_data("toy", "$BOOK_DATA_DIR/toy", images=12)
    run.note(throughput_samples_per_s=np.float32(123.5))
    claim = results.Claim("acc", "accuracy above 0.9", ">0.9", np.float64(0.95), "reproduced", "0.95 > 0.9")
    record = results.save("07", "smoke", {"acc": np.float64(0.95), "curve": np.arange(3), "bad": float("nan")},
                          run.provenance(), [claim], paper={"acc": 0.9}, directory=tmp_path)
    on_disk = json.loads((tmp_path / "07.smoke.json").read_text())
    assert on_disk == record
    assert on_disk["metrics"] == {"acc": 0.95, "curve": [0, 1, 2], "bad": None}
    prov = on_disk["provenance"]
    assert prov["profile"] == "smoke" and prov["seed"] == 5 and prov["wall_s"] >= 0
    assert prov["data"]["toy"] == {"source": "$BOOK_DATA_DIR/toy", "images": 12}
    assert prov["throughput_samples_per_s"] == 123.5 and prov["torch"] and prov["python"]
    assert on_disk["claims"][0]["verdict"] == "reproduced"
    assert [p.name for p in tmp_path.iterdir()] == ["07.smoke.json"]  # atomic: no temporary left


def test_claims_need_a_known_verdict_and_a_reason():
    with pytest.raises(ValueError, match="verdict"):
        results.Claim("x", "c", 1, 1, "close enough", "why")
    with pytest.raises(ValueError, match="why"):
        results.Claim("x", "c", 1, 1, "differs", " ")


def test_unknown_profile_and_unstorable_values_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="valid profiles"):
        results.save("01", "laptop", {}, {}, directory=tmp_path)
    with pytest.raises(TypeError, match="cannot store"):
        results.save("01", "cpu", {"model": object()}, {}, directory=tmp_path)


def test_load_all_rejects_foreign_json(tmp_path):
    (tmp_path / "notes.json").write_text("{}")
    with pytest.raises(ValueError, match="not a results file"):
        results.load_all(tmp_path)


def test_format_provenance_lists_every_field():
    text = results.format_provenance({"profile": "cpu", "data": {"mnist": {"source": "cache", "images": 3}}})
    assert "profile  cpu" in text and "  mnist: source=cache, images=3" in text


def test_results_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("BOOK_RESULTS_DIR", str(tmp_path))
    assert results.results_dir() == tmp_path


def test_format_provenance_wraps_long_lines_under_their_key():
    source = "$BOOK_DATA_DIR/mnist/t10k-images-idx3-ubyte.gz (BOOK_DATA_DIR; official files; sha256 matches registry)"
    text = results.format_provenance({"profile": "cpu", "data": {"mnist test": {"source": source, "images": 10000}}})
    lines = text.splitlines()
    assert max(map(len, lines)) <= 100 and len(lines) == 4
    assert lines[3].startswith("      ") and "images=10000" in text


def test_at_a_glance_lists_every_claim_with_readable_values():
    claims = [results.Claim("a", "A holds", {"x": 0.12345, "y": 2}, [0.5, 0.25], "reproduced", "rule"),
              results.Claim("b", "B holds", ">0.9", 0.7, "differs", "rule")]
    table = results.at_a_glance(claims)
    assert list(table.index) == ["a", "b"] and list(table.columns) == ["claim", "paper", "ours", "verdict"]
    assert table.loc["a", "paper"] == "x: 0.123, y: 2" and table.loc["a", "ours"] == "0.5, 0.25"
    assert table.loc["b", "verdict"] == "differs"


def test_wrap_fits_every_line_to_the_page_and_keeps_short_lines():
    text = "short line\n" + "word " * 40 + "\n    indented " + "x" * 150
    wrapped = results.wrap(text, width=50)
    lines = wrapped.splitlines()
    assert lines[0] == "short line" and all(len(line) <= 50 for line in lines)
    assert lines[1].startswith("word") and lines[2].startswith("  word")
    assert any(line.startswith("      x") for line in lines)  # continuation under its indent
    assert "".join(wrapped.split()) == "".join(text.split())


def test_wrap_takes_any_object_by_its_text():
    from dataclasses import make_dataclass

    Config = make_dataclass("Config", [(f"field_{i}", int) for i in range(12)])
    wrapped = results.wrap(Config(*range(12)), width=60)
    assert wrapped.startswith("Config(field_0=0,") and max(map(len, wrapped.splitlines())) <= 60
