import pytest
import torch
from torch import nn
from torchvision.models.vgg import cfgs, make_layers

from helpers.methods.color import AB_SCALE
from helpers.models.colorizer import (
    BinnedAB,
    Bugs,
    HypercolumnHead,
    L2Regression,
    ResidualEncoder,
    VGGTaps,
    predict_ab,
)

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CHANNELS = (8, 16, 32)


def vgg16_features(batch_norm: bool) -> nn.Sequential:
    torch.manual_seed(0)
    return make_layers(cfgs["D"], batch_norm=batch_norm)  # VGG16's .features (vgg16_bn's with batch_norm)


def fake_taps(n=4, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, c, size >> i, size >> i, generator=g) for i, c in enumerate(CHANNELS)]


@pytest.mark.parametrize("batch_norm", [False, True], ids=["vgg16", "vgg16_bn"])
def test_taps_of_both_vgg16_flavours(batch_norm):
    features = vgg16_features(batch_norm)
    trunk = VGGTaps(features, MEAN, STD, stages=4)
    assert trunk.channels == (64, 128, 256, 512) and trunk.stride == 16
    assert not any(p.requires_grad for p in trunk.parameters())
    trunk.train()
    assert not trunk.training and not any(m.training for m in trunk.modules())
    taps = trunk(torch.rand(2, 3, 32, 48))
    assert [tuple(t.shape) for t in taps] == [(2, 64, 16, 24), (2, 128, 8, 12), (2, 256, 4, 6), (2, 512, 2, 3)]


def test_trunk_rejects_bad_requests():
    features = vgg16_features(False)
    with pytest.raises(ValueError, match="5 pooling stages"):
        VGGTaps(features, MEAN, STD, stages=6)
    with pytest.raises(ValueError, match="MaxPool2d"):
        VGGTaps(nn.Sequential(nn.Conv2d(3, 4, 3)), MEAN, STD)
    trunk = VGGTaps(features, MEAN, STD, stages=2)
    with pytest.raises(ValueError, match="multiples of 4"):
        trunk(torch.rand(1, 3, 10, 12))
    with pytest.raises(ValueError, match="N x 3 x H x W"):
        trunk(torch.rand(1, 1, 8, 8))


@pytest.mark.parametrize("head", [
    lambda: ResidualEncoder(CHANNELS),
    lambda: ResidualEncoder(CHANNELS, bugs=Bugs.faithful()),
    lambda: ResidualEncoder(CHANNELS, shortcuts=False),
    lambda: HypercolumnHead(CHANNELS),
], ids=["residual", "faithful", "last-layer", "hypercolumn"])
def test_heads_output_ab_at_the_first_tap_size(head):
    model = head()
    out = model(fake_taps())
    assert out.shape == (4, 2, 16, 16)
    ab = predict_ab(model, L2Regression(), fake_taps(), (32, 32))
    assert ab.shape == (4, 2, 32, 32) and ab.abs().max() <= 1


def test_heads_reject_taps_of_another_trunk():
    with pytest.raises(ValueError, match="tap channels"):
        ResidualEncoder(CHANNELS)(fake_taps()[:2])
    with pytest.raises(ValueError, match="tap channels"):
        HypercolumnHead((8, 16))(fake_taps())
    with pytest.raises(ValueError, match="two trunk taps"):
        ResidualEncoder((8,))


def as_if_trained(model: ResidualEncoder) -> ResidualEncoder:
    """Give the zero-initialised output layer weights, as training would (else nothing flows back through it)."""
    torch.nn.init.normal_(model.out.weight)
    return model


def test_heads_start_from_grey():
    for model in (ResidualEncoder(CHANNELS), HypercolumnHead(CHANNELS)):
        assert model(fake_taps()).abs().max() == 0


def fusion_grads(bugs):
    torch.manual_seed(0)
    model = as_if_trained(ResidualEncoder(CHANNELS, bugs=bugs))
    model(fake_taps()).square().mean().backward()
    return [p.grad for p in model.fusion.parameters()], model.top.weight.grad


