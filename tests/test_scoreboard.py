import json

from helpers.core import scoreboard


def record(chapter, profile, claims=(), wall=60.0):
    return {"chapter": chapter, "profile": profile, "metrics": {}, "paper": {},
            "provenance": {"device": f"dev-{profile}", "wall_s": wall, "started_at": "2026-01-01T00:00:00+00:00",
                           "git_commit": "0123456789abcdef", "git_dirty": False, "peak_rss_mib": 100},
            "claims": [dict(id=f"c{i}", claim=c, paper=">0.9", ours=0.95, verdict=v, why="a | b")
                       for i, (c, v) in enumerate(claims)]}


def test_largest_profile_wins_and_smoke_never_scores():
    records = [record("01", "smoke", [("x", "differs")]), record("01", "cpu", [("acc", "differs")]),
               record("01", "gpu", [("acc", "reproduced")]), record("02", "smoke", [("y", "differs")])]
    best = scoreboard.best_records(records)
    assert best["01"]["profile"] == "gpu" and "02" not in best


def test_scoreboard_tallies_escapes_and_notes_missing_chapters():
    text = scoreboard.render_scoreboard(
        [record("01", "cpu", [("acc > 0.98", "reproduced"), ("ablation", "differs")])],
        {"00": "Quickstart", "01": "Bytes", "02": "Colour"},
    )
    assert "| reproduced | 1 |" in text and "| differs | 1 |" in text and "| not comparable | 0 |" in text
    assert "a \\| b" in text  # pipes in cells are escaped
    assert "| acc > 0.98 | **reproduced** | >0.9 | 0.95 |" in text  # the verdict next to the claim (phones)
    assert "## 02 · Colour" in text and "No `cpu` or `gpu` results yet" in text
    assert "Quickstart" not in text  # the quickstart is not a study


def test_status_lists_runs_and_the_profile_each_notebook_shows():
    text = scoreboard.render_status([record("01", "cpu", wall=90)], {"01": "Bytes", "02": "Colour"},
                                    {"01": "cpu", "02": None})
    assert "| 01 Bytes | cpu | cpu | dev-cpu | 1.5 |" in text
    assert "Chapters with no results file yet: 02." in text


def test_write_pages_reads_chapters_and_results(tmp_path):
    (tmp_path / "chapters").mkdir()
    (tmp_path / "book").mkdir()
    (tmp_path / "results").mkdir()
    cells = [{"cell_type": "markdown", "metadata": {}, "source": ["# Bytes to digits\n", "text"]},
             {"cell_type": "code", "metadata": {"tags": ["parameters"]}, "source": ['profile = "cpu"\n'],
              "outputs": [], "execution_count": 1},
             {"cell_type": "code", "metadata": {"tags": ["injected-parameters"]}, "source": ['profile = "gpu"\n'],
              "outputs": [], "execution_count": 2}]
    (tmp_path / "chapters" / "01_bytes.ipynb").write_text(json.dumps({"cells": cells}))
    (tmp_path / "results" / "01.gpu.json").write_text(json.dumps(record("01", "gpu", [("acc", "reproduced")])))
    (tmp_path / "results" / "01.smoke.json").write_text(json.dumps(record("01", "smoke", [("acc", "differs")])))
    scoreboard.write_pages(tmp_path)
    board = (tmp_path / "book" / "scoreboard.md").read_text()
    status = (tmp_path / "book" / "status.md").read_text()
    assert "## 01 · Bytes to digits" in board and "Profile **gpu**" in board and "| reproduced | 1 |" in board
    assert "| 01 Bytes to digits | gpu | gpu |" in status and "smoke |" not in status


def test_a_setup_note_repeated_on_many_rows_is_said_once():
    from helpers.core.scoreboard import shared_sentences, without_sentences

    note = "Lite0 features vs wide_resnet50_2. 512 px vs 1024 px."
    whys = [f"row {i} is above the baseline. {note}" for i in range(3)] + ["a different reason."]
    shared = shared_sentences(whys)
    assert shared == ["Lite0 features vs wide_resnet50_2.", "512 px vs 1024 px."]
    assert without_sentences(whys[0], shared) == ("row 0 is above the baseline.", True)
    assert without_sentences(whys[3], shared) == ("a different reason.", False)
    assert shared_sentences(whys[:2]) == []  # two rows: not worth a note
