"""Byte and bit readers of JPEG files, each trained for the same CPU time (chapter 01's design search).

``python benchmarks/byte_readers.py`` trains, on Fashion-MNIST's 60,000 training files (Pillow JPEG
at quality 75, the chapter's fixed layout, no shifts), each of:

- ``post``: the post's architecture at the chapter's ``cpu`` width (``helpers.models.byte_classifier``);
- ``bit reader``: the chapter's ``BitReader`` (``helpers.models.bit_reader``);
- ``block reader``: the chapter's ``BlockReader`` (``helpers.models.block_reader``) on the same
  images written with a restart marker after every 8x8 block;
- the designs of ``byte_reader_designs.py`` (wider/pooled, running sums, block slots, GRU, Transformer,
  and the pooled design again on restart-marked files),

for ``--budget`` seconds of training on one torch thread (Adam, the chapter's batch size and learning
rate of each family), two designs at a time on a two-core machine (about 9 minutes). Test accuracy on the chapter's
5,000 test files is taken after every epoch and at the end (evaluation time is not counted), and
training accuracy on 5,000 training files at the end. Rows and the machine go to
``results/benchmarks/byte_readers.json`` (written atomically); chapter 01 shows them.
``--quick`` runs the smoke profile's 600 files for a few seconds per design, for tests.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "results" / "benchmarks" / "byte_readers.json"
QUICK_OUT = ROOT / "results" / "benchmarks" / "byte_readers.quick.json"
CHAPTER_DESIGNS = {  # benchmark name -> (the chapter's design, what it tries)
    "post": ("post", "the post's architecture: byte embedding, two convolutions, LSTM"),
    "bit reader": ("reader", "the chapter's bit reader: strided convolutions over bits, positional readout"),
    "block reader": ("blocks", "restart markers; the scan cut at them, the same convolutions on every block"),
}
SEED = 0
TRAIN_ACC_FILES = 5000


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def train_design(name: str, profile: str, budget_s: float) -> dict[str, Any]:
    """Train design ``name`` for ``budget_s`` seconds on one thread; its accuracy curve and final numbers."""
    os.environ["TQDM_DISABLE"] = "1"
    import torch
    from byte_reader_designs import DESIGNS, RESTART_MARKED

    from helpers.models.byte_classifier import Bugs
    from helpers.studies import ch01_jpeg_bytes as study

    torch.set_num_threads(1)
    cfg = study.settings(profile)
    restart = name == "block reader" or name in RESTART_MARKED
    data = study.prepare(study.load_train_test("fashion-mnist", cfg, SEED), Bugs.fixed(), restart=restart)
    torch.manual_seed(SEED)
    if name in CHAPTER_DESIGNS:
        model = study.byte_model(data, cfg, design=CHAPTER_DESIGNS[name][0])
    else:
        model = DESIGNS[name][0](data.header, cfg.reader_bytes)
    batch, lr = (cfg.batch_size, cfg.lr) if name == "post" else (cfg.reader_batch, cfg.reader_lr)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    x, y = data.train.values, data.train_labels
    generator = torch.Generator().manual_seed(SEED)

    def accuracy(values: torch.Tensor, labels: torch.Tensor) -> float:
        return float((study.predict_values(model, values, cfg) == labels.numpy()).mean())

    seconds, test_acc, files = [], [], 0
    trained_s = 0.0
    while trained_s < budget_s:
        model.train()
        order = torch.randperm(len(y), generator=generator)
        for start in range(0, len(order), batch):
            began = time.perf_counter()
            rows = order[start:start + batch]
            loss = torch.nn.functional.cross_entropy(model(x[rows]), y[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            trained_s += time.perf_counter() - began
            files += len(rows)
            if trained_s >= budget_s:
                break
        seconds.append(round(trained_s, 1))
        test_acc.append(accuracy(data.test.values, data.test_labels))
    some = torch.randperm(len(y), generator=torch.Generator().manual_seed(SEED))[:TRAIN_ACC_FILES]
    description = CHAPTER_DESIGNS[name][1] if name in CHAPTER_DESIGNS else DESIGNS[name][1]
    return {"design": name, "description": description, "params": sum(p.numel() for p in model.parameters()),
            "batch": batch, "lr": lr, "files_seen": files, "epochs": round(files / len(y), 2),
            "files_per_s": round(files / trained_s, 1), "seconds": seconds, "test_acc": test_acc,
            "final_test_acc": test_acc[-1], "train_acc": accuracy(x[some], y[some]),
            "train_files": len(y), "test_files": len(data.test_labels), "restart_markers": restart}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=float, default=120.0, help="training seconds per design")
    parser.add_argument("--parallel", type=int, default=2, help="designs trained at once (one thread each)")
    parser.add_argument("--quick", action="store_true", help="600 smoke files, 3 s per design (for tests)")
    parser.add_argument("--designs", nargs="+", help="only these designs (default: all)")
    parser.add_argument("--out", type=Path, help="where the record goes (default: results/benchmarks/)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).parent))
    from byte_reader_designs import DESIGNS

    profile, budget, out = ("smoke", 3.0, QUICK_OUT) if args.quick else ("cpu", args.budget, OUT)
    out = args.out or out
    names = [*CHAPTER_DESIGNS, *DESIGNS]
    unknown = sorted(set(args.designs or ()) - set(names))
    if unknown:
        parser.error(f"unknown designs {unknown}; choose from {names}")
    names = [n for n in names if not args.designs or n in args.designs]
    started = time.monotonic()
    with ProcessPoolExecutor(args.parallel, mp_context=get_context("spawn"), initializer=sys.path.insert,
                             initargs=(0, str(Path(__file__).parent))) as pool:
        rows = list(pool.map(train_design, names, [profile] * len(names), [budget] * len(names)))
    import torch

    record = {
        "env": {"date": datetime.date.today().isoformat(), "cpu": _cpu_name(), "cores": os.cpu_count(),
                "torch": torch.__version__, "threads_per_design": 1, "designs_at_once": args.parallel,
                "budget_s": budget, "profile": profile, "wall_s": round(time.monotonic() - started)},
        "rows": rows,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_suffix(".json.partial")
    partial.write_text(json.dumps(record, indent=1) + "\n")
    partial.replace(out)
    for row in rows:
        print(f"{row['design']:>22}: test {row['final_test_acc']:.3f} after {row['epochs']:.1f} epochs "
              f"({row['files_per_s']:.0f} files/s), train {row['train_acc']:.3f}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
