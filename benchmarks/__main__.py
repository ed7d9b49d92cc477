"""Benchmarks: zstore against the paths users take today, and this machine's ceilings.

Every step runs in a fresh subprocess, timed, with its peak RSS. Ratios in the table
are relative to zstore's row for the same work, so a noisy machine still compares
fairly. Usage: scripts/bench --size small|medium|large [--out BENCHMARKS.md].
"""

from __future__ import annotations

import argparse
from pathlib import Path

from . import run


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--size", choices=sorted(run.SIZES), default="small")
    parser.add_argument("--out", default=None, help="write the report (Markdown) here")
    parser.add_argument("--dir", default="bench-data", help="scratch folder (default bench-data)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch data")
    parser.add_argument(
        "--compare", action="store_true", help="compare codecs and chunk shapes instead"
    )
    parser.add_argument(
        "--skip", default="", help="comma-separated steps to leave out (e.g. anndata_lazy)"
    )
    parser.add_argument(
        "--s3-against",
        default=None,
        metavar="SRC",
        help="compare one trial on a local S3 server (moto) with another zstore checkout",
    )
    parser.add_argument(
        "--against",
        default=None,
        metavar="SRC",
        help="a checkout of another zstore (e.g. a git worktree of 0.1): run zstore's steps "
        "with both, on the same data, and compare them",
    )
    parser.add_argument(
        "--pipelines",
        action="store_true",
        help="run zstore's steps with zarr-python's codec pipeline and with zstore's own "
        "(1 and 2 workers), on the same data, against the ceilings",
    )
    parser.add_argument(
        "--s3-pipelines",
        action="store_true",
        help="on a local S3 server (moto), one trial with zarr-python's codec pipeline and "
        "with zstore's: time and requests",
    )
    parser.add_argument(
        "--collection",
        action="store_true",
        help="collections of 20 and 200 experiments x 5 trials on a local S3 server and on "
        "local disk: requests, time and memory of open + table() and of one trial",
    )
    parser.add_argument(
        "--chunk-shapes",
        action="store_true",
        help="inner chunk shapes on the storage engine, through zstore's API (one trial of "
        "4096 x 100000): write, whole read, one trace, one window",
    )
    parser.add_argument(
        "--events",
        action="store_true",
        help="event-aligned windows (1000 events x 4096 ROIs x 3 s) from a stored trial, "
        "against numpy on the trial held in memory",
    )
    parser.add_argument(
        "--nwb",
        action="store_true",
        help="NWB export (zs.export_nwb) of one stored trial of 4096 x 100000 float32 "
        "(1.64 GB) with gzip, lzf and no compression: time and peak RSS",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    run.main(
        size=args.size,
        out=Path(args.out) if args.out else None,
        scratch=Path(args.dir),
        keep=args.keep,
        compare=args.compare,
        skip=set(args.skip.split(",")),
        s3_against=args.s3_against,
        against=args.against,
        pipelines=args.pipelines,
        s3_pipelines=args.s3_pipelines,
        collection=args.collection,
        chunk_shapes=args.chunk_shapes,
        events=args.events,
        nwb=args.nwb,
    )


if __name__ == "__main__":
    main()
