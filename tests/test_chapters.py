"""Every committed chapter really ran, follows the skeleton, and has a current regression copy."""

import copy
import json
import os
import re
import subprocess
import sys

import notebook_checks as checks
import pytest
import yaml
from conftest import ROOT

from helpers.core.results import PAGE_WIDTH
from helpers.core.scoreboard import chapter_notebooks, notebook_profile, write_pages

CHAPTERS = sorted((ROOT / "chapters").glob("*.ipynb"))
COPIES = ROOT / "tests" / "notebooks"
REPO_URL = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]


def load(path):
    return json.loads(path.read_text(encoding="utf-8"))


def test_there_are_chapters():
    assert CHAPTERS, "no chapters/*.ipynb found"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_ran_top_to_bottom_without_errors(path):
    assert checks.execution_problems(load(path)) == []


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_outputs_show_no_machine_paths(path):
    assert checks.output_problems(load(path)) == []


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_follows_the_skeleton(path):
    assert checks.skeleton_problems(load(path), REPO_URL) == []


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_keeps_no_injected_parameters_cell(path):
    """A hidden papermill cell would silently reset a Colab reader's chosen profile."""
    nb = load(path)
    assert not any("injected-parameters" in checks.tags(c) for c in checks.code_cells(nb))
    assert nb["metadata"]["papermill"]["parameters"]["profile"] in {"cpu", "gpu"}


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_every_figure_cell_of_a_published_chapter_shows_its_figure(path):
    """A chapter executed under MPLBACKEND=Agg keeps its code but loses every image."""
    nb = load(path)
    figure_cells = [c for c in checks.code_cells(nb) if "plt.show()" in "".join(c["source"])]
    blank = [i for i, c in enumerate(figure_cells)
             if not any("image/png" in o.get("data", {}) for o in c.get("outputs", []))]
    assert not blank, f"{len(blank)} of {len(figure_cells)} figure cells have no image"


def test_execute_gives_published_chapters_inline_figures_and_copies_none(tmp_path, monkeypatch):
    import papermill

    from helpers.core import cli

    seen = []
    monkeypatch.setattr(papermill, "execute_notebook", lambda *a, **k: seen.append(os.environ.get("MPLBACKEND")))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    cli.execute(tmp_path / "in.ipynb", tmp_path / "out.ipynb", "smoke", tmp_path)
    cli.execute(tmp_path / "in.ipynb", tmp_path / "out.ipynb", "smoke", tmp_path, figures=False)
    assert seen == [None, "Agg"] and os.environ["MPLBACKEND"] == "Agg"  # restored afterwards


def test_strip_injected_parameters_removes_only_that_cell(tmp_path):
    import nbformat

    from helpers.core.cli import strip_injected_parameters

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell('profile = "auto"', metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell('profile = "cpu"', metadata={"tags": ["injected-parameters"]}),
                nbformat.v4.new_code_cell("print(profile)")]
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    strip_injected_parameters(path)
    assert [c.source for c in nbformat.read(path, as_version=4).cells] == ['profile = "auto"', "print(profile)"]


