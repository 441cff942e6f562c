import pytest
import torch

from helpers.methods.gan import one_hot
from helpers.models.stargan import (
    Discriminator,
    Generator,
    domain_maps,
    parameter_count,
)


@pytest.mark.parametrize("side", [(8, 8), (12, 20), (36, 28)])
def test_generator_keeps_any_size_divisible_by_four(side):
    torch.manual_seed(0)
    G = Generator(num_classes=3, width=4, n_down=2, n_res=1)
    x = torch.rand(2, 3, *side) * 2 - 1
    out = G(x, one_hot(torch.tensor([0, 2]), 3))
    assert out.shape == x.shape and out.abs().max() <= 1


def test_generator_rejects_bad_sizes_and_codes():
    G = Generator(num_classes=3, width=4, n_down=2, n_res=1)
    with pytest.raises(ValueError, match="divisible by 4"):
        G(torch.zeros(1, 3, 10, 8), one_hot(torch.tensor([0]), 3))
    with pytest.raises(ValueError, match="target codes"):
        G(torch.zeros(1, 3, 8, 8), one_hot(torch.tensor([0]), 4))
    with pytest.raises(ValueError, match="RGB"):
        G(torch.zeros(1, 1, 8, 8), one_hot(torch.tensor([0]), 3))
    with pytest.raises(ValueError, match="bad generator sizes"):
        Generator(num_classes=1)


def test_the_target_code_changes_the_output():
    torch.manual_seed(0)
    G = Generator(num_classes=3, width=4, n_down=1, n_res=1)
    x = torch.rand(1, 3, 8, 8)
    a, b = G(x, one_hot(torch.tensor([0]), 3)), G(x, one_hot(torch.tensor([1]), 3))
    assert not torch.allclose(a, b)


def test_domain_maps_are_constant_one_hot_planes():
    maps = domain_maps(one_hot(torch.tensor([2, 0]), 3), 4, 5)
    assert maps.shape == (2, 3, 4, 5)
    assert torch.equal(maps[0, 2], torch.ones(4, 5)) and maps[0, :2].sum() == 0 and maps[1, 0].sum() == 20
    with pytest.raises(ValueError):
        domain_maps(torch.zeros(3), 4, 4)


def test_patchgan_discriminator_shapes():
    D = Discriminator(image_size=32, num_classes=5, width=4, n_layers=3)
    src, cls = D(torch.zeros(2, 3, 32, 32))
    assert src.shape == (2, 1, 4, 4) and cls.shape == (2, 5)
    src, cls = D(torch.zeros(2, 3, 64, 48))  # larger inputs: more patches, averaged domain logits
    assert src.shape == (2, 1, 8, 6) and cls.shape == (2, 5)
    with pytest.raises(ValueError, match="built for 32"):
        D(torch.zeros(1, 3, 16, 16))
    with pytest.raises(ValueError, match="divisible"):
        Discriminator(image_size=36, num_classes=2, n_layers=3)


def test_widths_and_depths_are_parameters():
    small, large = Generator(4, width=8, n_res=2), Generator(4, width=16, n_res=6)
    assert parameter_count(small) < parameter_count(large)
    assert sum(type(m).__name__ == "ResidualBlock" for m in large.modules()) == 6
