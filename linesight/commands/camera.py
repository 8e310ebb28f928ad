"""``linesight camera``: publish frames to the frames topic like N cameras on N production lines."""

from __future__ import annotations

import argparse
import logging
import sys
import time

from linesight.commands._common import class_name, fraction, number_type, positive_int

log = logging.getLogger("linesight.camera")


_rate = number_type(float, lambda v: v >= 0, "frames per second >= 0 (0 = as fast as possible)", "_rate")


def _line_ids(text: str) -> list[str]:
    """argparse type: one or more comma-separated line ids (1-60 letters, digits, '.', '_', ':' or '-')."""
    import re

    names = [n.strip() for n in text.split(",") if n.strip()]
    bad = [n for n in names if not re.fullmatch(r"[A-Za-z0-9._:-]{1,60}", n)]
    if not names or bad:
        raise argparse.ArgumentTypeError(
            f"line id {bad[0] if bad else text!r} must be 1-60 letters, digits, '.', '_', ':' or '-'"
        )
    return names


def line_names(line_ids: list[list[str]] | None, lines: int | None) -> list[tuple[str, str]]:
    """(line id, camera id) per line: the --line-id names, else ``line-1``...; ConfigError if they disagree.

    >>> line_names([["press-a", "press-b"]], None)
    [('press-a', 'cam-press-a'), ('press-b', 'cam-press-b')]
    >>> line_names(None, 2)
    [('line-1', 'cam-1'), ('line-2', 'cam-2')]
    """
    from linesight.errors import ConfigError

    if not line_ids:
        return [(f"line-{i + 1}", f"cam-{i + 1}") for i in range(lines or 1)]
    names = [name for group in line_ids for name in group]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"--line-id {duplicates[0]!r} is given twice")
    if lines is not None and lines != len(names):
        raise ConfigError(f"--lines {lines} disagrees with the {len(names)} --line-id name(s) {names}")
    return [(name, f"cam-{name}") for name in names]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "camera",
        help="publish camera frames (synthetic line, image folder or video) to the frames topic",
        description=(
            "Act as one camera per production line and publish frames to LINESIGHT_FRAMES_TOPIC "
            "(key = line id, value = JPEG/PNG, identity in headers), paced at --fps per line. "
            "Without LINESIGHT_KAFKA_BOOTSTRAP_SERVERS it publishes to the embedded broker of LINESIGHT_DATA_DIR, "
            "the one `run` and `serve` use (see `linesight broker`); if none runs it starts one that stops when the "
            "command ends, losing its frames: start it first with `linesight broker start`."
        ),
        epilog=(
            "examples:\n"
            "  linesight camera --source synthetic --lines 2 --fps 20 --count 200 --defect-rate 0.1\n"
            "  linesight camera --line-id press-a,press-b --fps 10 --count 100\n"
            "  linesight camera --source folder --path shots/ --class brick --fps 5 --count 50\n"
            "  linesight camera --source video --path line1.mp4 --class washer --fps 0 --count 1000"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--source", choices=("synthetic", "folder", "video"), default="synthetic",
        help="where frames come from (default synthetic: the built-in product line with known defects)",
    )
    parser.add_argument("--path", help="image folder (jpg/png/bmp) or video file for --source folder/video")
    parser.add_argument(
        "--class", dest="product_class", type=class_name, metavar="CLASS",
        help="product class of the frames (required for folder/video; restricts the synthetic line to it)",
    )
    parser.add_argument("--fps", type=_rate, default=10.0, help="frames per second per line; 0 = unpaced (default 10)")
    parser.add_argument("--lines", type=positive_int, default=None,
                        help="production lines, one camera each (default 1, or as many as --line-id names)")
    parser.add_argument(
        "--line-id", dest="line_ids", action="append", type=_line_ids, default=None, metavar="NAME[,NAME]",
        help="name the lines (repeatable or a comma list; default line-1, line-2, ...); cameras are cam-<name>",
    )
    parser.add_argument("--count", type=positive_int, default=100, help="frames per line (default 100)")
    parser.add_argument(
        "--defect-rate", type=fraction, default=0.2, help="share of defective synthetic frames (default 0.2)"
    )
    parser.add_argument("--format", dest="fmt", choices=("jpg", "png"), default="jpg", help="encoding (default jpg)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic line (default 0)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(handler=handle)


def _sources(args: argparse.Namespace, image_size_px: int) -> list:
    from connectors.camera import folder_frames, video_frames
    from linesight.errors import ConfigError

    if args.source != "synthetic":
        if not args.path:
            raise ConfigError(f"--source {args.source} needs --path")
        if not args.product_class:
            raise ConfigError(f"--source {args.source} needs --class (the product class of its frames)")
    sources = []
    for index, (line_id, camera_id) in enumerate(line_names(args.line_ids, args.lines)):
        if args.source == "synthetic":
            classes = (args.product_class,) if args.product_class else None
            from training.synthetic import synthetic_frames

            sources.append(synthetic_frames(
                line_id, camera_id, product_classes=classes, defect_rate=args.defect_rate,
                image_size_px=image_size_px, seed=args.seed * 1000 + index,
            ))
        elif args.source == "folder":
            sources.append(folder_frames(args.path, line_id, camera_id, args.product_class))
        else:
            sources.append(video_frames(args.path, line_id, camera_id, args.product_class))
    return sources


def handle(args: argparse.Namespace) -> int:
    from connectors.camera import CameraPublisher, interleave
    from connectors.kafka import ensure_topics, make_producer
    from connectors.tansu import broker_for
    from linesight.settings import load_settings

    if not getattr(args, "verbose", False):
        logging.getLogger("kafka").setLevel(logging.WARNING)
    settings = load_settings()
    sources = _sources(args, settings.image_size_px)
    lines = len(sources)
    if not settings.kafka_bootstrap_servers:
        print(f"linesight: note: LINESIGHT_KAFKA_BOOTSTRAP_SERVERS is empty; publishing to the embedded broker of "
              f"{settings.data_dir} (memory only; `linesight broker status` shows it)", file=sys.stderr)
    total = lines * args.count
    with broker_for(settings) as bootstrap:
        ensure_topics(
            bootstrap, {settings.frames_topic: settings.frames_partitions},
            replication_factor=settings.kafka_replication_factor, configs_by_topic=settings.topic_configs,
            security=settings.kafka_security,
        )
        producer = make_producer(bootstrap, max_request_size=settings.max_frame_bytes, client_id="linesight-camera",
                                 security=settings.kafka_security)
        started = time.monotonic()
        try:
            publisher = CameraPublisher(producer, settings.frames_topic, fmt=args.fmt)
            manifest = publisher.publish(
                interleave(sources), fps=args.fps or None, count=total, progress=not args.no_progress
            )
        finally:
            producer.close()
        elapsed_s = max(time.monotonic() - started, 1e-9)
    defective = sum(1 for item in manifest if item.is_defective)
    classes = sorted({item.product_class for item in manifest})
    mean_kb = sum(item.size_bytes for item in manifest) / max(len(manifest), 1) / 1024
    truth = f", {defective} defective" if args.source == "synthetic" else ""
    print(
        f"published {len(manifest)} frames ({lines} line(s), classes {', '.join(classes) or '-'}{truth}, "
        f"{mean_kb:.1f} KB avg) to {settings.frames_topic} on {bootstrap} in {elapsed_s:.1f} s "
        f"({len(manifest) / elapsed_s:.1f} frames/s)"
    )
    return 0 if len(manifest) == total else 1
