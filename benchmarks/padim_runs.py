"""One run of ``padim_compare.py`` in its own process: one implementation, crop, dims.

``python benchmarks/padim_runs.py '<job as JSON>'`` loads the data and the backbone,
notes the resident memory (the baseline), fits and scores with the job's implementation
while timing it and tracking its peak memory, then writes ``<key>.json`` (the row) and
``<key>.npy`` (the anomaly maps) into the job's ``workdir``. The book's float32 run also
writes the channel index that the other implementations then use.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import padim_reference as reference
import psutil
import torch
from padim_compare import (
    BACKBONE,
    BATCH_SIZE,
    CATEGORY,
    REFERENCE_LIMIT_GIB,
    SEED,
    STRIDES,
    Job,
)
from torch import nn

from helpers import backbones
from helpers.data.mvtec import load_mvtec, read_ground_truth, read_images
from helpers.models.padim import (
    Padim,
    image_auc,
    pixel_auc,
    prepare_images,
    prepare_masks,
)
from helpers.studies.ch03_anomaly_compression import PeakMemory

MIB = 2**20


class PeakRss:
    """Peak resident memory inside a ``with`` block, in bytes (``.peak``).

    On Linux the kernel's high-water mark is reset on entry (``/proc/self/clear_refs``)
    and read on exit, so no short spike is missed; elsewhere the chapter's sampling
    ``PeakMemory`` stands in.
    """

    CLEAR_REFS, STATUS = Path("/proc/self/clear_refs"), Path("/proc/self/status")

    def __init__(self) -> None:
        self.peak = 0
        self._sampler: PeakMemory | None = None

    def __enter__(self) -> "PeakRss":
        try:
            self.CLEAR_REFS.write_text("5")  # "5": reset the peak RSS (Linux >= 4.0)
        except OSError:
            self._sampler = PeakMemory().__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._sampler is None:
            line = next(
                s
                for s in self.STATUS.read_text().splitlines()
                if s.startswith("VmHWM:")
            )
            self.peak = int(line.split()[1]) * 1024
        else:
            self._sampler.__exit__(*exc)
            self.peak = int(self._sampler.peak_mib * MIB)


class Timed(nn.Module):
    """A backbone module whose calls add up their wall time (``.seconds``)."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module, self.seconds = module, 0.0

    def forward(self, x: torch.Tensor) -> Any:
        began = time.perf_counter()
        out = self.module(x)
        self.seconds += time.perf_counter() - began
        return out


class Bf16Autocast(nn.Module):
    """A feature pyramid under CPU bfloat16 autocast, its outputs back in float32."""

    def __init__(self, pyramid: nn.Module) -> None:
        super().__init__()
        self.pyramid = pyramid

    def forward(self, rgb: torch.Tensor) -> list[torch.Tensor]:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            maps = self.pyramid(rgb)
        return [m.float() for m in maps]


@dataclass
class Inputs:
    """What every implementation gets: images, masks, labels, the backbone, its record."""

    train: np.ndarray
    test: np.ndarray
    masks: np.ndarray
    labels: np.ndarray
    model: nn.Module
    record: backbones.BackboneRecord

    def pyramid(self) -> backbones.FeaturePyramid:
        """The backbone's stage outputs at strides 4, 8 and 16."""
        return backbones.feature_pyramid(self.model, self.record, STRIDES)


def subset(count: int, wanted: int | None, labels: np.ndarray | None) -> np.ndarray:
    """Seeded sorted indices of ``wanted`` of ``count`` (all if None), half per label."""
    if wanted is None or wanted >= count:
        return np.arange(count)
    rng = np.random.default_rng(SEED)
    if labels is None:
        return np.sort(rng.choice(count, wanted, replace=False))
    good, bad = np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)
    half = wanted // 2
    return np.sort(
        np.concatenate(
            [
                rng.choice(good, half, replace=False),
                rng.choice(bad, wanted - half, replace=False),
            ]
        )
    )


def load_inputs(job: Job) -> Inputs:
    """The screw images (a seeded subset if ``job`` asks for fewer), the backbone."""
    category = load_mvtec(CATEGORY)
    category = category.subset(
        subset(len(category.train), job.train, None),
        subset(len(category.test), job.test, category.labels),
    )
    train, test = read_images(category.train), read_images(
        [t.path for t in category.test]
    )
    masks = read_ground_truth(category.test, test.shape[1:3])
    model, record = backbones.load(BACKBONE, "imagenet", "cpu")
    return Inputs(train, test, masks, category.labels, model, record)


def batches(images: np.ndarray, job: Job) -> Iterator[torch.Tensor]:
    """Batches of ``images`` prepared as the book does (RGB in [0, 1], cropped)."""
    for start in range(0, len(images), BATCH_SIZE):
        yield prepare_images(images[start : start + BATCH_SIZE], job.resize, job.crop)


def measure(
    fit: Callable[[], Any], infer: Callable[[Any], np.ndarray]
) -> dict[str, Any]:
    """Time and peak memory of ``fit()`` and ``infer(fitted)``; the maps at ``maps``."""
    baseline = psutil.Process().memory_info().rss
    with PeakRss() as fit_memory:
        began = time.perf_counter()
        fitted = fit()
        fit_s = time.perf_counter() - began
    with PeakRss() as infer_memory:
        began = time.perf_counter()
        maps = np.asarray(infer(fitted), dtype=np.float32)
        infer_s = time.perf_counter() - began
    peak = max(fit_memory.peak, infer_memory.peak)
    return {
        "fit_s": fit_s,
        "infer_s": infer_s,
        "total_s": fit_s + infer_s,
        "baseline_rss_mib": baseline / MIB,
        "fit_peak_above_baseline_mib": (fit_memory.peak - baseline) / MIB,
        "infer_peak_above_baseline_mib": (infer_memory.peak - baseline) / MIB,
        "peak_rss_above_baseline_mib": (peak - baseline) / MIB,
        "maps": maps,
    }


