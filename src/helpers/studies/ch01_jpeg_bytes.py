"""Chapter 01 (Hi-king 2017): classify digits from the bytes of their JPEG files.

Per-profile sizes (``settings``) and the runners the chapter calls: data splits, cached encodings,
training (cached models), glitch robustness, the pixel baseline and byte saliency.

Three byte models: the post's (``design="post"``, ``ByteClassifier``), the bit reader
(``"reader"``, ``BitReader``) and the block reader (``"blocks"``, ``BlockReader``), which reads
files written with a restart marker after every 8x8 block (``prepare(..., restart=True)``).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader, Dataset, TensorDataset

from helpers.codecs.jpeg_bytes import (
    QUALITY,
    EncodedFiles,
    JpegByteSet,
    Layout,
    PaddedBytes,
    decode_jpeg_bytes,
    encode_all,
    encode_jpeg_bytes,
    files_of,
    header_length,
    original_uint8,
    shift_image,
    zero_random_bytes,
)
from helpers.core import cache, paper, profiles, verdicts
from helpers.core.memory import StepMemory, step_memory
from helpers.core.results import Claim
from helpers.data import ImageSplit, load_idx_split
from helpers.methods.train import History, predict, train_classifier
from helpers.models.bit_reader import BitReader
from helpers.models.block_reader import BlockReader
from helpers.models.byte_classifier import Bugs, ByteClassifier
from helpers.models.pixel_cnn import PixelCNN, to_pixels

REGIONS = {"whole file": False, "scan only": True}  # region name -> header protected


@dataclass(frozen=True)
class Settings:
    """Sizes of one profile (the original's values are in the ``gpu`` entry's comments)."""

    official_mnist_train: bool  # official 60k/10k MNIST; otherwise the 10k test set split 80/20
    limit: int | None  # cap on the images per split before encoding (smoke only)
    embed_dim: int  # original 100
    hidden: int  # original 100
    batch_size: int  # original 1000 (800 in its released model)
    lr: float  # original: Adam's default 1e-3
    epochs: int  # every MNIST byte model (main, ablation, variants)
    seeds: int  # seeds per ablation row
    max_shift: int  # random shift of the training digits in pixels, each axis (original 3)
    max_zeroed: int  # glitch-augmented training: up to this many zeroed scan bytes per file
    glitch_counts: tuple[int, ...]
    robust_size: int | None  # test files in the robustness experiments (None: all)
    saliency_size: int
    pixel_epochs: int
    long_epochs: int  # the no-shift model trained longer (gpu: as long as the ablation, so the same model)
    reader_train: int | None  # Fashion-MNIST training files of the readers' runs (None: all 60k)
    reader_epochs: int  # the readers' ablation and glitch runs
    curve_sizes: tuple[tuple[str, int], ...]  # learning-curve points (dataset, training files)
    curve_post_sizes: tuple[tuple[str, int], ...]  # the points where the post's architecture runs too
    curve_samples: int  # training files seen per learning-curve point (epochs = samples / files)
    fashion_test: int | None = None  # Fashion-MNIST test images kept (None: all 10,000)
    reader_bytes: int = 320  # scan bytes the bit reader sees (longer scans are cut)
    reader_channels: int = 32
    reader_hidden: int = 256
    reader_batch: int = 64
    reader_lr: float = 1e-3
    reader_shift: int = 1  # the readers' random shifts (pixels, each axis)
    block_bytes: int = 32  # bytes of each 8x8 block the block reader sees (Fashion: median 20, 99th percentile 36)
    block_dim: int = 64  # the block reader's vector per block
    eval_batch: int = 500
    # processes that encode augmented files while the model trains (0: in the training process);
    # one persistent worker keeps a run reproducible, as its generator goes on across epochs
    loader_workers: int = 0
    device: str = "cpu"
    threads: int | None = 1  # torch threads while training; None keeps the default (all cores)


SETTINGS = {
    "smoke": Settings(
        official_mnist_train=False, limit=600, embed_dim=16, hidden=16,
        batch_size=32, lr=3e-3, epochs=1, seeds=2, max_shift=3, max_zeroed=30,
        glitch_counts=(0, 50), robust_size=100, saliency_size=16, pixel_epochs=1, long_epochs=2,
        reader_train=600, reader_epochs=1, curve_sizes=(("mnist", 300), ("fashion-mnist", 300), ("fashion-mnist", 600)),
        curve_post_sizes=(("fashion-mnist", 600),), curve_samples=600,
        threads=None,  # the smoke profile's own threads: 1, or $BOOK_SMOKE_THREADS
    ),
    "cpu": Settings(
        official_mnist_train=False, limit=None, embed_dim=16, hidden=16,
        batch_size=32, lr=3e-3, epochs=5, seeds=2, max_shift=3, max_zeroed=60,
        glitch_counts=(0, 10, 25, 50, 100, 150), robust_size=500, saliency_size=200, pixel_epochs=3, long_epochs=12,
        reader_train=None, reader_epochs=2, reader_batch=128, reader_lr=2e-3, fashion_test=5000,
        reader_bytes=352, loader_workers=1,
        curve_sizes=(("mnist", 2000), ("mnist", 8000), ("fashion-mnist", 4000), ("fashion-mnist", 16000),
                     ("fashion-mnist", 60000)),
        curve_post_sizes=(("mnist", 8000), ("fashion-mnist", 60000)),
        curve_samples=60_000,
    ),
    "gpu": Settings(
        official_mnist_train=True, limit=None, embed_dim=100, hidden=100,
        batch_size=800, lr=1e-3, epochs=100, seeds=3, max_shift=3, max_zeroed=60,
        glitch_counts=(0, 10, 25, 50, 100, 150, 200), robust_size=None, saliency_size=1000, pixel_epochs=10,
        long_epochs=100, reader_train=None, reader_epochs=30,
        curve_sizes=(("mnist", 7500), ("mnist", 15000), ("mnist", 30000), ("mnist", 60000), ("fashion-mnist", 7500),
                     ("fashion-mnist", 15000), ("fashion-mnist", 30000), ("fashion-mnist", 60000)),
        curve_post_sizes=(("mnist", 15000), ("mnist", 60000), ("fashion-mnist", 15000), ("fashion-mnist", 60000)),
        curve_samples=1_200_000, reader_channels=64, reader_batch=256, reader_lr=2e-3, reader_bytes=416,
        eval_batch=2000, loader_workers=2, device="cuda", threads=None,
    ),
}
# dryrun: the gpu profile's networks and batches on a tiny offline slice, every loop one or two steps
SETTINGS["dryrun"] = replace(
    SETTINGS["gpu"], official_mnist_train=False, limit=200, epochs=1, seeds=2, glitch_counts=(0, 50), robust_size=40,
    saliency_size=4, pixel_epochs=1, long_epochs=1, reader_train=200, reader_epochs=1,
    curve_sizes=(("mnist", 100), ("fashion-mnist", 100), ("fashion-mnist", 200)),
    curve_post_sizes=(("fashion-mnist", 200),), curve_samples=200, loader_workers=0, device="cpu",
)


def settings(profile: str) -> Settings:
    """The settings of ``profile`` ('smoke', 'cpu' or 'gpu')."""
    return profiles.select(profile, SETTINGS)


# ---------------------------------------------------------------- data

@dataclass(frozen=True)
class TrainTest:
    """The train and test images of one dataset, and how they were chosen."""

    train: ImageSplit
    test: ImageSplit
    note: str


def stratified_subset(split: ImageSplit, size: int | None, seed: int) -> ImageSplit:
    """A seeded, class-balanced subset of ``size`` images (the whole split if ``size`` is None or larger)."""
    if size is None or size >= len(split):
        return split
    keep, _ = train_test_split(np.arange(len(split)), train_size=size, stratify=split.labels, random_state=seed)
    return split.subset(np.sort(keep))


def load_train_test(dataset: str, cfg: Settings, seed: int) -> TrainTest:
    """Train/test images of 'mnist' or 'fashion-mnist' for the profile ``cfg``."""
    if dataset == "mnist" and not cfg.official_mnist_train:
        pool = load_idx_split("mnist", "test")
        train_idx, test_idx = train_test_split(
            np.arange(len(pool)), test_size=0.2, stratify=pool.labels, random_state=seed)
        train = replace(pool.subset(np.sort(train_idx)), split="80% of test")
        test = replace(pool.subset(np.sort(test_idx)), split="20% of test")
        note = ("The official 60,000-digit training set is not available offline, so the 10,000 official test "
                "digits are split 80/20 (seeded, stratified by class) into our training and test sets.")
    else:
        train, test = load_idx_split(dataset, "train"), load_idx_split(dataset, "test")
        note = "The official training and test splits."
    if dataset == "fashion-mnist" and cfg.fashion_test and not cfg.limit:
        test = stratified_subset(test, cfg.fashion_test, seed)
        note += f" This profile tests on {len(test):,} of the 10,000 test images (seeded, stratified)."
    if cfg.limit:
        train, test = stratified_subset(train, cfg.limit, seed), stratified_subset(test, cfg.limit // 4, seed)
        note += f" This profile keeps {len(train)} training and {len(test)} test images (seeded, stratified)."
    return TrainTest(train, test, note)


def encode_split(split: ImageSplit, quality: int = QUALITY, overflow: bool = False,
                 shift: tuple[int, int] = (0, 0), restart: bool = False) -> tuple[EncodedFiles, float | None]:
    """JPEG files of every image of ``split`` (cached) and the seconds spent encoding (None if cached).

    ``restart``: a restart marker after every 8x8 block (``encode_jpeg_bytes``).
    """
    digest = hashlib.sha256(np.ascontiguousarray(split.images).tobytes()).hexdigest()[:16]
    key = cache.key_of(dataset=split.name, split=split.split, images=digest, quality=quality,
                       overflow=overflow, shift=list(shift), **({"restart": True} if restart else {}))

    def build() -> dict[str, torch.Tensor]:
        images = original_uint8(split.images) if overflow else split.images
        if shift != (0, 0):
            images = np.stack([shift_image(image, *shift) for image in images])
        return EncodedFiles.from_files(encode_all(images, quality, restart)).as_dict()

    began = time.perf_counter()
    stored, cached = cache.load_or_build("jpeg-bytes", key, build)
    return EncodedFiles(**stored), None if cached else time.perf_counter() - began


@dataclass(frozen=True)
class ByteData:
    """Padded byte tensors of a train/test pair, ready for a byte classifier."""

    name: str
    train: PaddedBytes
    test: PaddedBytes
    train_labels: torch.Tensor
    test_labels: torch.Tensor
    train_images: np.ndarray  # the pixels the files were made from (re-encoded for augmentation)
    classes: tuple[str, ...]
    variant: Bugs
    header: int  # header bytes kept at the start of each row (0 when stripped)
    layout: Layout
    quality: int
    restart: bool = False  # files written with a restart marker after every 8x8 block

    def describe(self) -> str:
        """Two lines (three with restart markers): sizes and width; padding and truncations."""
        where = "after the file" if self.layout.pad_at is None else f"after byte {self.layout.pad_at}"
        markers = "\n  written with a restart marker after every 8x8 block" if self.restart else ""
        return (f"{self.name}: {len(self.train_labels)} train / {len(self.test_labels)} test files as rows of "
                f"{self.layout.width} values,\n  padded with {self.layout.pad_value} {where}; "
                f"{self.train.truncated} train and {self.test.truncated} test file(s) truncated{markers}")


def prepare(images: TrainTest, variant: Bugs, *, strip_header: bool = False, quality: int = QUALITY,
            restart: bool = False) -> ByteData:
    """Encode (cached) and pad both splits; the pad length is the longest training file, as in the original.

    ``restart``: write the files with a restart marker after every 8x8 block (the block reader's input).
    """
    train_files, _ = encode_split(images.train, quality, variant.uint8_overflow, restart=restart)
    test_files, _ = encode_split(images.test, quality, variant.uint8_overflow, restart=restart)
    header = header_length(train_files[0])
    skip = header if strip_header else 0
    layout = variant.layout(int(train_files.lengths.max()) - skip, header, skip)
    pixels = original_uint8(images.train.images) if variant.uint8_overflow else images.train.images
    return ByteData(
        name=images.train.name, train=layout.pad(train_files), test=layout.pad(test_files),
        train_labels=torch.from_numpy(images.train.labels), test_labels=torch.from_numpy(images.test.labels),
        train_images=pixels, classes=images.train.classes, variant=variant,
        header=header - skip, layout=layout, quality=quality, restart=restart,
    )


def training_subset(data: ByteData, size: int | None, seed: int) -> ByteData:
    """``data`` with a seeded, stratified subset of ``size`` training files."""
    n = len(data.train_labels)
    if size is None or size >= n:
        return data
    keep, _ = train_test_split(np.arange(n), train_size=size, stratify=data.train_labels.numpy(), random_state=seed)
    keep = np.sort(keep)
    rows = torch.from_numpy(keep)
    return replace(data, train=data.train.rows(rows), train_labels=data.train_labels[rows],
                   train_images=data.train_images[keep])


# ---------------------------------------------------------------- training

DESIGNS = {"post": "the post's architecture (bytes, LSTM)", "reader": "bit reader (bits, strided convs)",
           "blocks": "block reader (restart markers, one slot per block)"}
READERS = ("reader", "blocks")  # the designs that train with the reader_* settings


@dataclass
class Trained:
    """A trained byte classifier, its per-epoch history and whether it came from the cache."""

    model: torch.nn.Module
    history: History
    cached: bool

    @property
    def samples_per_s(self) -> float:
        """Median training throughput over the epochs."""
        return float(np.median(self.history.samples_per_s))

    @property
    def test_acc(self) -> list[float]:
        """Accuracy on the test files after each epoch (``fit`` passes them as the ``val_loader``)."""
        return self.history.val_acc


def byte_model(data: ByteData, cfg: Settings, conv_layers: int = 2, design: str = "post") -> torch.nn.Module:
    """A fresh classifier of ``design`` (see ``DESIGNS``) sized for the profile."""
    if design == "post":
        return ByteClassifier(data.variant, embed_dim=cfg.embed_dim, hidden=cfg.hidden, conv_layers=conv_layers,
                              num_classes=len(data.classes))
    if design == "reader":
        if data.variant.pad_with_ones or data.layout.skip:
            raise ValueError("the bit reader reads the fixed layout with its header (pad tokens before the scan)")
        return BitReader(data.header, n_bytes=cfg.reader_bytes, channels=cfg.reader_channels, conv_layers=conv_layers,
                         hidden=cfg.reader_hidden, num_classes=len(data.classes))
    if design == "blocks":
        if data.variant.pad_with_ones or data.layout.skip or not data.restart:
            raise ValueError("the block reader reads restart-marked files in the fixed layout with their header: "
                             "prepare(..., restart=True) with Bugs.fixed()")
        return BlockReader(data.header, block_bytes=cfg.block_bytes, channels=cfg.reader_channels,
                           conv_layers=conv_layers, block_dim=cfg.block_dim, hidden=cfg.reader_hidden,
                           num_classes=len(data.classes))
    raise ValueError(f"unknown design {design!r}; choose from {sorted(DESIGNS)}")


def _loader(data: ByteData, batch_size: int, max_shift: int, max_zeroed: int, seed: int,
            workers: int = 0) -> DataLoader:
    train: Dataset
    generator = torch.Generator().manual_seed(seed)
    if max_shift or max_zeroed:
        train = JpegByteSet(data.train_images, data.train_labels.numpy(), data.layout, quality=data.quality,
                            restart=data.restart, max_shift=max_shift, max_zeroed=max_zeroed, zero_from=data.header, seed=seed)
        if workers:
            return DataLoader(train, batch_size=batch_size, shuffle=True, generator=generator,
                              num_workers=workers, persistent_workers=True)
    else:
        train = TensorDataset(data.train.values, data.train_labels)
    return DataLoader(train, batch_size=batch_size, shuffle=True, generator=generator)


def test_loader(values: torch.Tensor, labels: torch.Tensor, cfg: Settings) -> DataLoader:
    """Batches of (values, labels) in order, for evaluation."""
    return DataLoader(TensorDataset(values, labels), batch_size=cfg.eval_batch)


def fit(data: ByteData, cfg: Settings, *, design: str = "post", conv_layers: int = 2, max_shift: int = 0,
        max_zeroed: int = 0, epochs: int | None = None, seed: int = 0, desc: str = "byte model") -> Trained:
    """Train a classifier of ``design`` with Adam (test accuracy after every epoch); cached by its whole configuration.

    The post's design trains with ``cfg.batch_size`` and ``cfg.lr`` for ``cfg.epochs``, the readers with
    ``cfg.reader_batch`` and ``cfg.reader_lr`` for ``cfg.reader_epochs`` (unless ``epochs`` is given).
    """
    reader = design in READERS
    epochs = (cfg.reader_epochs if reader else cfg.epochs) if epochs is None else epochs
    batch_size, lr = (cfg.reader_batch, cfg.reader_lr) if reader else (cfg.batch_size, cfg.lr)
    digest = hashlib.sha256(data.train.values.numpy().tobytes() + data.test.values.numpy().tobytes()).hexdigest()[:16]
    key = cache.key_of(data=digest, variant=asdict(data.variant), settings=asdict(cfg), design=design,
                       conv_layers=conv_layers, max_shift=max_shift, max_zeroed=max_zeroed, epochs=epochs, seed=seed,
                       version=2)  # 2: the shared-prefix fix changes models trained on glitched batches

    def build() -> dict:
        torch.manual_seed(seed)
        model = byte_model(data, cfg, conv_layers, design)
        history = train_classifier(
            model, _loader(data, batch_size, max_shift, max_zeroed, seed, cfg.loader_workers),
            torch.optim.Adam(model.parameters(), lr=lr), epochs,
            val_loader=test_loader(data.test.values, data.test_labels, cfg), device=cfg.device, desc=desc)
        return {"state": model.cpu().state_dict(), "history": history.as_dict()}

    stored, cached = cache.load_or_build("byte-classifier", key, build)
    model = byte_model(data, cfg, conv_layers, design)
    model.load_state_dict(stored["state"])
    return Trained(model.to(cfg.device).eval(), History(**stored["history"]), cached)


def predict_values(model: torch.nn.Module, values: torch.Tensor, cfg: Settings) -> np.ndarray:
    """Predicted classes of padded byte values."""
    pred, _ = predict(model, test_loader(values, torch.zeros(len(values), dtype=torch.long), cfg), cfg.device)
    return pred


def accuracy_with_interval(correct: np.ndarray, z: float = 1.96) -> tuple[float, float, float]:
    """Accuracy and its Wilson score interval (95 % by default) from a boolean array."""
    n = len(correct)
    p = float(np.mean(correct))
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return p, centre - half, centre + half


ABLATION = {  # setting -> (conv layers, random shifts), the three bars of the post's chart
    "full model": (2, True),
    "- augmentation": (2, False),
    "- augmentation - CNN": (0, False),
}


def shifts_of(design: str, cfg: Settings) -> int:
    """The random shifts (pixels, each axis) that ``design`` trains with in profile ``cfg``."""
    return cfg.reader_shift if design in READERS else cfg.max_shift


def run_ablation(data: ByteData, cfg: Settings, seed: int = 0,
                 design: str = "post") -> tuple[pd.DataFrame, dict[str, list[Trained]]]:
    """Train every ablation setting of ``design`` with ``cfg.seeds`` seeds; mean ± sd of final test and train accuracy."""
    runs = {
        name: [fit(data, cfg, design=design, conv_layers=conv_layers, max_shift=shifts_of(design, cfg) if shifts else 0,
                   seed=seed + k, desc=f"{name}, seed {seed + k}") for k in range(cfg.seeds)]
        for name, (conv_layers, shifts) in ABLATION.items()
    }
    rows = []
    for name, trained in runs.items():
        test = [t.test_acc[-1] for t in trained]
        rows.append({"setting": name, "seeds": len(test), "test mean": float(np.mean(test)),
                     "test sd": float(np.std(test, ddof=1)) if len(test) > 1 else float("nan"),
                     "train mean": float(np.mean([t.history.train_acc[-1] for t in trained])),
                     "test per seed": ", ".join(f"{a:.3f}" for a in test)})
    return pd.DataFrame(rows).set_index("setting"), runs


def learning_curve(pools: dict[str, dict[str, ByteData]], cfg: Settings, seed: int = 0) -> pd.DataFrame:
    """Test accuracy vs training files, every point trained on about ``cfg.curve_samples`` files seen.

    ``pools[design][dataset]`` holds the files that ``design`` reads. Each point is a seeded,
    stratified subset of its training files, trained for ``round(curve_samples / files)`` epochs (at
    least one) with the design's own shifts; a reader runs at every point of ``cfg.curve_sizes``, the
    post's architecture at ``cfg.curve_post_sizes``.
    """
    stray = sorted(set(cfg.curve_post_sizes) - set(cfg.curve_sizes))
    if stray:
        raise ValueError(f"curve_post_sizes {stray} are not in curve_sizes: those points would never run")
    unknown = sorted(set(pools) - set(DESIGNS))
    if unknown:
        raise ValueError(f"unknown designs {unknown}; choose from {sorted(DESIGNS)}")
    rows = []
    for dataset, size in cfg.curve_sizes:
        for design in pools:
            if design == "post" and (dataset, size) not in cfg.curve_post_sizes:
                continue
            data = training_subset(pools[design][dataset], size, seed)
            n = len(data.train_labels)
            epochs = max(1, round(cfg.curve_samples / n))
            trained = fit(data, cfg, design=design, max_shift=shifts_of(design, cfg), epochs=epochs, seed=seed,
                          desc=f"{design}, {dataset} {n:,}")
            rows.append({"dataset": dataset, "design": design, "train files": n, "epochs": epochs,
                         "files seen": epochs * n, "test accuracy": trained.test_acc[-1],
                         "train accuracy": trained.history.train_acc[-1],
                         "train s": float(sum(trained.history.seconds))})
    return pd.DataFrame(rows)


def curve_summary(curve: pd.DataFrame, test_files: dict[str, int]) -> pd.DataFrame:
    """Per dataset and design: test accuracy at the fewest and the most training files of the curve.

    ``more files help`` is True when the accuracy rises by more than two binomial standard errors on
    ``test_files[dataset]`` test files (every point saw about the same number of files, so the
    change is what more *distinct* files buy at a fixed budget).
    """
    rows = []
    for (dataset, design), points in curve.groupby(["dataset", "design"], sort=False):
        points = points.sort_values("train files")
        first, last = points.iloc[0], points.iloc[-1]
        n = test_files[dataset]
        change = float(last["test accuracy"] - first["test accuracy"])
        rows.append({"dataset": dataset, "design": design, "fewest files": int(first["train files"]),
                     "accuracy (fewest)": float(first["test accuracy"]), "most files": int(last["train files"]),
                     "accuracy (most)": float(last["test accuracy"]), "change": change,
                     "more files help": len(points) > 1 and change > 0 and verdicts.proportions_differ(
                         float(first["test accuracy"]), float(last["test accuracy"]), n, n)})
    return pd.DataFrame(rows).set_index(["dataset", "design"])


def overflow_summary(split: ImageSplit, quality: int = QUALITY) -> dict[str, float]:
    """How often the original's uint8 overflow strikes, and what it does to the file sizes."""
    plain, _ = encode_split(split, quality)
    wrapped, _ = encode_split(split, quality, overflow=True)
    full_ink = split.images == 255
    return {"pixels at 255": float(full_ink.mean()), "digits with a 255 pixel": float(full_ink.any((1, 2)).mean()),
            "mean bytes": float(plain.lengths.float().mean()), "mean bytes, overflow": float(wrapped.lengths.float().mean())}


# ---------------------------------------------------------------- glitches

def glitched(padded: PaddedBytes, count: int, header: int, protect_header: bool, seed: int) -> PaddedBytes:
    """``padded`` with ``count`` random bytes per file set to 0, in the whole file or in the scan only.

    A file with fewer than ``count`` bytes to choose from (a short scan) has all of them zeroed.
    """
    return zero_random_bytes(padded, count, torch.Generator().manual_seed(seed), header if protect_header else 0,
                             at_most=True)


def decode_all(padded: PaddedBytes, size: tuple[int, int] = (28, 28)) -> list[np.ndarray | None]:
    """Pixels of every file, None where Pillow cannot decode it or it does not decode to ``size``."""
    decoded = [decode_jpeg_bytes(f) for f in files_of(padded)]
    return [d if d is not None and d.shape == size else None for d in decoded]


def pixel_predictions(model: torch.nn.Module, decoded: list[np.ndarray | None], cfg: Settings) -> np.ndarray:
    """Pixel-model predictions of decoded files; -1 (always wrong) where a file did not decode."""
    pred = np.full(len(decoded), -1)
    ok = [i for i, d in enumerate(decoded) if d is not None]
    if ok:
        pixels = to_pixels(np.stack([decoded[i] for i in ok]))
        pred[ok], _ = predict(model, DataLoader(TensorDataset(pixels, torch.zeros(len(ok))), batch_size=cfg.eval_batch),
                              cfg.device)
    return pred


def pixel_accuracy(model: torch.nn.Module, data: ByteData, cfg: Settings) -> float:
    """Test accuracy of a pixel model on ``data``'s clean test files, decoded by Pillow."""
    return float(np.mean(pixel_predictions(model, decode_all(data.test), cfg) == data.test_labels.numpy()))


def robustness(models: dict[str, torch.nn.Module], pixel_model: torch.nn.Module, data: ByteData,
               cfg: Settings, seed: int = 0) -> pd.DataFrame:
    """Accuracy vs zeroed bytes per region for byte models and the pixel CNN, and Pillow's decode rate.

    Every model sees the same glitched files; the pixel CNN scores a file it cannot decode as wrong.
    """
    n = len(data.test_labels) if cfg.robust_size is None else min(cfg.robust_size, len(data.test_labels))
    base, labels = data.test.rows(slice(0, n)), data.test_labels[:n].numpy()
    rows = []
    for count in cfg.glitch_counts:
        for region, protect in REGIONS.items():
            files = glitched(base, count, data.header, protect, seed + count)
            decoded = decode_all(files)
            row = {"zeroed bytes": count, "region": region, "decodable": np.mean([d is not None for d in decoded])}
            for name, model in models.items():
                row[name] = float(np.mean(predict_values(model, files.values, cfg) == labels))
            row["pixel CNN"] = float(np.mean(pixel_predictions(pixel_model, decoded, cfg) == labels))
            rows.append(row)
    return pd.DataFrame(rows)


def per_class_accuracy(pred: np.ndarray, labels: np.ndarray, classes: tuple[str, ...]) -> pd.Series:
    """Accuracy of each class."""
    return pd.Series({c: float(np.mean(pred[labels == i] == i)) for i, c in enumerate(classes)}, name="accuracy")


# ---------------------------------------------------------------- pixel baseline and saliency

def fit_pixel_cnn(images: np.ndarray, labels: np.ndarray, cfg: Settings, seed: int = 0,
                  quality: int = QUALITY) -> tuple[PixelCNN, History]:
    """Train the pixel CNN on the decoded clean JPEGs of ``images`` (what a pixel pipeline would see)."""
    decoded = np.stack([decode_jpeg_bytes(f) for f in encode_all(images, quality)])
    torch.manual_seed(seed)
    model = PixelCNN(num_classes=int(labels.max()) + 1)
    loader = DataLoader(TensorDataset(to_pixels(decoded), torch.from_numpy(labels)), batch_size=64, shuffle=True,
                        generator=torch.Generator().manual_seed(seed))
    history = train_classifier(model, loader, torch.optim.Adam(model.parameters(), lr=1e-3), cfg.pixel_epochs,
                               device=cfg.device, desc="pixel CNN")
    return model.eval(), history


def position_saliency(model: ByteClassifier, values: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """(N, L) gradient saliency: |d true-class logit / d byte embedding| per file and position (L1 over dims).

    The forward pass runs in training mode: cuDNN computes an LSTM's backward pass only there, and
    the model has no dropout or batch norm, so the two modes give the same logits.
    """
    grads: list[torch.Tensor] = []
    hook = model.embed.register_forward_hook(lambda _m, _i, out: (out.retain_grad(), grads.append(out))[-1])
    sharing, model.share_prefix = model.share_prefix, False  # per-file gradients need per-file prefixes
    was_training = model.training
    try:
        model.train()
        logits = model(values.to(next(model.parameters()).device))
        logits.gather(1, labels.view(-1, 1).to(logits.device)).sum().backward()
        saliency = grads[0].grad.abs().sum(-1)
    finally:
        hook.remove()
        model.share_prefix = sharing
        model.train(was_training)
        model.zero_grad(set_to_none=True)
    return saliency.cpu().numpy()


def training_throughput(model: torch.nn.Module, values: torch.Tensor, labels: torch.Tensor, batch_size: int,
                        steps: int = 3, device: str = "cpu") -> float:
    """Samples per second of full training steps (forward, backward, Adam) after one warm-up step."""
    model = model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters())
    began = 0.0
    for step in range(steps + 1):
        if step == 1:
            began = time.perf_counter()
        rows = slice(step * batch_size, (step + 1) * batch_size)
        loss = torch.nn.functional.cross_entropy(model(values[rows].to(device)), labels[rows].to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return steps * batch_size / (time.perf_counter() - began)


# ---------------------------------------------------------------- the design search (benchmarks/byte_readers.py)

CHANCE = 0.1  # ten balanced classes
WORKING_MODEL = 0.7  # clean test accuracy below which ablation and glitch differences say little about the post's
READER_BENCHMARK_FILE = "byte_readers.json"  # under results/benchmarks/


def load_reader_benchmark(folder: str | Path) -> dict:
    """The committed record of ``benchmarks/byte_readers.py`` (designs at an equal CPU budget), or a clear error."""
    path = Path(folder) / READER_BENCHMARK_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run `python benchmarks/byte_readers.py` (about 9 minutes on two "
                                "cores, with the offline datasets in $BOOK_DATA_DIR)")
    record = json.loads(path.read_text())
    if not record.get("rows"):
        raise ValueError(f"{path} holds no measured designs: run `python benchmarks/byte_readers.py` again")
    return record


def reader_benchmark_table(record: dict) -> pd.DataFrame:
    """One row per design, best final test accuracy first: what it tries, its files, size, speed and accuracies."""
    rows = [{"design": r["design"], "what it tries": r["description"],
             "restart markers": bool(r.get("restart_markers", False)), "parameters": r["params"],
             "files/s": r["files_per_s"], "epochs": r["epochs"], "test accuracy": r["final_test_acc"],
             "best epoch's test": max(r["test_acc"]), "train accuracy": r["train_acc"]} for r in record["rows"]]
    return pd.DataFrame(rows).sort_values("test accuracy", ascending=False).set_index("design")


def plot_reader_benchmark(record: dict, goal: float = WORKING_MODEL) -> plt.Figure:
    """Test accuracy against training seconds, one line per design, with chance and ``goal`` marked.

    The chapter's readers are drawn thick, designs on restart-marked files dashed.
    """
    fig, ax = plt.subplots(figsize=(6.4, 3.2), dpi=110)
    for row in record["rows"]:
        style = {"lw": 2.2 if row["design"] in ("bit reader", "block reader") else 1.2,
                 "ls": "--" if row.get("restart_markers") else "-"}
        ax.plot([0, *row["seconds"]], [CHANCE, *row["test_acc"]], marker="o", ms=3, label=row["design"], **style)
    ax.axhline(CHANCE, color="0.5", ls=":", lw=1, label="chance")
    ax.axhline(goal, color="tab:red", ls="--", lw=1, label=f"working model ({goal:g})")
    ax.set_xlabel("training seconds (one thread)", fontsize=9)
    ax.set_ylabel("test accuracy", fontsize=9)
    ax.set_ylim(0, 1)
    ax.tick_params(labelsize=9)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- the paper's claims

ORIGINAL_SAMPLES = 36_000 * 800  # its released model: 36,000 iterations of batch 800 (about 480 epochs of 60k)


def gpu_memory(cfg: Settings, file_bytes: int = 700) -> list[StepMemory]:
    """The training steps of ``cfg``'s byte models and the GPU memory each needs at its batch (estimates).

    Files are ``file_bytes`` long (about the longest MNIST digit at quality 75) and share no header,
    so the LSTM reads every byte: an upper bound for the post's model.
    """
    header = header_length(encode_jpeg_bytes(np.zeros((28, 28), np.uint8)))
    post = ByteClassifier(Bugs.fixed(), embed_dim=cfg.embed_dim, hidden=cfg.hidden, conv_layers=2)
    reader = BitReader(header, n_bytes=cfg.reader_bytes, channels=cfg.reader_channels, conv_layers=2,
                       hidden=cfg.reader_hidden)
    marked = header_length(encode_jpeg_bytes(np.zeros((28, 28), np.uint8), restart=True))
    blocks = BlockReader(marked, block_bytes=cfg.block_bytes, channels=cfg.reader_channels, conv_layers=2,
                         block_dim=cfg.block_dim, hidden=cfg.reader_hidden)

    def step(model: torch.nn.Module, length: int) -> Callable[[int], torch.Tensor]:
        return lambda b: torch.nn.functional.cross_entropy(model(torch.randint(0, 256, (b, length))),
                                                           torch.arange(b) % 10)

    return [step_memory(f"post's model ({file_bytes}-byte files)", post, step(post, file_bytes), cfg.batch_size),
            step_memory(f"bit reader ({header} + {cfg.reader_bytes} bytes)", reader,
                        step(reader, header + cfg.reader_bytes), cfg.reader_batch),
            step_memory(f"block reader ({marked} + {file_bytes} bytes)", blocks, step(blocks, marked + file_bytes),
                        cfg.reader_batch)]


def ablation_summary(ablation: pd.DataFrame) -> dict[str, dict[str, float]]:
    """``run_ablation``'s table as ``{setting: {column: value}}``, without the per-seed text."""
    return {name: {k: float(v) for k, v in row.items() if k != "test per seed"} for name, row in ablation.iterrows()}


def claim_measurements(cfg: Settings, main: Trained, data: ByteData, mean_bytes: float, header_bytes: int,
                       ablation: pd.DataFrame, ablation_data: ByteData, glitch_per_class: dict[str, float],
                       glitch_bytes: int, ablation_model: str = "block reader") -> dict:
    """What ``paper_claims`` compares with the post: the post's model (``main`` on ``data``), the file
    sizes, and the ablation of ``ablation_model`` (on ``ablation_data``) and its per-class glitch accuracies."""
    summary = ablation_summary(ablation)
    return {
        "test_acc": main.test_acc[-1], "test_n": len(data.test_labels), "train_size": len(data.train_labels),
        "epochs": cfg.epochs, "width": cfg.hidden, "mean_bytes": mean_bytes, "header_bytes": header_bytes,
        "train_acc": {"post's model (MNIST)": main.history.train_acc[-1],
                      f"{ablation_model} (Fashion)": summary["full model"]["train mean"]},
        "ablation": summary, "ablation_n": len(ablation_data.test_labels), "ablation_model": ablation_model,
        "ablation_data": "Fashion-MNIST", "glitch_per_class": glitch_per_class, "glitch_bytes": glitch_bytes,
    }


def result_metrics(main: Trained, data: ByteData, mean_bytes: float, header_bytes: int, curve: pd.DataFrame,
                   reader_vs_pixel: pd.DataFrame, ablation: pd.DataFrame, other_name: str, other: Trained,
                   no_header: Trained, longer: Trained, robustness: pd.DataFrame,
                   per_class: pd.DataFrame) -> dict:
    """The chapter's measurements for its results file (``results.Run.finish``) and the scoreboard."""
    summary = ablation_summary(ablation)
    return {
        "test_accuracy": main.test_acc[-1], "train_accuracy": main.history.train_acc[-1],
        "test_files": len(data.test_labels), "train_files": len(data.train_labels), "mean_file_bytes": mean_bytes,
        "header_bytes": header_bytes, "learning_curve": curve.to_dict(orient="list"),
        "reader_vs_pixel": reader_vs_pixel.to_dict(), "ablation_data": "fashion-mnist",
        "ablation_test_mean": {k: v["test mean"] for k, v in summary.items()},
        "ablation_test_sd": {k: v["test sd"] for k, v in summary.items()},
        f"{other_name}_variant_test_accuracy": other.test_acc[-1],
        "no_header_test_accuracy": no_header.test_acc[-1],
        "longer_training": {"epochs": longer.history.epochs, "train_accuracy": longer.history.train_acc[-1],
                            "test_accuracy": longer.test_acc[-1]},
        "robustness": robustness.to_dict(orient="list"), "per_class_at_glitch_bytes": per_class.to_dict(),
        "train_files_per_s": main.samples_per_s,
    }


def paper_claims(m: dict) -> list[Claim]:
    """The six claims of 000_claims.csv beside our measurements ``m``, with verdicts computed from them.

    ``m`` holds the post's architecture on MNIST (test/train accuracy) and the model that the ablation
    and glitch claims rest on (``m["ablation"]``, ``m["glitch_per_class"]``, trained on
    ``m["ablation_data"]``). The book's rules (``helpers.core.verdicts``) apply first: an ablation or glitch
    claim is "not comparable" when that model's clean test accuracy is below ``WORKING_MODEL`` (or
    within 0.1 of chance), and an ablation gap counts only when it exceeds both the seed spread and
    two binomial standard errors on ``m["ablation_n"]`` test files.
    """
    paper_rows = paper.table("000_claims")
    scale = (f"{m['train_size']:,} training digits for {m['epochs']} epochs at width {m['width']} "
             f"(original: 60,000 digits, about {ORIGINAL_SAMPLES // 60_000} epochs at width 100)")
    test_ok = m["test_acc"] > 0.98
    train_low = {k: v for k, v in m["train_acc"].items() if v < 0.99}
    size_gap = m["mean_bytes"] / 650 - 1
    full, noaug, lstm = (m["ablation"][k] for k in ABLATION)
    spread = max(full["test sd"], noaug["test sd"], lstm["test sd"])
    n = m["ablation_n"]

    def drop(high: float, low: float) -> bool:
        return high - low > spread and verdicts.proportions_differ(high, low, n, n)

    good_classes = sum(v >= 0.6 for v in m["glitch_per_class"].values())
    on = f"{m['ablation_model']} on {m['ablation_data']}"
    verdicts_ = [
        ("test_accuracy", test_ok,
         f"{m['test_n']:,} held-out digits (not 50). " + ("Above 0.98 even at our scale: " if test_ok else
                                                          "Below 0.98 at our scale: ") + scale),
        ("train_accuracy", not train_low,
         "Final-epoch accuracy on the (shifted) training files. " + (
             "Every model fits its training set." if not train_low else
             f"Underfitted after our short schedule: {', '.join(train_low)}.")),
        ("mean_jpeg_bytes", abs(size_gap) <= 0.1,
         f"Our mean is {size_gap:+.0%} off the post's figure; the header is {m['header_bytes']} bytes (the post: "
         "about 328). The scan length depends on the encoder build (libjpeg version and settings), and the post "
         "does not say how it measured its mean."),
        ("ablation_no_augmentation", drop(full["test mean"], noaug["test mean"]),
         f"{on}: mean test accuracy {full['test mean']:.3f} with shifts vs {noaug['test mean']:.3f} without, seed "
         f"spread up to {spread:.3f} ({full['seeds']:.0f} seeds); a drop beyond that spread and two standard "
         f"errors on {n:,} files counts as reproduced."),
        ("ablation_lstm_only", drop(min(full["test mean"], noaug["test mean"]), lstm["test mean"]),
         f"{on}: without convolutions {lstm['test mean']:.3f}; lowest by more than the seed spread and two "
         "standard errors counts as reproduced."),
        ("glitch_robustness", good_classes >= 6,
         f"{on}: {good_classes} of 10 classes keep accuracy >= 0.6 with {m['glitch_bytes']} bytes zeroed anywhere "
         f"in the file (rule: at least 6 classes). Clean test accuracy {full['test mean']:.3f}."),
    ]
    ours = [round(m["test_acc"], 3), {k: round(v, 3) for k, v in m["train_acc"].items()}, round(m["mean_bytes"], 1),
            {k: round(v["test mean"], 3) for k, v in m["ablation"].items() if ABLATION[k][0]},
            {k: round(v["test mean"], 3) for k, v in m["ablation"].items()},
            {k: round(v, 2) for k, v in m["glitch_per_class"].items()}]
    working = full["test mean"] >= WORKING_MODEL and verdicts.above_chance(full["test mean"], CHANCE)
    needs_model = {"ablation_no_augmentation", "ablation_lstm_only", "glitch_robustness"}

    def verdict(cid: str, ok: bool) -> str:
        if not working and cid in needs_model:
            return "not comparable"
        return "reproduced" if ok else "differs"

    caveat = (f" Not comparable: that model reaches only {full['test mean']:.2f} clean test accuracy (below "
              f"{WORKING_MODEL}), so its differences and failures say little about the post's trained model.")
    return [Claim(cid, row["claim"], row["value"], value, verdict(cid, ok),
                  why + (caveat if not working and cid in needs_model else ""))
            for (cid, ok, why), row, value in zip(verdicts_, paper_rows, ours)]
