"""``linesight bench``: measure bare-model versus pipeline throughput, latency and peak memory."""

from __future__ import annotations

import argparse

from linesight.commands._common import positive_int


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="benchmark: bare model frames/s at batch 1/8/16/32 versus the full pipeline, latency, memory",
        description=(
            "Runs on embedded defaults in a temporary folder: the encoder on torch and on each engine backend "
            "(each in its own process), the bare encoder + bank + map, the pipeline through Kafka, Ray and SQL, "
            "latency at 70 percent of its rate, peak memory, and the CPU features detected. Prints each figure "
            "as it is measured and, as the last line, one JSON object. Targets: the pipeline keeps >= 90 percent "
            "of the engine's bare throughput (pipeline_to_engine_ratio); p99 latency < 1 s at 70 percent load."
        ),
    )
    parser.add_argument("--frames", type=positive_int, default=960, help="frames through the pipeline (default 960)")
    parser.add_argument("--batch-size", type=positive_int, default=16, help="pipeline max_batch_size (default 16)")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from linesight.bench import print_result, run_bench

    if args.batch_size not in (1, 8, 16, 32):
        from linesight.errors import ConfigError

        raise ConfigError(f"--batch-size must be one of 1, 8, 16, 32 (the measured sizes), got {args.batch_size}")
    print_result(run_bench(frames=args.frames, batch_size=args.batch_size))
    return 0
