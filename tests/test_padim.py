import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from helpers.backbones import IMAGENET_MEAN, IMAGENET_STD, FeaturePyramid
from helpers.models.padim import (
    Padim,
    Tap,
    crop_view,
    feature_dims,
    image_auc,
    pixel_auc,
    prepare_images,
    prepare_masks,
)


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    return torchvision.models.resnet18().eval()


def synthetic_set(n, anomalous, seed):
    """Noisy flat gray images; anomalous ones carry a bright square (and its ground truth)."""
    rng = np.random.default_rng(seed)
    images = np.clip(rng.normal(120, 6, (n, 64, 64)), 0, 255).astype(np.uint8)
    truth = np.zeros((n, 64, 64), bool)
    for i in np.flatnonzero(anomalous):
        images[i, 20:34, 28:42] = 250
        truth[i, 20:34, 28:42] = True
    return images, truth


def test_the_obvious_anomaly_scores_highest(resnet):
    train, _ = synthetic_set(16, np.zeros(16, bool), seed=1)
    labels = np.array([0, 0, 0, 0, 1, 0])
    test, truth = synthetic_set(6, labels.astype(bool), seed=2)
    padim = Padim(resnet, dims=50, resize=64, crop=64, batch_size=5)
    fit = padim.fit(train)
    maps = padim.score(fit, padim.embed(test))
    assert maps.shape == (6, 64, 64) and fit.count == 16
    scores = maps.reshape(6, -1).max(1)
    assert scores.argmax() == 4
    assert image_auc(labels, maps) == 1.0
    assert pixel_auc(truth, maps) > 0.9


def test_batched_fit_equals_the_textbook_covariance(resnet):
    train, _ = synthetic_set(11, np.zeros(11, bool), seed=3)
    padim = Padim(resnet, dims=20, resize=48, crop=48, batch_size=4, eps=0.01)  # 4 + 4 + 3: uneven batches
    fit = padim.fit(train)
    features = padim.embed(train)  # P x N x D
    mean = features.mean(1)
    centred = features - mean[:, None]
    covariance = centred.transpose(1, 2) @ centred / (len(train) - 1) + 0.01 * torch.eye(20)
    assert torch.allclose(fit.mean, mean, atol=1e-5)
    assert torch.allclose(fit.precision, torch.linalg.inv(covariance), rtol=1e-3, atol=1e-3)
    assert fit.grid == (12, 12)  # layer1 of a ResNet is 1/4 of the input


def test_dims_follow_the_backbone(resnet):
    assert feature_dims("wide_resnet50_2", 1792) == 550
    assert feature_dims("resnet18", 448) == 100
    assert feature_dims("resnet34", 448) == 100 and feature_dims("other", 896) == 200
    assert feature_dims("efficientnet_lite0", 176, "all") == 176
    with pytest.raises(ValueError, match="dims rule"):
        feature_dims("resnet18", 448, "most")
    assert feature_dims("wide_resnet50_2", 1792, 64) == 64 and feature_dims("resnet18", 448, 1000) == 448
    with pytest.raises(ValueError, match="at least 1"):
        feature_dims("resnet18", 448, 0)
    assert Tap(resnet).channels == 64 + 128 + 256
    with pytest.raises(ValueError, match="dims must be"):
        Padim(resnet, dims=449)
    with pytest.raises(TypeError, match="ResNet"):
        Tap(nn.Sequential(nn.Conv2d(3, 8, 3)))
    with pytest.raises(ValueError, match="three stages"):
        Tap(FeaturePyramid(resnet, IMAGENET_MEAN, IMAGENET_STD, (4, 8)))
    a, b = Padim(resnet, 30, seed=0), Padim(resnet, 30, seed=1)
    assert torch.equal(a.index, Padim(resnet, 30, seed=0).index) and not torch.equal(a.index, b.index)


def test_one_training_image_is_not_enough(resnet):
    with pytest.raises(ValueError, match="at least 2"):
        Padim(resnet, 10, resize=32, crop=32).fit(np.zeros((1, 32, 32), np.uint8))


