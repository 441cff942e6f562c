import dataclasses

import numpy as np
import pytest
import torch

from helpers import profiles


def test_three_profiles_smallest_first():
    assert profiles.names() == ["smoke", "cpu", "gpu"]
    assert profiles.get("smoke").deterministic and profiles.get("smoke").num_threads == 1
    assert profiles.get("cpu").device == "cpu" and profiles.get("gpu").device == "cuda"


def test_profiles_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        profiles.get("cpu").device = "cuda"


def test_unknown_profile_lists_valid_ones():
    with pytest.raises(profiles.ProfileError, match="smoke, cpu, gpu"):
        profiles.get("fast")


def test_select_requires_every_profile():
    assert profiles.select("cpu", {"smoke": 1, "cpu": 2, "gpu": 3}) == 2
    with pytest.raises(profiles.ProfileError, match="gpu"):
        profiles.select("cpu", {"smoke": 1, "cpu": 2})
    with pytest.raises(profiles.ProfileError, match="valid profiles"):
        profiles.select("tiny", {"smoke": 1, "cpu": 2, "gpu": 3})


def test_setup_seeds_reproducibly():
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
