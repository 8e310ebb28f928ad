"""``linesight purge --older-than 30d``: delete old inspections (dry run unless --delete)."""

from __future__ import annotations

import argparse

from linesight.commands._common import duration_s


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "purge",
        help="delete inspections older than a duration (dry run by default; --delete to delete)",
        description=(
            "Lists, per line and class, the inspections captured longer ago than --older-than (default "
            "LINESIGHT_RETENTION_DAYS) and what they hold; with --delete, deletes them with their anomaly maps, "
            "masks, frame images and chat turns. Banks are never purged. Without --delete nothing changes "
            "(a dry run). Prometheus counters are not lowered by a purge."
        ),
        epilog="examples:\n  linesight purge --older-than 30d\n  linesight purge --older-than 30d --delete --vacuum",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--older-than", type=duration_s, default=None, metavar="DURATION",
                        help="e.g. 30d, 12h, 2w (default: LINESIGHT_RETENTION_DAYS days)")
    parser.add_argument("--delete", action="store_true", help="really delete (default: dry run, prints what would go)")
    parser.add_argument("--vacuum", action="store_true", help="after --delete, shrink the SQLite file (VACUUM)")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime, timedelta

    from linesight.data_folder import open_database
    from linesight.errors import ConfigError
    from linesight.settings import load_settings
    from storage.retention import plan_purge, purge, vacuum

    settings = load_settings()
    if args.older_than is None:
        if settings.retention_days is None:
            raise ConfigError("purge needs --older-than (e.g. 30d) or LINESIGHT_RETENTION_DAYS")
        older_than_s = settings.retention_days * 86400.0
    else:
        older_than_s = args.older_than
    if args.vacuum and not args.delete:
        raise ConfigError("--vacuum only follows --delete")
    before = datetime.now(UTC) - timedelta(seconds=older_than_s)
    database = open_database(settings, write=False)  # never creates one: nothing to purge in a new database
    try:
        plan = plan_purge(database, before)
        print(f"inspections captured before {before.isoformat(timespec='seconds')} in {database.url}:")
        if not plan.groups:
            print("none: nothing to purge")
            return 0
        print(f"{'line':<16} {'class':<16} {'inspections':>11}  {'oldest (UTC)':<19}  newest (UTC)")
        for g in plan.groups:
            print(f"{g.line_id[:16]:<16} {g.product_class[:16]:<16} {g.inspections:>11}  "
                  f"{g.oldest.isoformat()[:19]:<19}  {g.newest.isoformat()[:19]}")
        summary = (f"{plan.inspections} inspection(s), {plan.chat_turns} chat turn(s), "
                   f"{plan.blob_bytes / 1e6:.1f} MB of maps, masks and frames")
        if not args.delete:
            print(f"dry run: would delete {summary}; nothing deleted (add --delete)")
            return 0
        deleted = purge(database, before)
        print(f"deleted {deleted} inspection(s) with their maps, masks, frames and chat turns ({summary})")
        if args.vacuum:
            print("SQLite file shrunk (VACUUM)" if vacuum(database) else "not SQLite: no VACUUM (autovacuum reuses space)")
    finally:
        database.dispose()
    return 0
