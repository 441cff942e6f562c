"""Stand-in backbones: ImageNet architectures trained by the book itself on imagenette.

A stand-in replaces torchvision's ImageNet weights where they cannot be downloaded (CI, offline
readers, this book's own CPU runs). ``build(arch, recipe)`` trains one from scratch with standard
augmentation, measures it (val accuracy of its own head, and a linear probe of its pooled features
against a frozen random network of the same architecture) and returns its weights and training
record. ``helpers.backbones.load`` caches the result in the user cache.
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

import numpy as np
import torch
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision import models
from torchvision.transforms import v2

from helpers.core import profiles, results
from helpers.core.cache import Checkpointer
from helpers.data.images import IMAGENETTE_CLASSES, ImageFolderSet, load_imagenette
from helpers.methods.train import accuracy, train_classifier

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RECIPE_VERSION = 1  # bump when the training code changes what a recipe produces
# torchvision's VGG classifier reads the 512 x 7 x 7 output of its adaptive pooling
VGG_POOLED_POSITIONS = 7 * 7


@dataclass(frozen=True)
class Recipe:
    """How one stand-in is trained (sizes chosen from throughput measured on 2 CPU cores)."""

    input_size: int  # training crop, pixels
    epochs: int
    expected_minutes: float  # whole build on the profile's reference machine, for the progress bar
    train_per_class: int | None = 150  # seeded subset per class; None keeps every image
    val_per_class: int | None = 50
    full_data: bool = False  # the official imagenette2-160 download instead of $BOOK_DATA_DIR's copy
    batch_size: int = 32
    lr: float = 0.05  # SGD, momentum 0.9, Nesterov
    weight_decay: float = 5e-4
    warmup_epochs: int = 1  # linear warm-up, then cosine decay, stepped per epoch
    label_smoothing: float = 0.1
    min_crop_scale: float = 0.25  # RandomResizedCrop area range (min_crop_scale, 1)
    budget_minutes: float = 20.0
    device: str = "cpu"
    probe_cs: tuple[float, ...] = (0.01, 0.1, 1.0)  # linear probe's inverse regularisation, picked by CV

    def describe(self) -> dict[str, object]:
        """The recipe in words, for the training record and the book's page."""
        return {
            "input_size": self.input_size,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "optimizer": f"SGD, momentum 0.9 (Nesterov), lr {self.lr:g}, weight decay {self.weight_decay:g}",
            "schedule": f"{self.warmup_epochs} epoch(s) linear warm-up, then cosine decay (per epoch)",
            "augmentation": (f"RandomResizedCrop({self.input_size}, scale=({self.min_crop_scale:g}, 1)), "
                             "horizontal flip"),
            "loss": f"cross-entropy, label smoothing {self.label_smoothing:g}",
            "evaluation": f"resize to {round(self.input_size / 0.875)} px, centre crop {self.input_size} px",
        }


# Stand-in architecture per architecture (the stand-in of a name is looked up in helpers.backbones).
ARCHS = ("vgg16_bn", "resnet18")
RECIPES: dict[str, dict[str, Recipe]] = {
    "smoke": {  # trained in seconds, for CI and tests: weights of no value beyond exercising the code
        "vgg16_bn": Recipe(input_size=32, epochs=1, expected_minutes=0.2, train_per_class=8, val_per_class=4),
        "resnet18": Recipe(input_size=32, epochs=1, expected_minutes=0.1, train_per_class=8, val_per_class=4),
    },
    "cpu": {  # ~20 (VGG16-bn, 48 px) and ~85 (ResNet-18, 64 px) training images/s on 2 idle cores
        "vgg16_bn": Recipe(input_size=48, epochs=10, expected_minutes=15),
        "resnet18": Recipe(input_size=64, epochs=12, expected_minutes=6),
    },
    "gpu": {  # the official imagenette2-160 (9,469 train / 3,925 val images)
        "vgg16_bn": Recipe(input_size=128, epochs=60, expected_minutes=40, train_per_class=None, val_per_class=None,
                           full_data=True, batch_size=64, budget_minutes=90, device="cuda"),
        "resnet18": Recipe(input_size=160, epochs=60, expected_minutes=30, train_per_class=None, val_per_class=None,
                           full_data=True, batch_size=64, lr=0.1, budget_minutes=90, device="cuda"),
    },
}
RECIPES["dryrun"] = RECIPES["smoke"]  # a dry run picks random weights; asked for a stand-in, it gets the smoke one


