import dataclasses

import numpy as np
import pytest
import torch

from helpers.core import profiles


def test_three_scales_smallest_first_then_the_dry_run_and_auto():
    assert profiles.names() == ["smoke", "cpu", "gpu", "dryrun", "auto"]
    assert profiles.get("smoke").deterministic and profiles.get("smoke").num_threads == 1
    assert profiles.get("cpu").device == "cpu" and profiles.get("gpu").device == "cuda"
    assert profiles.get("dryrun").device == "cpu" and profiles.get("dryrun").deterministic


def test_profiles_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        profiles.get("cpu").device = "cuda"


def test_unknown_profile_lists_valid_ones():
    with pytest.raises(profiles.ProfileError, match="smoke, cpu, gpu, dryrun, auto"):
        profiles.get("fast")


def test_select_requires_every_profile():
    every = {"smoke": 1, "cpu": 2, "gpu": 3, "dryrun": 4}
    assert profiles.select("cpu", every) == 2 and profiles.select("dryrun", every) == 4
    with pytest.raises(profiles.ProfileError, match="gpu"):
        profiles.select("cpu", {"smoke": 1, "cpu": 2, "dryrun": 4})
    with pytest.raises(profiles.ProfileError, match="dryrun"):
        profiles.select("cpu", {"smoke": 1, "cpu": 2, "gpu": 3})
    with pytest.raises(profiles.ProfileError, match="valid profiles"):
        profiles.select("tiny", every)


def test_setup_seeds_reproducibly(monkeypatch):
    monkeypatch.delenv(profiles.SMOKE_THREADS_ENV, raising=False)
    threads = torch.get_num_threads()
    try:
        profiles.setup("smoke", seed=3)
        first = (np.random.rand(), torch.rand(2))
        profiles.setup("smoke", seed=3)
        second = (np.random.rand(), torch.rand(2))
        assert first[0] == second[0] and torch.equal(first[1], second[1])
        assert torch.get_num_threads() == 1 and torch.are_deterministic_algorithms_enabled()
    finally:
        torch.use_deterministic_algorithms(False)
        torch.set_num_threads(threads)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_gpu_profile_without_gpu_says_what_to_do():
    with pytest.raises(profiles.ProfileError, match="profile='cpu'"):
        profiles.setup("gpu")


@pytest.mark.parametrize("cuda", [False, True])
def test_auto_is_the_cpu_scale_on_the_device_present(monkeypatch, cuda):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    chosen = profiles.get("auto")
    assert chosen.name == "cpu" and chosen.device == ("cuda" if cuda else "cpu")
    assert ("no CUDA GPU" not in chosen.description) == cuda and "profile='gpu'" in chosen.description
    assert profiles.select("auto", {"smoke": 1, "cpu": 2, "gpu": 3, "dryrun": 4}) == 2


@pytest.mark.parametrize("value, threads", [(None, 1), ("2", 2), ("1", 1)])
def test_smoke_threads_follow_the_environment(monkeypatch, value, threads):
    if value is None:
        monkeypatch.delenv(profiles.SMOKE_THREADS_ENV, raising=False)
    else:
        monkeypatch.setenv(profiles.SMOKE_THREADS_ENV, value)
    before = torch.get_num_threads()
    try:
        assert profiles.setup("smoke").num_threads == threads == torch.get_num_threads()
    finally:
        torch.use_deterministic_algorithms(False)
        torch.set_num_threads(before)


@pytest.mark.parametrize("value", ["0", "two", "-1"])
def test_bad_smoke_threads_are_an_error(monkeypatch, value):
    monkeypatch.setenv(profiles.SMOKE_THREADS_ENV, value)
    with pytest.raises(profiles.ProfileError, match="BOOK_SMOKE_THREADS"):
        profiles.setup("smoke")