def test_preparation_of_gray_colour_and_masks():
    gray = np.zeros((2, 40, 50), np.uint8)
    colour = np.zeros((2, 40, 50, 3), np.uint8)
    for images in (gray, colour):
        x = prepare_images(images, resize=36, crop=32)
        assert x.shape == (2, 3, 32, 32) and x.dtype == torch.float32
    assert float(prepare_images(gray + 255, 36, 32)[0, 0, 0, 0]) == 1.0  # RGB in [0, 1]: the tap normalises
    with pytest.raises(ValueError, match="uint8"):
        prepare_images(gray.astype(float), 36, 32)
    masks = np.zeros((1, 40, 40), bool)
    masks[0, 10:30, 10:30] = True
    out = prepare_masks(masks, 20, 16)
    assert out.shape == (1, 16, 16) and out.dtype == bool and 0 < out.sum() < 256
    assert crop_view(gray, 36, 32).shape == (2, 32, 32) and crop_view(colour, 36, 32).shape == (2, 32, 32, 3)


def test_auc_on_known_inputs():
    labels = np.array([0, 0, 1, 1])
    maps = np.array([0.1, 0.4, 0.35, 0.8])[:, None, None] * np.ones((4, 2, 2))
    assert image_auc(labels, maps) == pytest.approx(0.75)
    truth = np.zeros((4, 2, 2), bool)
    truth[3, 0, 0] = True
    assert pixel_auc(truth, maps) == pytest.approx(13.5 / 15)  # 3 of the 15 normal pixels tie (count half)
    with pytest.raises(ValueError, match="both"):
        image_auc(np.zeros(4), maps)
    with pytest.raises(ValueError, match="both"):
        pixel_auc(np.zeros((4, 2, 2), bool), maps)
    with pytest.raises(ValueError, match="shape"):
        pixel_auc(truth[:2], maps)


def test_picking_channels_per_stage_equals_picking_after_joining(resnet):
    """The tap selects before upsampling; the textbook joins all 448 channels, then selects."""
    tap = Tap(resnet).eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        maps = tap.pyramid(x)
        joined = torch.cat([maps[0]] + [F.interpolate(m, size=maps[0].shape[-2:], mode="nearest") for m in maps[1:]], 1)
        index = torch.tensor([0, 5, 63, 64, 100, 191, 192, 447])  # stage edges included
        tap.select(index)
        assert torch.equal(tap(x), joined[:, index])
        tap.select(torch.arange(64))  # the first stage only
        assert torch.equal(tap(x), joined[:, :64])
    with pytest.raises(ValueError, match="increasing"):
        tap.select(torch.tensor([3, 3]))


def test_an_efficientnet_lite_pyramid_is_tapped_at_strides_4_8_16():
    timm = pytest.importorskip("timm")
    from helpers.backbones import packaged

    torch.manual_seed(0)
    model = timm.create_model("efficientnet_lite0", pretrained=False).eval()
    pyramid = FeaturePyramid(model, packaged.MEAN, packaged.STD, (4, 8, 16))
    padim = Padim(pyramid, dims=176, resize=64, crop=64, batch_size=4)
    features = padim.embed(np.full((3, 64, 64), 128, np.uint8))
    assert padim.tap.channels == 24 + 40 + 112 and features.shape == (16 * 16, 3, 176)
    assert padim.tap.per_stage == [None, None, None]  # all channels: no selection copies


def test_blockwise_inverse_equals_one_inverse(resnet, monkeypatch):
    import helpers.models.padim as padim_module

    train, _ = synthetic_set(8, np.zeros(8, bool), seed=4)
    padim = Padim(resnet, dims=12, resize=32, crop=32, batch_size=8)
    whole = padim.fit(train)
    monkeypatch.setattr(padim_module, "POSITIONS_PER_INVERSE", 5)  # 64 positions in 13 blocks
    blocks = padim.fit(train)
    torch.testing.assert_close(blocks.precision, whole.precision)
