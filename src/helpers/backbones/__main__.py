"""``python -m helpers.backbones pretrain NAME --profile cpu``: build a stand-in backbone once.

On an intact cached stand-in this is a no-op that reports the cached record. Either way the
training record is written to ``results/backbones/`` (commit it; ``make scoreboard`` turns the
records into the book's page "Backbones used in this book").
"""

from __future__ import annotations

import argparse

from helpers import profiles
from helpers.backbones import NAMES, STANDIN_ARCH, pretrain


def main(argv: list[str] | None = None) -> list[str]:
    """Run the command line; return the lines it printed."""
    parser = argparse.ArgumentParser(prog="python -m helpers.backbones", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("pretrain", help="train (or find cached) the stand-in of a backbone")
    build.add_argument("name", choices=[*NAMES, "all"])
    build.add_argument("--profile", default="cpu", choices=profiles.names())
    build.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    profiles.setup(args.profile, args.seed)
    lines = []
    names = NAMES if args.name == "all" else (args.name,)
    for name in names:
        record, was_cached = pretrain(name, args.profile, args.seed)
        training = record.training
        how = "found in the cache (nothing trained)" if was_cached else f"trained in {training['wall_s'] / 60:.1f} min"
        lines += [
            f"{name} -> {STANDIN_ARCH[name]} stand-in ({args.profile} profile): {how}",
            f"  {record.label}",
            f"  linear probe on imagenette val: stand-in {training['probe_standin']:.3f}, "
            f"frozen random network {training['probe_random']:.3f}",
            f"  record: {training['record_file']}",
        ]
    print("\n".join(lines))
    return lines


if __name__ == "__main__":
    main()
