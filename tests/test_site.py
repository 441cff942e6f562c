"""The website builds from the committed notebooks with no warnings, and renders in a browser."""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import ROOT
from PIL import Image

from helpers.core.browser import clipped_lines, find_chromium, screenshot

pytestmark = pytest.mark.site
REPO_URL = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    jb = Path(sys.executable).with_name("jupyter-book")
    proc = subprocess.run(
        [str(jb), "build", str(ROOT), "--toc", str(ROOT / "book" / "_toc.yml"), "--path-output", str(out),
         "--builder", "html", "-W", "-n", "--keep-going"],
        capture_output=True, text=True, timeout=900,
    )
    log = proc.stdout + proc.stderr
    warnings = [line for line in log.splitlines() if re.search(r"WARNING|ERROR", line)]
    assert proc.returncode == 0 and not warnings, "site build failed or warned:\n" + "\n".join(warnings or [log[-3000:]])
    return out / "_build" / "html"


def test_every_toc_page_is_built(site):
    toc = yaml.safe_load((ROOT / "book" / "_toc.yml").read_text())
    files = [toc["root"]] + [c["file"] for part in toc["parts"] for c in part["chapters"]]
    for page in files:
        assert (site / f"{page}.html").is_file(), f"{page} is in the toc but was not built"


def test_chapter_pages_have_the_colab_button(site):
    repo = REPO_URL.removeprefix("https://github.com/")
    for nb in sorted((ROOT / "chapters").glob("*.ipynb")):
        html = (site / "chapters" / f"{nb.stem}.html").read_text()
        assert f"colab.research.google.com/github/{repo}/blob/main/chapters/{nb.name}" in html


def test_chapter_pages_leave_out_the_injected_parameters(site):
    for nb in sorted((ROOT / "chapters").glob("*.ipynb")):
        html = (site / "chapters" / f"{nb.stem}.html").read_text()
        assert "tag_injected-parameters" not in html, f"{nb.name}: papermill's parameters cell is on the page"
        assert "tag_parameters" in html, f"{nb.name}: the chapter's own parameters cell should stay visible"


def test_references_resolve(site):
    html = (site / "book" / "references.html").read_text()
    for key_text in ("Hi-king", "eiji-kb", "Endo"):
        assert key_text in html


def test_pages_render_in_chromium(site, tmp_path):
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("Chromium is not installed (apt-get install chromium); `make screenshots` documents the same check")
    for page in ("book/intro.html", "chapters/00_quickstart.html"):
        png = tmp_path / (Path(page).stem + ".png")
        screenshot(site / page, png, chromium)
        pixels = np.asarray(Image.open(png).convert("L"), dtype=np.float32)
        assert pixels.shape[0] > 500 and pixels.std() > 10, f"{page} rendered as a blank page"


def test_no_code_or_output_line_is_clipped_at_1280_px(site):
    """Code is formatted to 88 columns and prints wrap at 100: book/_static/book.css makes both fit."""
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    pages = sorted((site / "chapters").glob("*.html")) + sorted((site / "book").glob("*.html"))
    clipped = {page: lines for page, lines in clipped_lines(pages, chromium, width=1280).items() if lines}
    assert not clipped, f"lines wider than their box at 1280 px: {clipped}"
