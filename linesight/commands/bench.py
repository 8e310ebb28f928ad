"""``linesight bench``: measure bare-model versus pipeline throughput, latency and peak memory."""

from __future__ import annotations

import argparse

from linesight.commands._common import positive_int


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="benchmark: engines, bare model (encoder + bank + map) frames/s versus the full pipeline, latency, memory",
        description=(
            "Runs on embedded defaults in a temporary folder: the encoder alone on torch and on each engine backend, "
            "then the bare model (encoder + bank + map) on torch and on the engine auto picks (each in its own "
            "process, alternating), tiled inspection, the pipeline through Kafka, Ray and SQL, latency at 70 "
            "percent of its rate, peak memory, and the CPU features detected. Prints each figure as it is measured "
            "and, as the last line, one JSON object. Targets: the engine's bare model >= 3x torch's best "
            "(engine_to_torch_ratio, on a host with AMX); the pipeline keeps >= 90 percent of the engine's bare "
            "throughput (pipeline_to_engine_ratio); p99 latency < 1 s at 70 percent load."
        ),
    )
    parser.add_argument("--frames", type=positive_int, default=960, help="frames through the pipeline (default 960)")
    parser.add_argument("--batch-size", type=positive_int, default=16, help="pipeline max_batch_size (default 16)")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from linesight.bench import print_result, run_bench

    print_result(run_bench(frames=args.frames, batch_size=args.batch_size))
    return 0
