import torch

from helpers.core import cache


def test_load_or_build_caches_and_reuses(isolated):
    calls = []

    def build():
        calls.append(1)
        return {"w": torch.arange(4.0)}

    first, cached_first = cache.load_or_build("toy", cache.key_of(a=1), build)
    second, cached_second = cache.load_or_build("toy", cache.key_of(a=1), build)
    assert (cached_first, cached_second) == (False, True) and len(calls) == 1
    assert torch.equal(first["w"], second["w"])


def test_corrupt_artifact_is_rebuilt_not_loaded(isolated):
    key = cache.key_of(a=2)
    cache.load_or_build("toy", key, lambda: {"w": torch.ones(3)})
    path = cache.artifact_dir("toy") / f"{key}.pt"
    path.write_bytes(path.read_bytes()[:-20])  # truncated on disk
    rebuilt, was_cached = cache.load_or_build("toy", key, lambda: {"w": torch.zeros(3)})
    assert not was_cached and torch.equal(rebuilt["w"], torch.zeros(3))


def test_keys_are_stable_and_distinct():
    assert cache.key_of(a=1, b="x") == cache.key_of(b="x", a=1) != cache.key_of(a=2, b="x")


def test_checkpointer_saves_every_n_and_clears(isolated):
    ckpt = cache.Checkpointer(isolated / "run" / "state.pt", every=2)
    assert ckpt.load() is None
    assert not ckpt.maybe_save(1, lambda: {"step": 1})
    assert ckpt.maybe_save(2, lambda: {"step": 2}) and ckpt.load() == {"step": 2}
    ckpt.clear()
    assert ckpt.load() is None