def run_book(job: Job, inputs: Inputs, variant: str) -> dict[str, Any]:
    """``helpers.models.padim.Padim``: fit on the train images, embed and score the test ones."""
    padim = Padim(
        inputs.pyramid(),
        job.dims,
        seed=SEED,
        resize=job.resize,
        crop=job.crop,
        batch_size=BATCH_SIZE,
        device="cpu",
    )
    if variant == "float32":
        np.save(job.index_file, padim.index.numpy())
    elif not np.array_equal(np.load(job.index_file), padim.index.numpy()):
        raise RuntimeError(
            "the variant drew other channels than the book's float32 run"
        )
    warmup: dict[str, float] = {}
    if variant == "bf16":
        padim.tap.pyramid = Bf16Autocast(padim.tap.pyramid)
    elif variant == "compile":
        padim.tap.pyramid = torch.compile(padim.tap.pyramid)
        began = time.perf_counter()  # the first call compiles: timed apart
        padim.embed(inputs.train[:BATCH_SIZE])
        warmup["warmup_s"] = time.perf_counter() - began
    timer = padim.tap.pyramid = Timed(padim.tap.pyramid)
    row = measure(
        lambda: padim.fit(inputs.train),
        lambda fit: padim.score(fit, padim.embed(inputs.test)),
    )
    return {**row, "backbone_s": timer.seconds, **warmup}


def run_anomalib(job: Job, inputs: Inputs) -> dict[str, Any]:
    """anomalib's ``PadimModel`` on the same timm module, stages and channels; no Lightning.

    As anomalib's Lightning ``Padim`` does: forward each training batch in train mode
    (the embeddings go to its memory bank), ``fit()``, then the test batches in eval mode.
    Inputs are normalised as its pre-processor would, with the backbone's mean and std.
    """
    try:
        from anomalib.models.image.padim.torch_model import PadimModel
    except ImportError as error:
        raise SystemExit(
            f'anomalib is missing ({error}); pip install -e ".[bench]"'
        ) from error

    stages = [s.name for s in inputs.pyramid().stages]  # blocks.1, blocks.2, blocks.4
    model = PadimModel(
        backbone=inputs.model, layers=stages, pre_trained=False, n_features=job.dims
    )
    model.idx = torch.from_numpy(np.load(job.index_file))
    timer = model.feature_extractor = Timed(model.feature_extractor)
    mean = torch.tensor(inputs.record.mean).view(1, 3, 1, 1)
    std = torch.tensor(inputs.record.std).view(1, 3, 1, 1)

    def fit() -> None:
        model.train()
        for x in batches(inputs.train, job):
            model((x - mean) / std)
        model.fit()

    def infer(_: None) -> np.ndarray:
        model.eval()
        maps = [model((x - mean) / std).anomaly_map for x in batches(inputs.test, job)]
        return torch.cat(maps)[:, 0].numpy()

    return {**measure(fit, infer), "backbone_s": timer.seconds}


def run_reference(job: Job, inputs: Inputs) -> dict[str, Any]:
    """xiahaifeng1995's PaDiM on the book's feature pyramid (its stage outputs)."""
    timer = Timed(inputs.pyramid())
    idx = torch.from_numpy(np.load(job.index_file))

    def fit() -> list[np.ndarray]:
        return reference.fit(
            reference.embeddings(timer, batches(inputs.train, job), idx)
        )

    def infer(train_outputs: list[np.ndarray]) -> np.ndarray:
        test = reference.embeddings(timer, batches(inputs.test, job), idx)
        return reference.score(train_outputs, test, job.crop)

    return {**measure(fit, infer), "backbone_s": timer.seconds}


def reference_estimate_gib(job: Job, inputs: Inputs) -> float:
    """The reference's estimated peak (its training side, the larger one), in GiB."""
    channels = inputs.pyramid().channels
    grid = job.crop // STRIDES[0]
    return reference.peak_bytes(len(inputs.train), grid, channels) / 2**30


def run(job: Job) -> dict[str, Any]:
    """The job's row: status, timings, memory, AUCs; its maps are saved beside it."""
    torch.set_num_threads(job.threads)
    inputs = load_inputs(job)
    name, _, variant = job.implementation.partition("-")
    row: dict[str, Any] = {
        "train": len(inputs.train),
        "test": len(inputs.test),
        "threads": torch.get_num_threads(),
    }
    if name == "reference":
        estimate = row["estimated_peak_gib"] = reference_estimate_gib(job, inputs)
        if estimate > REFERENCE_LIMIT_GIB:
            why = f"estimated peak {estimate:.1f} GiB > {REFERENCE_LIMIT_GIB} GiB"
            return {**row, "status": "skipped", "reason": why}
    if name == "book":
        row.update(run_book(job, inputs, variant or "float32"))
    elif name == "anomalib":
        row.update(run_anomalib(job, inputs))
    else:
        row.update(run_reference(job, inputs))
    maps = row.pop("maps")
    row["padim_s"] = row["total_s"] - row["backbone_s"]  # all but the backbone forward
    np.save(Path(job.workdir) / f"{job.key}.npy", maps)
    masks = prepare_masks(inputs.masks, job.resize, job.crop)
    return {
        **row,
        "status": "ok",
        "grid": job.crop // STRIDES[0],
        "image_auc": image_auc(inputs.labels, maps),
        "pixel_auc": pixel_auc(masks, maps),
    }


if __name__ == "__main__":
    job = Job(**json.loads(sys.argv[1]))
    (Path(job.workdir) / f"{job.key}.json").write_text(json.dumps(run(job)))
