"""``python -m linesight.storage_cost [URL]``: the storage cost per frame of a database, as one JSON line.

The command-line wrapper of :func:`storage.retention.storage_cost` (here, in the app, because its
default URL comes from the settings; nothing below the app reads the settings).
"""

from __future__ import annotations

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """``python -m linesight.storage_cost [URL]``: print the storage cost per frame of a database (default: the data folder's)."""
    import argparse
    import json

    from linesight.settings import load_settings
    from storage.db import Database, sqlite_file
    from storage.retention import storage_cost

    parser = argparse.ArgumentParser(prog="python -m linesight.storage_cost", description=main.__doc__)
    parser.add_argument("url", nargs="?", default=None, help="SQLAlchemy URL (default: LINESIGHT_DATABASE_URL/DATA_DIR)")
    args = parser.parse_args(argv)
    if args.url is None:
        args.url = load_settings().database_url
    path = sqlite_file(args.url)
    database = Database(args.url)
    try:
        cost = storage_cost(database, path.stat().st_size if path is not None and path.is_file() else None)
    finally:
        database.dispose()
    print(json.dumps({k: round(v, 1) if isinstance(v, float) else v for k, v in cost.__dict__.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