def test_faithful_fusion_branch_gets_no_gradient_and_fixed_one_does():
    faithful, top = fusion_grads(Bugs(detached_fusion=True))
    assert all(g is None for g in faithful) and top is not None
    fixed, _ = fusion_grads(Bugs())
    assert all(g is not None and g.abs().sum() > 0 for g in fixed)


def test_shared_batchnorm_sees_both_inputs():
    shared = ResidualEncoder(CHANNELS, bugs=Bugs(shared_batchnorm=True))
    separate = ResidualEncoder(CHANNELS)
    assert shared.up_norms is None and len(separate.up_norms) == 2
    shared(fake_taps())
    separate(fake_taps())
    assert int(shared.tap_norms[0].num_batches_tracked) == 2  # tap and decoder path: one layer, two updates
    assert int(separate.tap_norms[0].num_batches_tracked) == 1
    assert sum(p.numel() for p in shared.parameters()) < sum(p.numel() for p in separate.parameters())


def test_batchnorm_eval_mode_only_when_fixed():
    taps, other = fake_taps(seed=0), fake_taps(seed=1)
    mixed = [torch.cat([a[:1], b[1:]]) for a, b in zip(taps, other)]  # image 0 with other companions
    fixed = as_if_trained(ResidualEncoder(CHANNELS)).eval()
    assert not any(m.training for m in fixed.modules())
    with torch.no_grad():
        torch.testing.assert_close(fixed(taps)[0], fixed(mixed)[0])
    buggy = as_if_trained(ResidualEncoder(CHANNELS, bugs=Bugs(batchnorm_train_at_test=True))).eval()
    assert all(m.training for m in buggy.modules() if isinstance(m, nn.BatchNorm2d))
    with torch.no_grad():
        assert (buggy(taps)[0] - buggy(mixed)[0]).abs().max() > 1e-3  # the answer depends on the batch


def two_colour_ab(n=4, size=8, rare_rows=1):
    ab = torch.zeros(n, 2, size, size)
    ab[:, 0] = 40 / AB_SCALE  # common colour: a = 40
    ab[:, 1, :rare_rows] = -60 / AB_SCALE  # rare colour in the first rows: a = 40, b = -60
    return ab


def test_binned_ab_fits_bins_and_favours_rare_colours():
    objective = BinnedAB.fit(two_colour_ab())
    assert objective.out_channels == 2
    classes = objective.classes(two_colour_ab())
    common, rare = int(classes[0, -1, 0]), int(classes[0, 0, 0])
    assert common != rare and (classes[:, 1:] == common).all()
    assert objective.weights[rare] > objective.weights[common]
    centre = objective.centres[rare] * AB_SCALE
    assert abs(centre[0] - 40) <= 5 and abs(centre[1] + 60) <= 5


def test_binned_ab_decode_and_loss():
    objective = BinnedAB.fit(two_colour_ab())
    logits = torch.zeros(1, 2, 2, 2)
    logits[:, 1] = 2.0
    sharp, mean = objective.decode(logits), BinnedAB(objective.centres, objective.weights, temperature=1.0).decode(logits)
    torch.testing.assert_close(sharp[0, :, 0, 0], objective.centres[1], atol=0.02, rtol=0)
    assert (mean[0, :, 0, 0] - objective.centres[1]).norm() > (sharp[0, :, 0, 0] - objective.centres[1]).norm()
    target = objective.centres[1].view(1, 2, 1, 1).expand(1, 2, 2, 2)
    assert objective.loss(logits, target) < objective.loss(-logits, target)


def test_binned_ab_rejects_bad_input():
    with pytest.raises(ValueError, match="N x 2"):
        BinnedAB.fit(torch.zeros(4, 3, 2, 2))
    with pytest.raises(ValueError, match="Q x 2"):
        BinnedAB(torch.zeros(3, 2), torch.ones(2))
    with pytest.raises(ValueError, match="temperature"):
        BinnedAB(torch.zeros(3, 2), torch.ones(3), temperature=0)
