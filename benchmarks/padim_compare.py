"""The book's PaDiM beside anomalib's and the reference implementation, same inputs.

``python benchmarks/padim_compare.py`` fits and scores PaDiM on MVTec AD screw (320
train, 160 test images) at crops 224 and 448 with 100 random dimensions, and at crop 224
with all 176 channels, with:

- ``book``: ``helpers.models.padim.Padim`` (float32), and as variants the same with the
  backbone forward under ``torch.autocast("cpu", dtype=torch.bfloat16)`` (``book-bf16``)
  or ``torch.compile`` (``book-compile``);
- ``anomalib``: anomalib 2.7.0's torch ``PadimModel`` (its feature extractor, Gaussian
  and anomaly-map code; no Lightning), given the book's backbone module, stage names and
  channel index;
- ``reference``: xiahaifeng1995's PaDiM (``benchmarks/padim_reference.py``), skipped
  where its estimated memory exceeds ``REFERENCE_LIMIT_GIB``.

All see the same uint8 images, resized and centre-cropped by
``helpers.models.padim.prepare_images``, the same packaged ImageNet EfficientNet-Lite0 at
strides 4/8/16 in float32, and the same random channels (the book's index). Each run is
a subprocess (``padim_runs.py``) that measures fit and inference time, peak RSS above
its baseline (RSS after imports, data and backbone load), image and pixel ROC-AUC, and
saves its anomaly maps, which are then compared with the book's. Rows, environment and
ratios go to ``results/benchmarks/padim_benchmark.json`` (written atomically).
``--quick`` is a seconds-long run on 24 + 24 images at crop 64, for tests.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "results" / "benchmarks" / "padim_benchmark.json"
QUICK_OUT = ROOT / "results" / "benchmarks" / "padim_benchmark.quick.json"
CATEGORY = "screw"
BACKBONE = "efficientnet_lite0"
STRIDES = (4, 8, 16)
SEED = 0
BATCH_SIZE = 32
DIMS = 100  # random dimensions (the paper's 100 of 448 for resnet18; here of 176)
ALL_DIMS = 176  # every tapped channel of EfficientNet-Lite0: 24 + 40 + 112
IMPLEMENTATIONS = ("book", "book-bf16", "book-compile", "anomalib", "reference")
REFERENCE_LIMIT_GIB = 8.0
WORKER_TIMEOUT_S = 3600
INSTALL_HINT = 'pip install -e ".[bench]"'


@dataclass(frozen=True)
class Scale:
    """Images and crops of one benchmark run; ``train``/``test`` None: every image."""

    train: int | None
    test: int | None
    crops: tuple[int, ...]
    all_dims_crop: (
        int | None
    )  # crop of the extra rows with every channel kept (no projection)


FULL = Scale(None, None, (224, 448), 224)
QUICK = Scale(24, 24, (64,), None)


@dataclass(frozen=True)
class Job:
    """One subprocess: an implementation at one crop and number of random dimensions."""

    implementation: str
    crop: int
    dims: int
    train: int | None
    test: int | None
    threads: int
    index_file: (
        str  # the book's channel index: written by the book run, read by the others
    )
    workdir: str

    @property
    def resize(self) -> int:
        """The square resized to before the centre crop (the paper's 256 for 224)."""
        return round(self.crop * 256 / 224)

    @property
    def key(self) -> str:
        return f"{self.implementation}-{self.crop}-{self.dims}"


def run_job(job: Job) -> dict[str, Any]:
    """``job`` in a fresh ``padim_runs.py`` process: its row, or why it failed."""
    threads = str(job.threads)
    env = {
        **os.environ,
        "OMP_NUM_THREADS": threads,
        "OPENBLAS_NUM_THREADS": threads,
        "MKL_NUM_THREADS": threads,
        "TQDM_DISABLE": "1",
    }
    command = [
        sys.executable,
        str(Path(__file__).with_name("padim_runs.py")),
        json.dumps(asdict(job)),
    ]
    try:
        done = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=WORKER_TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        return {"status": "failed", "reason": f"ran past {WORKER_TIMEOUT_S} s"}
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-3:]
        return {
            "status": "failed",
            "reason": " | ".join(tail) or f"exit status {done.returncode}",
        }
    return json.loads((Path(job.workdir) / f"{job.key}.json").read_text())