def test_a_run_replaces_the_chapter_only_when_it_finished(tmp_path, monkeypatch):
    import argparse

    import nbformat

    from helpers.core import cli

    (tmp_path / "_config.yml").write_text("title: t\n")
    (tmp_path / "chapters").mkdir()
    chapter = tmp_path / "chapters" / "07_demo.ipynb"
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell('profile = "auto"', metadata={"tags": ["parameters"]})]
    nbformat.write(nb, chapter)
    before = chapter.read_bytes()
    monkeypatch.setattr(cli, "_root", lambda: tmp_path)
    monkeypatch.setattr(cli, "write_pages", lambda root: [])

    def half_run(source, target, profile, cwd, **_):
        target.write_text("{ partial")
        raise RuntimeError("kernel died")

    monkeypatch.setattr(cli, "execute", half_run)
    with pytest.raises(SystemExit, match="chapter is unchanged"):
        cli.cmd_run(argparse.Namespace(chapter="07", profile="smoke", output=None))
    assert chapter.read_bytes() == before
    assert (tmp_path / "_build" / "runs" / "smoke" / chapter.name).read_text() == "{ partial"

    def full_run(source, target, profile, cwd, **_):
        done = nbformat.read(source, as_version=4)
        done.cells.append(nbformat.v4.new_code_cell('profile = "smoke"', metadata={"tags": ["injected-parameters"]}))
        nbformat.write(done, target)

    monkeypatch.setattr(cli, "execute", full_run)
    cli.cmd_run(argparse.Namespace(chapter="07", profile="smoke", output=None))
    assert [c.source for c in nbformat.read(chapter, as_version=4).cells] == ['profile = "auto"']
    assert not (tmp_path / "_build" / "runs" / "smoke" / chapter.name).exists()


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_has_results_for_the_profile_it_shows(path):
    profile = notebook_profile(path)
    assert profile in {"cpu", "gpu"}, f"{path.name} shows profile {profile!r}; the book shows cpu or gpu runs"
    chapter = path.name.split("_")[0]
    assert (ROOT / "results" / f"{chapter}.{profile}.json").is_file()


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_regression_copy_is_current(path):
    copy_path = COPIES / path.name
    assert copy_path.is_file(), f"no regression copy: run `make regress CH={path.name[:2]}`"
    chapter, smoke = load(path), load(copy_path)
    assert checks.comparable_code(smoke) == checks.comparable_code(chapter), (
        f"{copy_path.name} is stale: its code differs from the chapter's; run `make regress CH={path.name[:2]}`")
    assert checks.injected_profile(smoke) == "smoke"
    assert checks.execution_problems(smoke) == []
    tagged = [c for c in checks.code_cells(smoke) if "nbval-check-output" in checks.tags(c)]
    assert tagged and all(c["outputs"] for c in tagged), "the copy needs tagged cells with outputs to compare"


def test_no_orphan_regression_copies():
    chapters = {p.name for p in CHAPTERS}
    assert {p.name for p in COPIES.glob("*.ipynb")} <= chapters


def test_generated_pages_are_current(tmp_path):
    for name in ("chapters", "results"):
        (tmp_path / name).symlink_to(ROOT / name)
    (tmp_path / "book").mkdir()
    write_pages(tmp_path)
    for page in ("scoreboard.md", "status.md", "backbones.md"):
        assert (tmp_path / "book" / page).read_text() == (ROOT / "book" / page).read_text(), (
            f"book/{page} is stale: run `make scoreboard`")


# The checks themselves must be able to fail.

def _executed_notebook():
    cells = [
        {"cell_type": "markdown", "metadata": {}, "source": "# Title"},
        {"cell_type": "code", "metadata": {}, "execution_count": 1, "outputs": [],
         "source": f'if "google.colab" in sys.modules: install("{REPO_URL}")'},
        {"cell_type": "code", "metadata": {"tags": ["parameters"]}, "execution_count": 2, "outputs": [],
         "source": 'profile = "auto"\nseed = 0'},
        {"cell_type": "code", "metadata": {}, "execution_count": 3, "outputs": [], "source": "run.finish({})"},
    ]
    return {"cells": cells}


def test_checks_accept_a_good_notebook():
    nb = _executed_notebook()
    assert checks.execution_problems(nb) == [] and checks.skeleton_problems(nb, REPO_URL) == []


def test_checks_catch_a_cell_that_never_ran():
    nb = _executed_notebook()
    nb["cells"][2]["execution_count"] = None
    assert any("never ran" in p for p in checks.execution_problems(nb))


def test_checks_catch_an_error_output_and_a_rerun():
    nb = _executed_notebook()
    nb["cells"][3]["outputs"] = [{"output_type": "error", "ename": "ValueError", "evalue": "boom", "traceback": []}]
    nb["cells"][3]["execution_count"] = 1
    found = checks.execution_problems(nb)
    assert any("ValueError" in p for p in found) and any("top-to-bottom" in p for p in found)


