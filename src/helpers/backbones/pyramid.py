"""Stage outputs of any backbone the book loads, with their strides and channel counts.

``FeaturePyramid(model, mean, std, strides=(4, 8, 16))`` cuts a torchvision ResNet, a
torchvision VGG or a timm EfficientNet(-Lite) into the same five stages, at strides 2,
4, 8, 16 and 32:

| stage | ResNet | VGG | EfficientNet |
| --- | --- | --- | --- |
| 2 | ``act1`` (conv1, bn1, relu) | ``block1`` (convs, pool) | ``blocks.0`` (+ stem) |
| 4 | ``layer1`` (with the max pool) | ``block2`` | ``blocks.1`` |
| 8 | ``layer2`` | ``block3`` | ``blocks.2`` |
| 16 | ``layer3`` | ``block4`` | ``blocks.4`` |
| 32 | ``layer4`` | ``block5`` | ``blocks.6`` |

Its ``forward`` takes RGB in [0, 1], normalises it as the weights expect, runs the trunk
only as far as the deepest stage asked for, and returns the chosen stages' outputs,
shallow to deep. Strides and channels are read from the layers themselves (no forward
pass), so they hold for the stand-ins' narrower substitutes too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn
from torchvision.models import VGG, ResNet

STRIDES = (2, 4, 8, 16, 32)


@dataclass(frozen=True)
class Stage:
    """One stage of a backbone: its name, stride (input / output size), channels."""

    name: str
    stride: int
    channels: int


def _resnet_segments(model: ResNet) -> list[tuple[str, nn.Module]]:
    return [
        ("act1", nn.Sequential(model.conv1, model.bn1, model.relu)),
        ("layer1", nn.Sequential(model.maxpool, model.layer1)),
        *[(n, getattr(model, n)) for n in ("layer2", "layer3", "layer4")],
    ]


def _vgg_segments(model: VGG) -> list[tuple[str, nn.Module]]:
    pools = [i for i, m in enumerate(model.features) if isinstance(m, nn.MaxPool2d)]
    starts = [0] + [p + 1 for p in pools[:-1]]
    return [
        (f"block{k + 1}", model.features[a : p + 1])
        for k, (a, p) in enumerate(zip(starts, pools))
    ]


def _efficientnet_segments(model: nn.Module) -> list[tuple[str, nn.Module]]:
    ends = [int(info["module"].split(".")[1]) for info in model.feature_info]
    starts = [0] + [e + 1 for e in ends[:-1]]
    segments = [(f"blocks.{e}", model.blocks[a : e + 1]) for a, e in zip(starts, ends)]
    first = nn.Sequential(model.conv_stem, model.bn1, segments[0][1])
    return [(segments[0][0], first), *segments[1:]]


def segments(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of the model's five stages, shallow to deep."""
    if isinstance(model, ResNet):
        return _resnet_segments(model)
    if isinstance(model, VGG):
        return _vgg_segments(model)
    if all(hasattr(model, a) for a in ("conv_stem", "bn1", "blocks", "feature_info")):
        return _efficientnet_segments(model)
    raise TypeError(
        f"no feature pyramid for a {type(model).__name__}: expected a torchvision "
        "ResNet or VGG, or a timm EfficientNet (as helpers.backbones.load returns)"
    )


def _stride(module: nn.Module) -> int:
    """How much ``module`` shrinks its input: the product of its conv and pool strides.

    A ResNet's ``downsample`` branch runs beside its block's strided convolution.
    """
    total = 1
    for name, m in module.named_modules():
        if "downsample" in name.split("."):
            continue
        if isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            stride = m.stride if isinstance(m.stride, int) else m.stride[0]
            total *= stride
    return total


def _channels(module: nn.Module) -> int:
    """Output channels of ``module``: those of its last convolution or batch norm."""
    last = [m for m in module.modules() if isinstance(m, (nn.Conv2d, nn.BatchNorm2d))][
        -1
    ]
    return last.out_channels if isinstance(last, nn.Conv2d) else last.num_features


def stages(model: nn.Module) -> tuple[Stage, ...]:
    """All five stages of ``model`` with their strides and channel counts."""
    found, stride = [], 1
    for name, module in segments(model):
        stride *= _stride(module)
        found.append(Stage(name, stride, _channels(module)))
    return tuple(found)


class FeaturePyramid(nn.Module):
    """Normalisation and a backbone's trunk in stages; ``forward`` gives chosen ones."""

    def __init__(
        self,
        model: nn.Module,
        mean: Sequence[float],
        std: Sequence[float],
        strides: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        every = stages(model)
        wanted = (
            tuple(strides) if strides is not None else tuple(s.stride for s in every)
        )
        unknown = sorted(set(wanted) - {s.stride for s in every})
        if unknown or not wanted or list(wanted) != sorted(set(wanted)):
            raise ValueError(
                f"strides {list(wanted)}: choose increasing ones from "
                f"{[s.stride for s in every]}"
            )
        depth = max(i for i, s in enumerate(every) if s.stride in wanted) + 1
        self.segments = nn.ModuleList(m for _, m in segments(model)[:depth])
        self.stages = tuple(s for s in every if s.stride in wanted)
        self._tapped = [every[i].stride in wanted for i in range(depth)]
        self.register_buffer(
            "mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        )
        self.register_buffer(
            "std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        )

    @property
    def channels(self) -> tuple[int, ...]:
        """Channels of the returned stages, shallow to deep."""
        return tuple(s.channels for s in self.stages)

    @property
    def strides(self) -> tuple[int, ...]:
        """Strides of the returned stages, shallow to deep."""
        return tuple(s.stride for s in self.stages)

    def forward(self, rgb: torch.Tensor) -> list[torch.Tensor]:
        """The chosen stages' outputs for an ``N x 3 x H x W`` RGB batch in [0, 1]."""
        if rgb.ndim != 4 or rgb.shape[1] != 3:
            raise ValueError(
                f"expected an N x 3 x H x W RGB batch, got shape {tuple(rgb.shape)}"
            )
        x = (rgb - self.mean) / self.std
        outputs = []
        for segment, tapped in zip(self.segments, self._tapped):
            x = segment(x)
            if tapped:
                outputs.append(x)
        return outputs