def map_agreement(book: np.ndarray, other: np.ndarray) -> dict[str, float]:
    """Pearson r of all pixels, and the largest absolute difference / the book's maximum."""
    a, b = book.astype(np.float64).ravel(), other.astype(np.float64).ravel()
    return {
        "map_pearson_r": float(np.corrcoef(a, b)[0, 1]),
        "map_max_abs_diff_rel": float(np.abs(a - b).max() / np.abs(a).max()),
    }


def plan(
    scale: Scale, implementations: tuple[str, ...], threads: int, workdir: str
) -> list[Job]:
    """Every job; the book's float32 run first at each setting (it draws the channels)."""
    settings = [(crop, DIMS) for crop in scale.crops]
    if scale.all_dims_crop is not None:
        settings.append((scale.all_dims_crop, ALL_DIMS))
    jobs = []
    for crop, dims in settings:
        index_file = str(Path(workdir) / f"index-{crop}-{dims}.npy")
        base = Job(
            "book", crop, dims, scale.train, scale.test, threads, index_file, workdir
        )
        names = ["book", *(i for i in implementations if i != "book")]
        if (
            dims != DIMS
        ):  # the all-channels rows compare the implementations, not the variants
            names = [n for n in names if not n.startswith("book-")]
        jobs += [replace(base, implementation=name) for name in names]
    return jobs


def run_all(jobs: list[Job], implementations: tuple[str, ...]) -> list[dict[str, Any]]:
    """Run the jobs in order; rows get their settings and maps' agreement with the book's."""
    rows = []
    for job in jobs:
        print(f"running {job.key} ...", file=sys.stderr, flush=True)
        row = {
            "implementation": job.implementation,
            "crop": job.crop,
            "resize": job.resize,
            "dims": job.dims,
            **run_job(job),
        }
        book, mine = (
            Path(job.workdir) / f"{key}.npy"
            for key in (f"book-{job.crop}-{job.dims}", job.key)
        )
        if row["status"] == "ok" and job.implementation != "book":
            row.update(map_agreement(np.load(book), np.load(mine)))
        print(json.dumps(row), file=sys.stderr, flush=True)
        if (
            job.implementation in implementations
        ):  # the book always runs: it draws the channels
            rows.append(row)
    return rows


def ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per setting: the book's speed-ups and memory ratios, PaDiM's share, the variants'."""
    out = []
    for crop, dims in sorted({(r["crop"], r["dims"]) for r in rows}):
        at = {
            r["implementation"]: r
            for r in rows
            if (r["crop"], r["dims"]) == (crop, dims) and r["status"] == "ok"
        }
        book = at.get("book")
        if book is None:
            continue
        entry = {
            "crop": crop,
            "dims": dims,
            "book_padim_share_of_total": book["padim_s"] / book["total_s"],
        }
        for other in ("anomalib", "reference"):
            if other in at:
                entry[f"book_speedup_vs_{other}"] = (
                    at[other]["total_s"] / book["total_s"]
                )
                entry[f"book_padim_speedup_vs_{other}"] = (
                    at[other]["padim_s"] / book["padim_s"]
                )
                entry[f"peak_rss_ratio_{other}_over_book"] = (
                    at[other]["peak_rss_above_baseline_mib"]
                    / book["peak_rss_above_baseline_mib"]
                )
        for variant in ("book-bf16", "book-compile"):
            if variant in at:
                name = variant.removeprefix("book-")
                entry[f"{name}_speedup"] = book["total_s"] / at[variant]["total_s"]
                entry[f"{name}_image_auc_change"] = (
                    at[variant]["image_auc"] - book["image_auc"]
                )
                entry[f"{name}_pixel_auc_change"] = (
                    at[variant]["pixel_auc"] - book["pixel_auc"]
                )
        out.append(entry)
    return out


def environment(threads: int) -> dict[str, Any]:
    """The machine and software the rows were measured on."""

    def version(package: str) -> str | None:
        try:
            return importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            return None

    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True
    )
    return {
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "threads": threads,
        "load_average_at_start": (
            list(os.getloadavg()) if hasattr(os, "getloadavg") else None
        ),
        "python": platform.python_version(),
        "platform": platform.platform(),
        **{
            name: version(name)
            for name in ("torch", "numpy", "scipy", "timm", "anomalib")
        },
        "git_commit": commit.stdout.strip() or None,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds"
        ),
    }


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``, else ``platform.processor()``)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


