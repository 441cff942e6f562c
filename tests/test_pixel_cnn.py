import numpy as np
import pytest
import torch

from helpers.methods.train import train_classifier
from helpers.models.pixel_cnn import PixelCNN, to_pixels


def test_pixels_scale_to_unit_range_with_a_channel_axis():
    images = np.array([[[0, 255], [51, 102]]], dtype=np.uint8)
    x = to_pixels(images)
    assert x.shape == (1, 1, 2, 2) and x.dtype == torch.float32
    assert torch.allclose(x.flatten(), torch.tensor([0.0, 1.0, 0.2, 0.4]))
    with pytest.raises(ValueError, match="uint8 stack"):
        to_pixels(images[0])
    with pytest.raises(ValueError, match="uint8 stack"):
        to_pixels(images.astype(np.float32))


def test_logits_and_one_step_of_learning():
    torch.manual_seed(0)
    model = PixelCNN()
    x, y = torch.rand(8, 1, 28, 28), torch.arange(8)
    assert model(x).shape == (8, 10)
    history = train_classifier(model, [(x, y)], torch.optim.Adam(model.parameters(), lr=1e-2), epochs=2)
    assert history.train_loss[1] < history.train_loss[0]


def test_wrong_image_shape_is_a_clear_error():
    with pytest.raises(ValueError, match="batch, 1, 28, 28"):
        PixelCNN()(torch.rand(2, 28, 28))
