"""Toleranced regression of a chapter's smoke-profile metrics.

A few steps of training are chaotic across machines (another CPU, BLAS or thread count), so
the notebook regression compares only stable outputs exactly; the trained metrics that the
smoke run writes to ``results/NN.smoke.json`` are compared here with a committed reference,
``tests/notebooks/NN.smoke-reference.json``, under per-metric tolerances stated in that file:

    {"chapter": "05",
     "tolerances": [{"match": "*_s", "skip": true, "why": "timings"},
                    {"match": "bleu4.*", "abs": 4.0, "why": "BLEU over 4 images after a few steps"},
                    {"match": "*", "abs": 1e-6, "rel": 1e-4, "why": "fixed computations"}],
     "metrics": {"bleu4.baseline.2": 1.4, ...}}

The first rule whose ``match`` (an ``fnmatch`` pattern on the flattened metric name) fits a
metric decides: ``skip`` (not compared: timings, memory), or ``|ours - ref| <= abs + rel*|ref|``.
Strings and booleans must be equal. ``python -m helpers refresh NN`` rewrites ``metrics`` from a
fresh smoke run and keeps the tolerances.
"""

from __future__ import annotations

import fnmatch
import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

REFERENCE_SUFFIX = ".smoke-reference.json"

# Rules a new reference starts with; a chapter widens them, with a reason, where its metrics need it.
DEFAULT_TOLERANCES: list[dict[str, Any]] = [
    {"match": "*_s", "skip": True, "why": "a timing: depends on the machine and its load"},
    {"match": "*_s_*", "skip": True, "why": "a timing: depends on the machine and its load"},
    {"match": "*seconds*", "skip": True, "why": "a timing: depends on the machine and its load"},
    {"match": "*_ms*", "skip": True, "why": "a timing: depends on the machine and its load"},
    {"match": "*per_s*", "skip": True, "why": "a throughput: depends on the machine and its load"},
    {"match": "*rss*", "skip": True, "why": "memory: depends on the machine and the libraries"},
    {"match": "*", "abs": 1e-6, "rel": 1e-4, "why": "fixed computations agree to float precision"},
]


@dataclass(frozen=True)
class Mismatch:
    """One metric that is missing, new, or outside its tolerance."""

    name: str
    reference: Any
    ours: Any
    rule: str

    def __str__(self) -> str:
        return f"{self.name}: reference {self.reference!r}, ours {self.ours!r} ({self.rule})"


def flatten(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts and lists to ``{"a.b.0": value}`` (dots join keys and list indices)."""
    flat: dict[str, Any] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        elif isinstance(value, (list, tuple)):
            flat.update(flatten({str(i): v for i, v in enumerate(value)}, f"{name}."))
        else:
            flat[name] = value
    return flat


def rule_for(name: str, tolerances: list[Mapping[str, Any]]) -> Mapping[str, Any]:
    """The first tolerance rule whose pattern matches ``name``."""
    for rule in tolerances:
        if fnmatch.fnmatchcase(name, rule["match"]):
            return rule
    raise ValueError(f"no tolerance rule matches metric {name!r}: end the list with a '*' rule")


def _within(reference: Any, ours: Any, rule: Mapping[str, Any]) -> bool:
    if reference is None or isinstance(reference, (bool, str)) or isinstance(ours, bool):
        return reference == ours
    if not isinstance(ours, (int, float)) or isinstance(ours, bool):
        return False
    if math.isnan(reference) or math.isnan(ours):
        return math.isnan(reference) and math.isnan(ours)
    return abs(ours - reference) <= rule.get("abs", 0.0) + rule.get("rel", 0.0) * abs(reference)


def compare(ours: Mapping[str, Any], reference: Mapping[str, Any]) -> list[Mismatch]:
    """Every metric of ``ours`` (a results record's ``metrics``) that breaks the reference file."""
    tolerances = reference["tolerances"]
    mine, theirs = flatten(ours), reference["metrics"]
    found = []
    for name in sorted(set(mine) | set(theirs)):
        rule = rule_for(name, tolerances)
        if rule.get("skip"):
            continue
        stated = f"abs {rule.get('abs', 0)}, rel {rule.get('rel', 0)}: {rule['why']}"
        if name not in mine:
            found.append(Mismatch(name, theirs[name], None, "missing from this run"))
        elif name not in theirs:
            found.append(Mismatch(name, None, mine[name], "not in the reference: refresh it"))
        elif not _within(theirs[name], mine[name], rule):
            found.append(Mismatch(name, theirs[name], mine[name], stated))
    return found


def reference_path(copies: Path, chapter: str) -> Path:
    """Where chapter ``chapter``'s smoke reference lives."""
    return copies / f"{chapter}{REFERENCE_SUFFIX}"


def load_reference(path: Path) -> dict[str, Any]:
    """A reference file, checked for its keys."""
    record = json.loads(path.read_text(encoding="utf-8"))
    for key in ("chapter", "tolerances", "metrics"):
        if key not in record:
            raise ValueError(f"{path.name}: not a smoke reference (no {key!r})")
    return record


def write_reference(path: Path, chapter: str, metrics: Mapping[str, Any]) -> dict[str, Any]:
    """Store ``metrics`` as the new reference, keeping the file's tolerances (or the defaults)."""
    tolerances = load_reference(path)["tolerances"] if path.is_file() else DEFAULT_TOLERANCES
    kept = {
        name: value
        for name, value in flatten(metrics).items()
        if not rule_for(name, tolerances).get("skip")
    }
    record = {"chapter": chapter, "tolerances": tolerances, "metrics": kept}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(record, f, indent=1, ensure_ascii=False)
        f.write("\n")
    os.replace(tmp, path)
    return record
