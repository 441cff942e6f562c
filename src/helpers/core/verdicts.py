"""The book's verdict rules: when a measurement can support a claim at all.

A claim's own rule (stated in its row) decides between "reproduced" and "differs"; these
checks decide first whether the measurement it rests on can say anything:

- ``above_chance``: a score within ``margin`` of its chance level (a classifier that names one
  class whatever the input, an AUC of a coin) supports nothing, so the claim is "not comparable";
- ``proportions_differ``: two accuracies measured on ``n`` trials each differ only when their gap
  exceeds ``z`` binomial standard errors of the difference; one seed of a GAN or a classifier on
  a hundred photos moves by that much on its own;
- ``interval_side``: an interval supports "above" or "below" a threshold only when all of it lies
  on that side; an interval that touches or straddles the threshold does not decide.
"""

from __future__ import annotations

import math
from typing import Literal

Side = Literal["above", "below", "straddles"]


def above_chance(value: float, chance: float, margin: float = 0.1) -> bool:
    """True when ``value`` beats ``chance`` by more than ``margin`` (same units, e.g. accuracy)."""
    return value > chance + margin


def proportion_noise(p: float, n_a: int, n_b: int, z: float = 2.0) -> float:
    """``z`` standard errors of the difference of two proportions near ``p`` on ``n_a`` and ``n_b`` trials."""
    if n_a <= 0 or n_b <= 0:
        raise ValueError(f"need positive trial counts, got {n_a} and {n_b}")
    p = min(max(p, 0.0), 1.0)
    return z * math.sqrt(max(p * (1 - p), 1e-12) * (1 / n_a + 1 / n_b))


def proportions_differ(a: float, b: float, n_a: int, n_b: int, z: float = 2.0) -> bool:
    """True when accuracies ``a`` (on ``n_a`` trials) and ``b`` (on ``n_b``) differ beyond ``z`` standard errors."""
    return abs(a - b) > proportion_noise((a * n_a + b * n_b) / (n_a + n_b), n_a, n_b, z)


def interval_side(low: float, high: float, threshold: float) -> Side:
    """Where the interval ``[low, high]`` lies relative to ``threshold``; touching it counts as straddling."""
    if low > high:
        raise ValueError(f"an interval needs low <= high, got [{low}, {high}]")
    if low > threshold:
        return "above"
    if high < threshold:
        return "below"
    return "straddles"
