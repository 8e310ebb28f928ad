"""SQL storage of linesight: SQLAlchemy models, packaged Alembic migrations and the repository.

- ``storage.db.Database(url)``: engine, ``transaction()``/``session()``, ``migrate()`` (Alembic, in code).
- ``storage.records``: ``InspectionRecord`` (what the stream writes) and the map/mask PNG codecs.
- ``storage.repository.Repository(database)``: idempotent upsert, alerts bookkeeping, history,
  stats, bank registry, chat turns; returns frozen rows from ``storage.rows``.

Submodules are imported on use (``import storage`` stays cheap).
"""