def test_checks_catch_machine_paths_and_broken_skeletons():
    nb = _executed_notebook()
    nb["cells"][3]["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "saved /root/x.pt"}]
    assert checks.output_problems(nb)
    broken = copy.deepcopy(_executed_notebook())
    del broken["cells"][2]
    assert any("parameters" in p for p in checks.skeleton_problems(broken, REPO_URL))


def test_chapter_ids_are_unique():
    ids = [p.name.split("_")[0] for p in CHAPTERS]
    assert len(ids) == len(set(ids)) and set(chapter_notebooks(ROOT / "chapters")) == set(ids)


CODE_WIDTH = 88  # ruff's line length ([tool.ruff] in pyproject.toml): no code line is clipped at 1280 px
PRINTED_WIDTH = PAGE_WIDTH  # what fits the page's code column at 1280 px (helpers.core.results.wrap uses it too)


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_code_fits_88_columns_and_is_ruff_formatted(path):
    long = [(i, line) for i, c in enumerate(checks.code_cells(load(path)))
            for line in checks.source(c).splitlines() if len(line) > CODE_WIDTH]
    assert not long, f"{len(long)} code lines over {CODE_WIDTH} columns, first: {long[0]}"
    done = subprocess.run([sys.executable, "-m", "ruff", "format", "--check", str(path)],
                          capture_output=True, text=True)
    assert done.returncode == 0, f"run `ruff format {path.relative_to(ROOT)}`:\n{done.stdout}{done.stderr}"


def printed_lines(nb):
    """Every line a chapter prints (stream outputs and plain-text results without an HTML table)."""
    for cell in checks.code_cells(nb):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                yield from "".join(out["text"]).splitlines()
            elif "text/plain" in out.get("data", {}) and "text/html" not in out["data"]:
                yield from "".join(out["data"]["text/plain"]).splitlines()


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_prints_no_line_wider_than_the_page(path):
    wide = [line for line in printed_lines(load(path)) if len(line) > PRINTED_WIDTH]
    assert not wide, f"{len(wide)} printed lines over {PRINTED_WIDTH} characters, first: {wide[0][:120]}"


def test_printed_width_check_catches_a_wide_line():
    nb = {"cells": [{"cell_type": "code", "source": [], "outputs": [
        {"output_type": "stream", "name": "stdout", "text": ["short\n", "x" * 101 + "\n"]},
        {"output_type": "execute_result", "data": {"text/plain": ["y" * 120], "text/html": ["<table>"]}}]}]}
    assert [len(line) for line in printed_lines(nb)] == [5, 101]


# A measured quantity written by hand in prose goes stale at the next run: numbers with these units
# belong in code output or in `glue` (the paper's own values too: helpers.core.paper holds them).
MEASURED = re.compile(r"(?<![\w.{-])\d[\d,]*(?:\.\d+)?\s?(?:min|minutes?|s|seconds?|hours?|%|dB|[KMG]i?B)(?!\w)")


def hand_written_measurements(nb):
    """(cell index, text) of every number with a unit of time, share, decibels or memory in markdown."""
    return [(i, m.group(0)) for i, c in enumerate(nb["cells"]) if c["cell_type"] == "markdown"
            for m in MEASURED.finditer("".join(c["source"]))]


# Percentages in prose that are not measurements: the study's own quoted values and the chapters'
# settings (interval levels, data fractions, crop areas, a rule's threshold). Nothing else passes.
NOT_MEASURED = {
    "01": {"98 %", "100 %", "70 %"},  # the post's accuracies and per-class robustness
    "02": {"2 %"},  # the verdict rule's threshold
    "03": {"95 %"},  # interval level
    "04": {"100 %", "25 %", "50 %"},  # the data-size curve's fractions
    "05": {"100 %", "95 %"},  # crop area, interval level
}


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_prose_writes_no_measurement_by_hand(path):
    allowed = NOT_MEASURED.get(path.name.split("_")[0], set())
    found = [(i, text) for i, text in hand_written_measurements(load(path)) if text not in allowed]
    assert not found, f"glue these from the code (first: cell {found[0][0]}, {found[0][1]!r})"


def test_hand_written_measurement_check_catches_units_and_spares_names():
    cells = [{"cell_type": "markdown", "source": [text]} for text in (
        "took about 15 minutes", "27.7 dB higher", "a 4 GiB budget", "91.6 % top-1", "in 12 s.",
        "{glue:}`wall_min` minutes", "EfficientNet-Lite0 at stride-4", "q2 and 80 images", "ResNet-18's 3x3")]
    assert [text for _, text in hand_written_measurements({"cells": cells})] == [
        "15 minutes", "27.7 dB", "4 GiB", "91.6 %", "12 s"]
