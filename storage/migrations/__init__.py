"""Alembic environment of the linesight schema, run programmatically by :meth:`storage.db.Database.migrate`."""
