"""``linesight history``: past inspections from SQL, newest first, with filters."""

from __future__ import annotations

import argparse
import json

from linesight.commands._common import class_name, positive_int, time_or_ago


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "history",
        help="list stored inspections (filters: line, camera, class, anomalous only, time range)",
        description=(
            "Newest first, from the database of the data folder (LINESIGHT_DATA_DIR; never created or migrated "
            "here). --since/--until take an ISO 8601 time (UTC when it has no zone) or a time ago: 90s, 30m, 2h, 7d."
        ),
        epilog="example: linesight history --line line-1 --anomalous --since 2h --until 30m",
    )
    parser.add_argument("--line", default=None, help="only this line id")
    parser.add_argument("--camera", default=None, help="only this camera id")
    parser.add_argument("--class", dest="product_class", type=class_name, default=None, help="only this product class")
    flag = parser.add_mutually_exclusive_group()
    flag.add_argument("--anomalous", action="store_true", help="only flagged inspections")
    flag.add_argument("--normal", action="store_true", help="only inspections that were not flagged")
    parser.add_argument("--since", type=time_or_ago, default=None, help="captured at or after this time (ISO or e.g. 2h ago)")
    parser.add_argument("--until", type=time_or_ago, default=None, help="captured before this time (ISO or e.g. 30m ago)")
    parser.add_argument("--limit", type=positive_int, default=20, help="at most this many rows (default 20)")
    parser.add_argument("--before-id", type=positive_int, default=None, help="page: rows older than this id")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from linesight.data_folder import open_repository
    from linesight.settings import load_settings

    rows = open_repository(load_settings()).history(
        line_id=args.line,
        camera_id=args.camera,
        product_class=args.product_class,
        anomalous=True if args.anomalous else (False if args.normal else None),
        since=args.since,
        until=args.until,
        limit=args.limit,
        before_id=args.before_id,
    )
    if args.json:
        for row in rows:
            print(json.dumps({
                "id": row.id, "frame_id": row.frame_id, "line_id": row.line_id, "camera_id": row.camera_id,
                "product_class": row.product_class, "captured_at": row.captured_at.isoformat(), "score": row.score,
                "threshold": row.threshold, "is_anomalous": row.is_anomalous, "positions": list(row.positions),
                "region_count": row.region_count, "verdict": row.verdict, "verdict_source": row.verdict_source,
                "bank_version": row.bank_version, "latency_ms": row.latency_ms,
            }))
        return 0
    if not rows:
        print("no inspections match")
        return 0
    print(f"{'id':>7} {'captured (UTC)':<19} {'line':<10} {'class':<10} {'score':>7} {'flag':>4} {'bank':>4}  verdict")
    for row in rows:
        print(f"{row.id:>7} {row.captured_at.isoformat()[:19]:<19} {row.line_id[:10]:<10} {row.product_class[:10]:<10} "
              f"{row.score:>7.4f} {'YES' if row.is_anomalous else '':>4} {row.bank_version:>4}  {row.verdict}")
    return 0
