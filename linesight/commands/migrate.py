"""``linesight migrate``: create the database of the data folder, or upgrade its schema."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "migrate",
        help="create the database (or upgrade its schema) at LINESIGHT_DATABASE_URL / LINESIGHT_DATA_DIR",
        description=(
            "Creates the SQLite file of the data folder (LINESIGHT_DATA_DIR/linesight.db) or the schema in "
            "LINESIGHT_DATABASE_URL and upgrades it to this version's revision. Read-only commands (history, "
            "chat, bank list, purge --dry-run) never do this themselves. `run`, `serve`, `demo` and `bank build` "
            "migrate on start."
        ),
    )
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from linesight.data_folder import open_database
    from linesight.settings import load_settings

    database = open_database(load_settings(), write=True)
    try:
        print(f"database {database.url} at schema revision {database.current_revision()}")
    finally:
        database.dispose()
    return 0
