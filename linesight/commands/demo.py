"""``linesight demo``: the whole product on embedded defaults (what `make demo` runs)."""

from __future__ import annotations

import argparse
from pathlib import Path

from linesight.commands._common import positive_float, positive_int


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the end-to-end demo: embedded broker, SQLite, local Ray, synthetic lines with ground truth",
        description=(
            "Builds calibrated banks for the synthetic product classes, streams frames from several lines "
            "through Kafka -> Ray -> SQL -> alerts, hot-swaps a bank mid-stream, sends corrupt frames (they must "
            "reach the dead-letter topic), writes overlays of flagged frames, prints a summary table and, as the "
            "last line, one JSON object with the figures."
        ),
    )
    parser.add_argument(
        "--out", type=Path, default=None,
        help="output folder (default: the data folder, LINESIGHT_DATA_DIR, so other commands read the demo's "
             "database); a folder the demo did not create is refused, one it did is reset",
    )
    parser.add_argument("--lines", type=positive_int, default=2, help="production lines (default 2)")
    parser.add_argument("--frames-per-line", type=positive_int, default=320, help="frames per line (default 320)")
    parser.add_argument("--fps", type=positive_float, default=12.0, help="camera rate per line (default 12)")
    parser.add_argument("--shots", type=positive_int, default=4, help="normal images per class bank (default 4)")
    parser.add_argument("--seed", type=int, default=7, help="random seed of the synthetic lines")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    import sys

    from linesight.demo import DemoConfig, print_summary, run_demo
    from linesight.settings import load_settings

    settings = load_settings()
    out = args.out if args.out is not None else settings.data_dir
    summary = run_demo(
        DemoConfig(
            out_dir=out,
            lines=args.lines,
            frames_per_line=args.frames_per_line,
            fps_per_line=args.fps,
            shots=args.shots,
            seed=args.seed,
        )
    )
    if not _same_file(summary["database"], settings.database_url):
        print(f"linesight: note: other commands read this demo with LINESIGHT_DATA_DIR={out} "
              "(and LINESIGHT_DATABASE_URL unset)", file=sys.stderr)
    print_summary(summary)
    ok = summary["lost"] == 0 and summary["duplicates"] == 0 and summary["dead_lettered"] >= 5
    return 0 if ok else 1


def _same_file(demo_url: str, configured_url: str) -> bool:
    """Whether the configured database (what other commands read) is the demo's SQLite file."""
    from storage.db import sqlite_file

    demo, configured = sqlite_file(demo_url), sqlite_file(configured_url)
    return demo is not None and configured is not None and demo.resolve() == configured.resolve()
