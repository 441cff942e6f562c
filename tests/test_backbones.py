"""helpers.backbones: weight choice, ImageNet cache/download errors, stand-in caching, layer helpers.

Stand-ins are trained here with a tiny recipe on a synthetic imagenette folder (seconds), never
with the real 20-minute pretraining.
"""

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import backbones
from helpers.backbones import __main__ as cli
from helpers.backbones import imagenet, packaged, standin
from helpers.data.images import IMAGENETTE_CLASSES

TINY = standin.Recipe(input_size=32, epochs=1, expected_minutes=0.01, train_per_class=3, val_per_class=2,
                      batch_size=8, probe_cs=(0.1,))


def fake_imagenette(root: Path, train: int = 4, val: int = 2) -> None:
    """10 class folders of small JPEGs whose colour depends on the class."""
    rng = np.random.default_rng(0)
    for c, wnid in enumerate(IMAGENETTE_CLASSES):
        for split, n in (("train", train), ("val", val)):
            folder = root / "imagenette" / split / wnid
            folder.mkdir(parents=True)
            for i in range(n):
                pixels = np.clip(rng.normal(25 * c, 20, (40, 40, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{wnid}_{i}.JPEG", quality=90)


@pytest.fixture
def env(isolated, monkeypatch, request):
    """Offline, empty torch hub and book caches, a synthetic imagenette, tiny recipes at every profile."""
    fake_imagenette(isolated / "data")
    monkeypatch.setenv("BOOK_DATA_DIR", str(isolated / "data"))
    monkeypatch.setenv("BOOK_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(isolated / "torch"))
    monkeypatch.setenv("BOOK_RESULTS_DIR", str(isolated / "results"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the smoke profile: a busy 2-core machine slows 2-thread torch badly
    request.addfinalizer(lambda: torch.set_num_threads(threads))
    for profile in standin.RECIPES:
        for arch in standin.ARCHS:
            monkeypatch.setitem(standin.RECIPES[profile], arch, TINY)
    return isolated


def count_builds(monkeypatch) -> list[str]:
    calls: list[str] = []
    real = standin.build

    def counted(arch, *args, **kwargs):
        calls.append(arch)
        return real(arch, *args, **kwargs)

    monkeypatch.setattr(standin, "build", counted)
    return calls


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_unknown_names_and_weights_list_the_valid_ones():
    with pytest.raises(ValueError, match="vgg16, wide_resnet50_2, resnet18"):
        backbones.load("alexnet")
    with pytest.raises(ValueError, match="auto, imagenet, standin, random"):
        backbones.load("resnet18", weights="pretrained")
    with pytest.raises(ValueError, match="stand-ins are"):
        standin.recipe("alexnet", "cpu")


def test_normalisation_constants_are_imagenet_s():
    assert backbones.IMAGENET_MEAN == (0.485, 0.456, 0.406) and backbones.IMAGENET_STD == (0.229, 0.224, 0.225)


def test_random_weights_are_seeded_frozen_and_leave_the_global_rng_alone(env):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    model, record = backbones.load("resnet18", "random")
    assert torch.equal(torch.rand(3), expected), "building the backbone consumed the caller's random numbers"
    again, _ = backbones.load("resnet18", "random")
    other, _ = backbones.load("resnet18", "random", seed=1)
    assert same_weights(model, again) and not same_weights(model, other)
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    assert (record.weights, record.arch, record.val_acc, record.num_classes) == ("random", "resnet18", None, 1000)
    trainable, _ = backbones.load("resnet18", "random", trainable=True)
    assert all(p.requires_grad for p in trainable.parameters())


def test_auto_is_random_at_the_smoke_profile(env):
    assert backbones.choose("vgg16", "auto", "smoke")[0] == "random"
    model, record = backbones.load("resnet18", "auto", profile="smoke")
    assert record.weights == "random" and "smoke" in record.label and "\n" not in record.label


def test_imagenet_offline_and_not_cached_names_the_file_and_the_hub_folder(env):
    with pytest.raises(backbones.BackboneUnavailable) as err:
        backbones.load("vgg16", "imagenet")
    message = str(err.value)
    assert "vgg16-397923af.pth" in message and str(env / "torch" / "hub" / "checkpoints") in message
    assert "BOOK_OFFLINE" in message and "standin" in message


def test_auto_offline_builds_the_standin_once_and_reuses_its_cache(env, monkeypatch):
    builds = count_builds(monkeypatch)
    began = time.perf_counter()
    model, record = backbones.load("resnet18")
    first = time.perf_counter() - began
    assert builds == ["resnet18"] and record.weights == "standin" and "BOOK_OFFLINE" in record.reason
    assert (record.arch, record.num_classes, record.training["epochs"]) == ("resnet18", 10, 1)
    assert model.fc.out_features == 10 and not model.training
    stored = json.loads((env / "results" / "backbones" / "resnet18.cpu.json").read_text())
    assert stored["data"]["train_images"] == 30 and stored["data"]["val_images"] == 20
    assert {"standin", "random"} <= set(stored["probe"]) and stored["wall_s"] > 0
    beside = list((env / "cache" / "artifacts" / "backbones").glob("resnet18-cpu-*.json"))
    assert len(beside) == 1 and json.loads(beside[0].read_text()) == stored

    began = time.perf_counter()
    again, record_again = backbones.load("resnet18")
    assert builds == ["resnet18"], "a cached stand-in was trained again"
    assert time.perf_counter() - began < first and same_weights(model, again) and record_again == record
    substitute, sub_record = backbones.load("wide_resnet50_2", "standin")
    assert builds == ["resnet18"] and sub_record.arch == "resnet18" and same_weights(model, substitute)
    assert "standing in for wide_resnet50_2" in sub_record.label


def test_a_corrupt_cached_standin_is_rebuilt_not_loaded(env, monkeypatch):
    builds = count_builds(monkeypatch)
    backbones.load("resnet18", "standin")
    (weights,) = (env / "cache" / "artifacts" / "backbones").glob("resnet18-cpu-*.pt")
    weights.write_bytes(weights.read_bytes()[:-100])  # truncated on disk
    model, record = backbones.load("resnet18", "standin")
    assert builds == ["resnet18", "resnet18"] and record.weights == "standin"
    assert weights.is_file() and all(torch.isfinite(p).all() for p in model.parameters())


def test_pretrain_is_a_no_op_on_a_cached_standin(env, monkeypatch, capsys):
    builds = count_builds(monkeypatch)
    first, was_cached = backbones.pretrain("resnet18")
    assert not was_cached and builds == ["resnet18"]
    (env / "results" / "backbones" / "resnet18.cpu.json").unlink()
    lines = cli.main(["pretrain", "wide_resnet50_2", "--profile", "cpu"])
    assert builds == ["resnet18"] and "found in the cache" in lines[0] and "frozen random network" in lines[2]
    assert (env / "results" / "backbones" / "resnet18.cpu.json").is_file(), "pretrain rewrites the record"
    assert "standing in for wide_resnet50_2" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.main(["pretrain", "alexnet"])


def test_smoke_standins_are_not_written_to_the_results(env):
    _, record = backbones.load("resnet18", "standin", profile="smoke")
    assert record.weights == "standin" and not (env / "results" / "backbones").exists()


@pytest.fixture
def fake_imagenet_url(env, monkeypatch):
    """resnet18 'ImageNet' weights served from a file:// URL whose name carries the right hash prefix."""
    state = standin.build_arch("resnet18", 1000, seed=7).state_dict()
    staging = env / "served" / "resnet18.pth"
    staging.parent.mkdir()
    torch.save(state, staging)
    from helpers.data.store import file_digest

    served = staging.with_name(f"resnet18-{file_digest(staging)[:8]}.pth")
    staging.rename(served)
    monkeypatch.setitem(imagenet.URLS, "resnet18", served.as_uri())
    monkeypatch.delenv("BOOK_OFFLINE")
    return state


def test_imagenet_weights_are_downloaded_once_verified_and_reused(fake_imagenet_url, env):
    assert backbones.choose("resnet18", "auto") == (
        "imagenet",
        "ImageNet weights downloadable",
        "resnet18",
    )
    model, record = backbones.load("resnet18")
    assert record.weights == "imagenet" and record.val_acc is None and record.num_classes == 1000
    assert all(torch.equal(model.state_dict()[k], v) for k, v in fake_imagenet_url.items())
    assert imagenet.cached("resnet18") and imagenet.weights_file("resnet18").parent == env / "torch" / "hub" / "checkpoints"
    assert backbones.choose("resnet18", "auto")[1] == "ImageNet weights found in the torch hub cache"
    path = imagenet.weights_file("resnet18")
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(backbones.BackboneUnavailable, match="corrupt"):
        backbones.load("resnet18", "imagenet")


def test_auto_falls_back_to_the_standin_when_the_download_fails(fake_imagenet_url, env, monkeypatch):
    served = Path(imagenet.URLS["resnet18"].removeprefix("file://"))
    monkeypatch.setitem(imagenet.URLS, "resnet18", served.with_name("resnet18-00000000.pth").as_uri())
    served.rename(served.with_name("resnet18-00000000.pth"))  # reachable, but the hash check fails
    _, record = backbones.load("resnet18")
    assert record.weights == "standin" and "could not be fetched" in record.reason
    with pytest.raises(backbones.BackboneUnavailable, match="download failed"):
        backbones.load("resnet18", "imagenet")


def test_auto_falls_back_to_the_standin_when_the_packaged_weights_are_corrupt(
    env, monkeypatch
):
    corrupt = env / "efficientnet-lite0-57934424.pth"
    corrupt.write_bytes(b"not the weights")
    monkeypatch.setattr(packaged, "weights_path", lambda name: corrupt)
    assert (
        backbones.choose("resnet18", "auto", any_arch=True).arch == "efficientnet_lite0"
    )
    _, record = backbones.load("resnet18", any_arch=True)
    assert (record.weights, record.arch) == ("standin", "resnet18")
    assert "could not be loaded" in record.reason and "corrupt" in record.reason


def test_the_vgg_standin_head_computes_the_same_in_torchvision_s_layout():
    net = standin.training_model("vgg16_bn", 10, seed=0).eval()
    full = standin.assemble("vgg16_bn", net.state_dict(), 10).eval()
    x = torch.randn(2, 3, 32, 32)  # a 1 x 1 conv map: torchvision copies it into all 49 positions
    with torch.no_grad():
        torch.testing.assert_close(full(x), net(x), rtol=1e-4, atol=1e-5)
    assert full.classifier[0].in_features == 512 * 49 and full.classifier[6].out_features == 10


def test_layer_helpers_work_for_imagenet_and_standin_architectures():
    plain, with_bn = standin.empty_arch("vgg16"), standin.empty_arch("vgg16_bn")
    assert backbones.vgg_pool_indices(plain.features) == [4, 9, 16, 23, 30]
    assert backbones.vgg_pool_indices(with_bn.features) == [6, 13, 23, 33, 43]
    assert backbones.resnet_channels(standin.empty_arch("resnet18")) == {
        "layer1": 64, "layer2": 128, "layer3": 256, "layer4": 512}
    assert backbones.resnet_channels(standin.empty_arch("wide_resnet50_2"))["layer3"] == 1024
    with pytest.raises(ValueError):
        backbones.vgg_pool_indices(torch.nn.Sequential(torch.nn.ReLU()))
    with pytest.raises(ValueError):
        backbones.resnet_channels(plain)
    with pytest.raises(TypeError):
        standin.pooled_trunk(torch.nn.Linear(2, 2))


def test_per_class_subsets_are_seeded_and_balanced():
    labels = np.repeat(np.arange(3), [5, 2, 8])
    chosen = standin.per_class_subset(labels, 3, seed=0)
    assert np.bincount(labels[chosen]).tolist() == [3, 2, 3]
    assert np.array_equal(chosen, standin.per_class_subset(labels, 3, seed=0))
    assert not np.array_equal(chosen, standin.per_class_subset(labels, 3, seed=1))
    assert len(standin.per_class_subset(labels, None, seed=0)) == len(labels)


def test_linear_probe_scores_informative_above_uninformative_features():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 12)
    informative = np.eye(4)[y] * 3 + rng.normal(size=(48, 4))
    noise = rng.normal(size=(48, 4))
    assert standin.linear_probe((informative, y), (informative, y)) > 0.9
    assert standin.linear_probe((noise, y), (informative, y)) < 0.6


def test_warmup_cosine_schedule():
    factor = standin.warmup_cosine(epochs=5, warmup=1)
    values = [factor(e) for e in range(5)]
    assert values[0] == 0.5 and values[1] == 1.0 and values == sorted(values[:2]) + sorted(values[2:], reverse=True)
    assert values[-1] > 0


def test_the_page_is_built_from_the_committed_records_and_the_runs(env):
    from helpers.backbones import page

    root = env / "checkout"
    (root / "book").mkdir(parents=True)
    (root / "results").mkdir()
    empty = page.write_page(root).read_text()
    assert empty.startswith("# Backbones used in this book") and "No stand-in has been trained" in empty
    assert "not run yet" in empty and "instead of 68.9 M parameters" in empty

    _, record = backbones.load("wide_resnet50_2")  # offline: trains and records the resnet18 stand-in
    (root / "results" / "backbones").mkdir()
    (env / "results" / "backbones" / "resnet18.cpu.json").rename(root / "results" / "backbones" / "resnet18.cpu.json")
    (root / "results" / "backbones" / "vgg16_bn.smoke.json").write_text("{}")  # smoke records are ignored
    (root / "results" / "03.cpu.json").write_text(json.dumps(
        {"chapter": "03", "profile": "cpu", "provenance": {"backbone": record.as_dict()}}))
    text = page.write_page(root).read_text()
    stored = json.loads((root / "results" / "backbones" / "resnet18.cpu.json").read_text())
    assert "| 03 | `wide_resnet50_2` |" in text and "standin (resnet18), cpu" in text
    assert f"{100 * stored['probe']['random']:.1f} %" in text and f"{100 * stored['val_acc']:.1f} %" in text
    assert ("yes" if stored["beats_random_probe"] else "**no**") in text and "vgg16_bn" not in text.split("### How")[1]
    assert "Chance is 10 %" in text and "1,281,167" in text and "/work/" not in text

    (root / "results" / "backbones" / "bad.cpu.json").write_text(json.dumps({"arch": "x"}))
    with pytest.raises(ValueError, match="bad.cpu.json"):
        page.write_page(root)


def test_concurrent_first_loads_train_the_standin_once(env, monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    builds = count_builds(monkeypatch)
    with ThreadPoolExecutor(2) as pool:
        (a, _), (b, _) = pool.map(lambda name: backbones.load(name, "standin"), ["resnet18", "wide_resnet50_2"])
    assert builds == ["resnet18"] and same_weights(a, b)
