"""Run profiles: one notebook, three scales (``smoke``, ``cpu``, ``gpu``).

``get(name)`` returns the book-wide settings of a profile (device, determinism, threads);
each chapter keeps its own sizes in a small frozen dataclass per profile and picks one
with ``select(name, options)``. ``setup(profile, seed)`` applies seeds and switches.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from typing import Mapping, TypeVar

import numpy as np
import torch

T = TypeVar("T")


class ProfileError(ValueError):
    """An unknown profile name, or a profile that cannot run on this machine."""


@dataclass(frozen=True)
class Profile:
    """Book-wide settings of one profile."""

    name: str
    description: str
    device: str
    deterministic: bool
    num_threads: int | None  # None keeps torch's default (all cores)
    budget_minutes: float  # the whole chapter, on the profile's reference machine


PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        name="smoke",
        description="CI: real data, tiny slice, a few steps; seeded and single-threaded",
        device="cpu",
        deterministic=True,
        num_threads=1,
        budget_minutes=2,
    ),
    "cpu": Profile(
        name="cpu",
        description="the published book: honest smaller-scale runs on a 2-core laptop",
        device="cpu",
        deterministic=False,
        num_threads=None,
        budget_minutes=60,
    ),
    "gpu": Profile(
        name="gpu",
        description="the study's own scale on one CUDA GPU, with the official full datasets",
        device="cuda",
        deterministic=False,
        num_threads=None,
        budget_minutes=240,
    ),
}


def names() -> list[str]:
    """The valid profile names, smallest first."""
    return list(PROFILES)


def _check(name: str) -> None:
    if name not in PROFILES:
        raise ProfileError(f"unknown profile {name!r}; valid profiles are: {', '.join(PROFILES)}")


def get(name: str) -> Profile:
    """The profile called ``name``; an unknown name raises ``ProfileError`` listing the valid ones."""
    _check(name)
    return PROFILES[name]


def select(name: str, options: Mapping[str, T]) -> T:
    """Pick a chapter's per-profile settings; every profile must have an entry."""
    _check(name)
    missing = [p for p in PROFILES if p not in options]
    if missing:
        raise ProfileError(f"chapter settings lack profile(s) {missing}; they must cover {list(PROFILES)}")
    return options[name]


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def setup(profile: Profile | str, seed: int = 0) -> Profile:
    """Seed everything and apply the profile's device, thread and determinism switches."""
    if isinstance(profile, str):
        profile = get(profile)
    if profile.device == "cuda" and not torch.cuda.is_available():
        raise ProfileError(
            f"profile {profile.name!r} needs a CUDA GPU and none is visible; "
            "run with profile='cpu' (or 'smoke'), or on Colab choose Runtime > Change runtime type > GPU"
        )
    if profile.num_threads is not None:
        torch.set_num_threads(profile.num_threads)
    if profile.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        torch.use_deterministic_algorithms(False)
    seed_everything(seed)
    return profile
