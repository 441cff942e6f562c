"""Run profiles: one notebook, three scales (``smoke``, ``cpu``, ``gpu``), ``auto`` and ``dryrun``.

``get(name)`` returns the book-wide settings of a profile (device, determinism, threads);
each chapter keeps its own sizes in a small frozen dataclass per profile and picks one
with ``select(name, options)``. ``setup(profile, seed)`` applies seeds and switches.

``auto`` (the chapters' default) is not a fourth scale: it is the ``cpu`` scale, the one the
website shows, on whatever device is present (a CUDA GPU when one is visible). The full-scale
``gpu`` profile is always an explicit choice. The chosen profile says why in its description.

``dryrun`` is the ``gpu`` profile's settings with every loop cut to one or two steps on a tiny
slice of the offline data, on the CPU, with random weights where the gpu profile downloads
ImageNet weights: ``python -m helpers dryrun NN`` runs it so that shape and configuration errors
of the full-scale path show up in CI. Its results never reach ``results/``.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, replace
from typing import Mapping, TypeVar

import numpy as np
import torch

T = TypeVar("T")

SMOKE_THREADS_ENV = "BOOK_SMOKE_THREADS"


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
        description="CI: real data, tiny slice, a few steps; seeded, one torch thread (BOOK_SMOKE_THREADS)",
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
    "dryrun": Profile(
        name="dryrun",
        description="CI: the gpu profile's settings, every loop cut to one or two steps on a tiny slice, on the CPU",
        device="cpu",
        deterministic=True,
        num_threads=None,
        budget_minutes=3,
    ),
}
DRYRUN = "dryrun"


AUTO = "auto"


def names() -> list[str]:
    """The valid profile names, smallest first, then ``auto``."""
    return [*PROFILES, AUTO]


def _scale(name: str) -> str:
    """The scale a profile name runs at: ``auto`` runs at ``cpu`` scale."""
    if name == AUTO:
        return "cpu"
    if name not in PROFILES:
        raise ProfileError(f"unknown profile {name!r}; valid profiles are: {', '.join(names())}")
    return name


def _auto(cuda_available: bool) -> Profile:
    cpu = PROFILES["cpu"]
    if cuda_available:
        why = "auto: a CUDA GPU is visible, so the cpu-scale run (the website's numbers) uses it"
    else:
        why = "auto: no CUDA GPU is visible, so the cpu-scale run (the website's numbers) uses the CPU"
    why += "; ask for profile='gpu' for the study's full scale"
    return replace(cpu, device="cuda" if cuda_available else "cpu", description=f"{why}. {cpu.description}")


def get(name: str) -> Profile:
    """The profile called ``name``; an unknown name raises ``ProfileError`` listing the valid ones.

    ``auto`` gives the ``cpu`` profile on CUDA when a GPU is visible, else on the CPU.
    """
    if _scale(name) != name:
        return _auto(torch.cuda.is_available())
    return PROFILES[name]


def select(name: str, options: Mapping[str, T]) -> T:
    """Pick a chapter's per-profile settings (``auto`` picks ``cpu``'s); every profile needs an entry."""
    scale = _scale(name)
    missing = [p for p in PROFILES if p not in options]
    if missing:
        raise ProfileError(f"chapter settings lack profile(s) {missing}; they must cover {list(PROFILES)}")
    return options[scale]


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def smoke_threads() -> int:
    """Torch threads of the smoke profile: 1, or ``$BOOK_SMOKE_THREADS`` (a positive integer).

    Running the regression suite with ``BOOK_SMOKE_THREADS=2`` changes the order of float
    reductions everywhere: it stands in for "another machine" on this one.
    """
    value = os.environ.get(SMOKE_THREADS_ENV, "1").strip() or "1"
    if not value.isdigit() or int(value) < 1:
        raise ProfileError(f"{SMOKE_THREADS_ENV}={value!r}: expected a positive whole number of threads")
    return int(value)


def setup(profile: Profile | str, seed: int = 0) -> Profile:
    """Seed everything and apply the profile's device, thread and determinism switches."""
    if isinstance(profile, str):
        profile = get(profile)
    if profile.name == "smoke":
        profile = replace(profile, num_threads=smoke_threads())
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
