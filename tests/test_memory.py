"""The GPU-memory estimate: weights, gradients, optimizer state and the activations autograd saves."""

import pytest
import torch
from torch import nn

from helpers.core import memory
from helpers.studies import ch01_jpeg_bytes, ch02_colorization, ch03_anomaly_compression, ch04_food_stargan
from helpers.studies import ch05_jpeg_robustness


def test_a_linear_layer_saves_its_input_and_adam_keeps_two_slots():
    layer = nn.Linear(1000, 10)
    step = memory.step_memory("linear", layer, lambda b: layer(torch.randn(b, 1000)).sum(), batch=64)
    params = (1000 * 10 + 10) * 4
    assert (step.weights, step.gradients, step.optimizer) == (params, params, 2 * params)
    assert step.activations == 64 * 1000 * 4  # the input, saved for the weight's gradient
    assert step.total == 4 * params + 64 * 4000


def test_activations_grow_with_the_batch_and_frozen_weights_need_no_state():
    net = nn.Sequential(nn.Linear(100, 100), nn.ReLU(), nn.Linear(100, 1))
    net[0].requires_grad_(False)
    small = memory.step_memory("net", net, lambda b: net(torch.randn(b, 100)).sum(), batch=10, optimizer_slots=1)
    large = memory.step_memory("net", net, lambda b: net(torch.randn(b, 100)).sum(), batch=1000, optimizer_slots=1)
    assert large.activations - small.activations == 990 * 100 * 4  # the ReLU output, saved once per item
    assert small.gradients == small.optimizer == 101 * 4  # only the last layer trains


def test_the_table_flags_what_does_not_fit_a_t4_with_a_margin():
    fits = memory.StepMemory("small", 8, 0, 0, 0, 13 * memory.GIB)
    too_big = memory.StepMemory("big", 8, 0, 0, 0, int(14.5 * memory.GIB))
    table = memory.table([fits, too_big])
    assert table["fits a 15 GB T4"].tolist() == [True, False] and table.loc["big", "total"] == 14.5


@pytest.mark.parametrize("study", [ch01_jpeg_bytes, ch02_colorization, ch03_anomaly_compression, ch04_food_stargan,
                                   ch05_jpeg_robustness], ids=lambda m: m.__name__.split(".")[-1])
def test_every_study_estimates_its_training_steps(study):
    steps = study.gpu_memory(study.settings("smoke"))  # the same code as at the gpu profile, at a small size
    assert steps and all(s.total > s.weights > 0 for s in steps)