def write_json(record: dict[str, Any], path: Path) -> None:
    """Write ``record`` to ``path`` atomically (a temporary file, then ``os.replace``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        json.dump(record, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)


ADAPTATIONS = {
    "inputs": (
        "every implementation gets the same uint8 images through "
        "helpers.models.padim.prepare_images (resize, centre crop, RGB in [0, 1]) and the same "
        "ground truth through prepare_masks"
    ),
    "anomalib": (
        "PadimModel(backbone=<the book's timm efficientnet_lite0 module, packaged "
        "weights>, layers=['blocks.1', 'blocks.2', 'blocks.4'], pre_trained=False, "
        "n_features=dims): its own TimmFeatureExtractor (torchvision "
        "create_feature_extractor) on our module; its idx buffer set to the book's "
        "channel index; inputs normalised (x - mean) / std with the backbone's mean and "
        "std, as anomalib's pre-processor does; train-mode forward per batch, fit(), "
        "eval-mode forward for the maps; no Lightning"
    ),
    "reference": (
        "xiahaifeng1995/PaDiM-Anomaly-Detection-Localization-master@616004b main.py, "
        "loading adapted: stage outputs from the book's FeaturePyramid instead of ResNet "
        "hooks, the book's channel index instead of random.sample, no pickle, no plots, "
        "no final min-max normalisation (it changes no AUC)"
    ),
    "book-bf16": (
        "the book's Padim with its FeaturePyramid forward under "
        "torch.autocast('cpu', dtype=torch.bfloat16), outputs cast back to float32; "
        "Gaussians in float32"
    ),
    "book-compile": (
        "the book's Padim with torch.compile(FeaturePyramid); the first batch's "
        "compilation is timed apart (warmup_s)"
    ),
    "differences_kept": (
        "covariance regulariser: book and reference 0.01 I, anomalib 0.01 I + 1e-5 I; "
        "smoothing: book and reference scipy gaussian_filter (sigma 4, 'reflect'), "
        "anomalib a 33-tap kernel with torch 'reflect' padding (scipy's 'mirror'); "
        "the book runs the backbone channels_last, anomalib and the reference do not"
    ),
}


def anomalib_installed() -> bool:
    """Whether anomalib (the ``bench`` extra) can be imported."""
    return importlib.util.find_spec("anomalib") is not None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="24 train / 24 test images at crop 64"
    )
    parser.add_argument(
        "--only",
        default=",".join(IMPLEMENTATIONS),
        help=f"comma-separated implementations (of {', '.join(IMPLEMENTATIONS)})",
    )
    parser.add_argument(
        "--threads", type=int, default=2, help="torch and BLAS threads per run"
    )
    parser.add_argument(
        "--out", type=Path, help="the JSON file (default: results/benchmarks/…)"
    )
    args = parser.parse_args(argv)
    implementations = tuple(args.only.split(","))
    unknown = sorted(set(implementations) - set(IMPLEMENTATIONS))
    if unknown:
        parser.error(
            f"unknown implementations {unknown}; choose from {', '.join(IMPLEMENTATIONS)}"
        )
    if "anomalib" in implementations and not anomalib_installed():
        print(
            f"error: anomalib is not installed; install the benchmark extra: {INSTALL_HINT} "
            "(or leave it out: --only book,reference)",
            file=sys.stderr,
        )
        return 2
    scale = QUICK if args.quick else FULL
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="padim-bench-") as workdir:
        rows = run_all(
            plan(scale, implementations, args.threads, workdir), implementations
        )
    record = {
        "benchmark": "padim_compare",
        "quick": args.quick,
        "environment": environment(args.threads),
        "settings": {
            "category": CATEGORY,
            "backbone": f"{BACKBONE} (packaged ImageNet weights)",
            "strides": list(STRIDES),
            "seed": SEED,
            "batch_size": BATCH_SIZE,
            "precision": "float32 (book-bf16: bfloat16 backbone forward)",
            "train_images": scale.train or "all",
            "test_images": scale.test or "all",
        },
        "adaptations": ADAPTATIONS,
        "rows": rows,
        "ratios": ratios(rows),
        "wall_s": time.perf_counter() - began,
    }
    out = args.out or (QUICK_OUT if args.quick else OUT)
    write_json(record, out)
    failed = [
        f"{r['implementation']}-{r['crop']}-{r['dims']}"
        for r in rows
        if r["status"] == "failed"
    ]
    print(
        f"wrote {out}" + (f"; failed: {', '.join(failed)}" if failed else ""),
        file=sys.stderr,
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