def recipe(arch: str, profile: str) -> Recipe:
    """The recipe of stand-in ``arch`` at ``profile``."""
    if arch not in ARCHS:
        raise ValueError(f"no stand-in architecture {arch!r}; stand-ins are {ARCHS}")
    return profiles.select(profile, RECIPES)[arch]


def build_arch(arch: str, num_classes: int = 1000, seed: int | None = None) -> nn.Module:
    """torchvision's ``arch`` with a fresh initialisation (seeded without touching the global RNG)."""
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        return getattr(models, arch)(weights=None, num_classes=num_classes)


def training_model(arch: str, num_classes: int, seed: int) -> nn.Module:
    """The network that is trained: torchvision's, except that VGG's head reads globally pooled features.

    VGG16's fc6 reads a 512 x 7 x 7 map; at the stand-in's small input size that map would be
    one or two pixels copied 49 times. The stand-in trains fc6 on the 512 globally pooled channels
    instead, and ``assemble`` spreads those weights over the 49 positions, which computes the same.
    """
    model = build_arch(arch, num_classes, seed)
    if not arch.startswith("vgg"):
        return model
    head = model.classifier
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        head[0] = nn.Linear(512, head[0].out_features)
        nn.init.normal_(head[0].weight, 0, 0.01)  # torchvision's initialisation of VGG's linear layers
        nn.init.zeros_(head[0].bias)
    return nn.Sequential(OrderedDict(features=model.features, pool=nn.AdaptiveAvgPool2d(1),
                                     flatten=nn.Flatten(1), classifier=head))


def expand_pooled_fc6(weight: torch.Tensor, positions: int = VGG_POOLED_POSITIONS) -> torch.Tensor:
    """fc6 weights over pooled channels (out, C) -> over torchvision's flattened C x 7 x 7 map (out, C * 49)."""
    return weight.repeat_interleave(positions, dim=1) / positions


def empty_arch(arch: str, num_classes: int = 1000) -> nn.Module:
    """torchvision's ``arch`` on the meta device: no memory, no initialisation (weights are loaded next)."""
    with torch.device("meta"):
        return getattr(models, arch)(weights=None, num_classes=num_classes)


def assemble(arch: str, state: dict[str, torch.Tensor], num_classes: int) -> nn.Module:
    """The torchvision model of a trained stand-in, from the state dict of its ``training_model``."""
    model = empty_arch(arch, num_classes)
    if arch.startswith("vgg"):
        state = dict(state)
        state["classifier.0.weight"] = expand_pooled_fc6(state["classifier.0.weight"])
    model.load_state_dict(state, assign=True)
    return model


