"""The trained metrics of each smoke run, against the committed reference and its tolerances.

nbval re-executes ``tests/notebooks/NN_*.ipynb`` and compares only stable outputs exactly; each
of those runs also writes ``results/NN.smoke.json``. This file (run after the notebooks, see
conftest) compares those metrics with ``tests/notebooks/NN.smoke-reference.json``.
"""

import json
import os

import pytest
from conftest import ROOT

from helpers.core import regression
from helpers.core.results import results_dir

COPIES = sorted((ROOT / "tests" / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("copy", COPIES, ids=lambda p: p.stem)
def test_smoke_metrics_within_tolerance(copy, request):
    chapter = copy.name.split("_")[0]
    reference = regression.load_reference(regression.reference_path(copy.parent, chapter))
    if copy.name not in request.config.book_copies_collected:
        pytest.skip(f"{copy.name} was not run in this session (run tests/notebooks with this file)")
    written = results_dir() / f"{chapter}.smoke.json"
    assert written.is_file(), f"the smoke run of {copy.name} wrote no {written.name}"
    assert os.path.getmtime(written) >= request.config.book_started, (
        f"{written.name} is older than this test session: did {copy.name} finish?")
    mismatches = regression.compare(json.loads(written.read_text())["metrics"], reference)
    assert not mismatches, "smoke metrics outside their tolerance:\n" + "\n".join(map(str, mismatches))
