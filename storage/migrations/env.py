"""Alembic environment: runs on the connection :meth:`storage.db.Database.migrate` hands over.

No ``alembic.ini`` is needed: ``storage.db.alembic_config`` builds the config in code with
``script_location`` pointing here. SQLite uses batch mode (``render_as_batch``) so later
revisions can alter tables. When run by the ``alembic`` CLI instead, ``sqlalchemy.url`` is used.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from storage.models import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Migrate on the given connection, or on a fresh engine from ``sqlalchemy.url``."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = sa.create_engine(config.get_main_option("sqlalchemy.url"), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as fresh:
            _run(fresh)
    finally:
        engine.dispose()


def run_migrations_offline() -> None:
    """Emit SQL text instead of running it (``alembic upgrade --sql``)."""
    context.configure(
        url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata, literal_binds=True
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