def pooled_trunk(model: nn.Module) -> nn.Module:
    """The convolutional trunk of a torchvision VGG or ResNet, globally average-pooled to one vector."""
    if hasattr(model, "features"):  # VGG
        return nn.Sequential(model.features, nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
    if hasattr(model, "layer4"):  # ResNet
        return nn.Sequential(*list(model.children())[:-1], nn.Flatten(1))
    raise TypeError(f"{type(model).__name__} is neither a torchvision VGG nor a ResNet")


def train_transform(size: int, min_scale: float) -> v2.Compose:
    """Standard augmentation: random resized crop, horizontal flip, ImageNet normalisation."""
    return v2.Compose([v2.RandomResizedCrop(size, scale=(min_scale, 1.0)), v2.RandomHorizontalFlip(),
                       v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def eval_transform(size: int) -> v2.Compose:
    """Resize to size / 0.875, centre crop, ImageNet normalisation."""
    return v2.Compose([v2.Resize(round(size / 0.875)), v2.CenterCrop(size), v2.ToImage(),
                       v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


class DecodedImages(Dataset):
    """Images decoded once and kept in memory (small sets), with a transform applied per item."""

    def __init__(self, images: ImageFolderSet, transform=None) -> None:
        self.images: list[Image.Image] = [images.with_transform(None)[i][0] for i in range(len(images))]
        self.labels = images.labels
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        image = self.images[index]
        return (self.transform(image) if self.transform else image), int(self.labels[index])

    def with_transform(self, transform) -> "DecodedImages":
        """The same decoded images with another transform."""
        copy = object.__new__(DecodedImages)
        copy.images, copy.labels, copy.transform = self.images, self.labels, transform
        return copy


def per_class_subset(labels: np.ndarray, per_class: int | None, seed: int) -> np.ndarray:
    """Sorted indices of a seeded sample of ``per_class`` items of every class (all of a smaller class)."""
    if per_class is None:
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(np.flatnonzero(labels == c), min(per_class, int((labels == c).sum())), replace=False)
              for c in np.unique(labels)]
    return np.sort(np.concatenate(chosen))


def warmup_cosine(epochs: int, warmup: int):
    """Per-epoch learning-rate factor: linear warm-up over ``warmup`` epochs, then cosine decay."""
    def factor(epoch: int) -> float:
        if epoch < warmup:
            return (epoch + 1) / (warmup + 1)
        return 0.5 * (1 + math.cos(math.pi * (epoch - warmup) / max(1, epochs - warmup)))
    return factor


@torch.no_grad()
def pooled_features(model: nn.Module, loader: DataLoader, device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """``(features, labels)``: the globally pooled trunk output of a frozen model over a loader."""
    trunk = pooled_trunk(model).to(device).eval()
    feats, labels = [], []
    for inputs, target in loader:
        feats.append(trunk(inputs.to(device)).float().cpu())
        labels.append(torch.as_tensor(target))
    return torch.cat(feats).numpy(), torch.cat(labels).numpy()


def linear_probe(train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray], seed: int = 0,
                 cs: tuple[float, ...] = (0.01, 0.1, 1.0)) -> float:
    """Val accuracy of a logistic regression on standardised features, its C chosen from ``cs`` by CV on train."""
    x, y = train
    folds = int(min(3, np.bincount(y).min()))
    model = make_pipeline(StandardScaler(), LogisticRegression(C=cs[0], max_iter=2000))
    if len(cs) > 1 and folds >= 2:
        model = GridSearchCV(model, {"logisticregression__C": list(cs)},
                             cv=StratifiedKFold(folds, shuffle=True, random_state=seed))
    with threadpool_limits(1):  # a tiny problem: BLAS threads only wait on each other (and on torch's)
        model.fit(x, y)
        return float(model.score(*val))


def _loaders(recipe: Recipe, seed: int) -> tuple[DataLoader, DataLoader, DataLoader, dict]:
    """(augmented train, plain train, val) loaders over imagenette, and what data they read."""
    train_set = load_imagenette("train", full=recipe.full_data)
    location = train_set.location
    val_set = load_imagenette("val", full=recipe.full_data)
    train_set = train_set.subset(per_class_subset(train_set.labels, recipe.train_per_class, seed))
    val_set = val_set.subset(per_class_subset(val_set.labels, recipe.val_per_class, seed))
    train = DecodedImages(train_set, train_transform(recipe.input_size, recipe.min_crop_scale))
    val = DecodedImages(val_set, eval_transform(recipe.input_size))
    batches = dict(batch_size=recipe.batch_size, num_workers=0)
    data = {
        "dataset": "imagenette", "source": location.describe(), "official": location.official,
        "train_images": len(train), "val_images": len(val), "skipped_unreadable": len(train_set.skipped),
        "classes": [IMAGENETTE_CLASSES.get(c, c) for c in train_set.classes],
    }
    return (
        DataLoader(train, shuffle=True, drop_last=len(train) > recipe.batch_size,
                   generator=torch.Generator().manual_seed(seed), **batches),
        DataLoader(train.with_transform(eval_transform(recipe.input_size)), **batches),
        DataLoader(val, **batches),
        data,
    )


def build(arch: str, recipe: Recipe, profile: str, seed: int = 0, checkpoint: Checkpointer | None = None,
          ) -> dict[str, object]:
    """Train stand-in ``arch`` by ``recipe``; return ``{"state_dict", "record"}`` (the record is JSON-ready).

    Runs under a forked RNG, so a chapter that builds its stand-in on first use draws the same
    random numbers afterwards as one that found it cached.
    """
    run = results.start(f"backbone-{arch}", profile, seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        train_loader, plain_train, val_loader, data = _loaders(recipe, seed)
        run.add_data("imagenette", data["source"], train=data["train_images"], val=data["val_images"])
        num_classes = len(data["classes"])
        net = training_model(arch, num_classes, seed).to(memory_format=torch.channels_last)
        optimizer = torch.optim.SGD(net.parameters(), lr=recipe.lr, momentum=0.9, nesterov=True,
                                    weight_decay=recipe.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(recipe.epochs, recipe.warmup_epochs))
        history = train_classifier(
            net, train_loader, optimizer, recipe.epochs, val_loader=val_loader, scheduler=scheduler,
            device=recipe.device, loss_fn=nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing),
            checkpoint=checkpoint,
            desc=f"{arch} stand-in (about {recipe.expected_minutes:g} min in all on 2 CPU cores)",
        )
        state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
        model = assemble(arch, state, num_classes).to(recipe.device)
        own_val_acc = accuracy(model, val_loader, recipe.device)
        random_model = build_arch(arch, num_classes, seed).to(recipe.device)
        probe_trained = linear_probe(pooled_features(model, plain_train, recipe.device),
                                     pooled_features(model, val_loader, recipe.device), seed, recipe.probe_cs)
        probe_random = linear_probe(pooled_features(random_model, plain_train, recipe.device),
                                    pooled_features(random_model, val_loader, recipe.device), seed, recipe.probe_cs)
    provenance = run.provenance()
    record = {
        "arch": arch,
        "profile": profile,
        "seed": seed,
        "recipe_version": RECIPE_VERSION,
        "data": data,
        **recipe.describe(),
        "num_classes": num_classes,
        "val_acc": round(own_val_acc, 4),
        "final_train_acc": round(history.train_acc[-1], 4),
        "history": {"train_loss": [round(v, 4) for v in history.train_loss],
                    "val_acc": [round(v, 4) for v in history.val_acc]},
        "probe": {
            "method": ("logistic regression on the standardised, globally average-pooled output of the last "
                       f"conv block (C from {list(recipe.probe_cs)} by 3-fold CV on the train images), scored on val"),
            "standin": round(probe_trained, 4),
            "random": round(probe_random, 4),
        },
        "beats_random_probe": bool(own_val_acc > probe_random and probe_trained > probe_random),
        "train_images_per_s": round(float(np.median(history.samples_per_s)), 1),
        "resumed_after_epochs": history.resumed_epochs,
        "train_s": round(sum(history.seconds), 1),
        "wall_s": provenance["wall_s"],
        "budget_minutes": recipe.budget_minutes,
        "within_budget": bool(provenance["wall_s"] <= recipe.budget_minutes * 60),
        "date": datetime.now(timezone.utc).date().isoformat(),
        "provenance": {k: provenance[k] for k in ("device", "python", "torch", "torchvision", "git_commit",
                                                   "git_dirty", "started_at", "peak_rss_mib")},
    }
    record = json.loads(json.dumps(record))  # plain JSON types only (torch's version string is a subclass of str)
    return {"state_dict": state, "record": record, "recipe": asdict(recipe)}
