"""The toleranced smoke-metrics comparison, and that each committed reference can fail."""

import copy
import fnmatch

import pytest
from conftest import ROOT

from helpers.core import regression

REFERENCES = sorted((ROOT / "tests" / "notebooks").glob(f"*{regression.REFERENCE_SUFFIX}"))
RULES = [
    {"match": "*_s", "skip": True, "why": "timing"},
    {"match": "acc*", "abs": 0.05, "why": "a few steps of training"},
    {"match": "*", "abs": 1e-6, "rel": 1e-4, "why": "fixed"},
]


def reference(**metrics):
    return {"chapter": "99", "tolerances": RULES, "metrics": regression.flatten(metrics)}


def test_flatten_joins_keys_and_list_indices():
    assert regression.flatten({"a": {"b": 1, "c": [2, {"d": 3}]}, "e": "x"}) == {
        "a.b": 1, "a.c.0": 2, "a.c.1.d": 3, "e": "x"}


def test_values_within_their_tolerance_pass():
    ref = reference(acc={"test": 0.50}, files=600, psnr=33.0212, train_s=12.0, note="ok")
    ours = {"acc": {"test": 0.54}, "files": 600, "psnr": 33.0213, "train_s": 99.0, "note": "ok"}
    assert regression.compare(ours, ref) == []


@pytest.mark.parametrize("change, why", [
    ({"acc": {"test": 0.60}}, "abs 0.05"),  # a 10-point accuracy change
    ({"files": 599}, "fixed"),
    ({"psnr": 33.1}, "fixed"),
    ({"note": "changed"}, "fixed"),
])
def test_a_value_outside_its_tolerance_fails(change, why):
    ours = {"acc": {"test": 0.50}, "files": 600, "psnr": 33.0212, "note": "ok", **change}
    found = regression.compare(ours, reference(acc={"test": 0.50}, files=600, psnr=33.0212, note="ok"))
    assert len(found) == 1 and why in found[0].rule


def test_missing_and_new_metrics_fail():
    found = regression.compare({"files": 600, "extra": 1}, reference(files=600, gone=2))
    assert {m.name: m.rule for m in found} == {
        "extra": "not in the reference: refresh it", "gone": "missing from this run"}


def test_a_metric_no_rule_matches_is_an_error():
    ref = reference(files=600)
    ref["tolerances"] = RULES[:2]
    with pytest.raises(ValueError, match="'\\*' rule"):
        regression.compare({"files": 600}, ref)


def test_write_reference_keeps_tolerances_and_drops_skipped(tmp_path):
    path = tmp_path / f"99{regression.REFERENCE_SUFFIX}"
    first = regression.write_reference(path, "99", {"acc": 0.5, "fit_s": 3.0})
    assert first["tolerances"] == regression.DEFAULT_TOLERANCES and first["metrics"] == {"acc": 0.5}
    stored = regression.load_reference(path)
    stored["tolerances"] = RULES
    path.write_text(__import__("json").dumps(stored))
    second = regression.write_reference(path, "99", {"acc": 0.6, "train_s": 1.0})
    assert second["tolerances"] == RULES and second["metrics"] == {"acc": 0.6}


def test_there_is_a_reference_per_regression_copy():
    copies = {p.name.split("_")[0] for p in (ROOT / "tests" / "notebooks").glob("*.ipynb")}
    assert {p.name.split(".")[0] for p in REFERENCES} == copies


@pytest.mark.parametrize("path", REFERENCES, ids=lambda p: p.name.split(".")[0])
def test_each_reference_catches_a_ten_point_change_in_its_scores(path):
    """Breaking the code (a wrong loss sign, a data leak) moves a score by ~10 points: it must fail."""
    ref = regression.load_reference(path)
    assert all(rule.get("why") for rule in ref["tolerances"]), "every tolerance states why"
    scores = [
        name for name, value in ref["metrics"].items()
        if isinstance(value, (int, float)) and not isinstance(value, bool)
        and any(fnmatch.fnmatchcase(name.lower(), p) for p in ("*acc*", "*top1*", "*auc*", "*bleu*"))
        and not regression.rule_for(name, ref["tolerances"]).get("skip")
    ]
    for name in scores:
        broken = copy.deepcopy(ref["metrics"])
        value = broken[name]
        percent = abs(value) > 1 or any(k in name.lower() for k in ("bleu", "top1", "percent"))
        full = 100.0 if percent else 1.0
        broken[name] = value - 0.1 * full if value > 0.5 * full else value + 0.1 * full
        assert regression.compare(broken, ref), f"{path.name}: a 10-point change of {name} passes"
