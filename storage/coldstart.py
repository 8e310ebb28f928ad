"""Cold-start registry queries (mixed into :class:`storage.repository.Repository`).

A class registered for cold start is scored by the stream from its first frames, by mutual scoring
(``score_source = 'cold-start'``), until the frames are promoted to its first bank. One row per
class: ``scoring`` until promoted (``promoted``, with the version), or ``cancelled`` by an operator.

>>> from storage.db import Database
>>> from storage.repository import Repository
>>> repo = Repository(Database("sqlite://")); _ = repo.database.migrate()
>>> repo.register_cold_start("washer", frames=64, shots=4, registered_by="cli").state
'scoring'
>>> [c.product_class for c in repo.cold_starts(state="scoring")]
['washer']
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import sqlalchemy as sa

from model.names import check_class_name
from storage.exceptions import InvalidRecordError, NotFoundError
from storage.models import COLD_START_STATES, ColdStart, Inspection

if TYPE_CHECKING:
    from storage.db import Database

__all__ = ["ColdStartQueries", "ColdStartRow"]

_COLD = ColdStart.__table__
_INSPECTIONS = Inspection.__table__
_REGISTERED_BY = ("setting", "cli", "api")


@dataclass(frozen=True, slots=True)
class ColdStartRow:
    """A class registered for cold start (the ``cold_starts`` table)."""

    product_class: str
    frames: int
    shots: int
    state: str
    registered_by: str
    registered_at: datetime
    updated_at: datetime
    promoted_version: int | None = None
    detail: str | None = None


class ColdStartQueries:
    """Register, list and settle cold-start classes; count the frames the stream scored for one."""

    database: Database

    def register_cold_start(
        self, product_class: str, *, frames: int, shots: int, registered_by: str = "cli", restart: bool = False
    ) -> ColdStartRow:
        """Register ``product_class`` for cold start (idempotent: an existing row is returned as it is,
        unless ``restart``, which puts a promoted or cancelled class back to ``scoring``)."""
        check_class_name(product_class)
        if frames < 4 or shots < 1 or frames < 2 * shots:
            raise InvalidRecordError(
                f"cold start of {product_class!r} needs frames >= max(4, 2 * shots), got frames={frames}, shots={shots}"
            )
        if registered_by not in _REGISTERED_BY:
            raise InvalidRecordError(f"registered_by must be one of {_REGISTERED_BY}, got {registered_by!r}")
        now = datetime.now(UTC)
        with self.database.transaction(write=True) as connection:
            row = connection.execute(sa.select(_COLD).where(_COLD.c.product_class == product_class)).mappings().first()
            if row is None:
                connection.execute(_COLD.insert().values(
                    product_class=product_class, frames=int(frames), shots=int(shots), state="scoring",
                    registered_by=registered_by, registered_at=now, updated_at=now,
                ))
            elif restart:
                connection.execute(sa.update(_COLD).where(_COLD.c.product_class == product_class).values(
                    frames=int(frames), shots=int(shots), state="scoring", registered_by=registered_by,
                    updated_at=now, promoted_version=None, detail=None,
                ))
            return self._cold(connection, product_class)

    def cold_starts(self, state: str | None = None) -> list[ColdStartRow]:
        """Registered classes (in ``state`` if given), by class name."""
        query = sa.select(_COLD).order_by(_COLD.c.product_class)
        if state is not None:
            if state not in COLD_START_STATES:
                raise InvalidRecordError(f"cold-start state must be one of {COLD_START_STATES}, got {state!r}")
            query = query.where(_COLD.c.state == state)
        with self.database.transaction() as connection:
            return [ColdStartRow(**row) for row in connection.execute(query).mappings()]

    def get_cold_start(self, product_class: str) -> ColdStartRow:
        """The row of one class; :class:`NotFoundError` naming it if it was never registered."""
        with self.database.transaction() as connection:
            return self._cold(connection, product_class)

    def settle_cold_start(
        self, product_class: str, state: str, *, promoted_version: int | None = None, detail: str | None = None
    ) -> ColdStartRow:
        """Set the state (``promoted`` with its version, ``cancelled``, or ``scoring`` with a problem in ``detail``)."""
        if state not in COLD_START_STATES:
            raise InvalidRecordError(f"cold-start state must be one of {COLD_START_STATES}, got {state!r}")
        with self.database.transaction(write=True) as connection:
            self._cold(connection, product_class)
            connection.execute(sa.update(_COLD).where(_COLD.c.product_class == product_class).values(
                state=state, promoted_version=promoted_version, detail=None if detail is None else detail[:2000],
                updated_at=datetime.now(UTC),
            ))
            return self._cold(connection, product_class)

    def count_scored(self, product_class: str, score_source: str) -> int:
        """How many stored inspections of the class were scored by ``score_source`` ("cold-start", ...)."""
        c = _INSPECTIONS.c
        query = sa.select(sa.func.count()).select_from(_INSPECTIONS).where(
            c.product_class == product_class, c.score_source == score_source
        )
        with self.database.transaction() as connection:
            return int(connection.execute(query).scalar_one())

    @staticmethod
    def _cold(connection: sa.Connection, product_class: str) -> ColdStartRow:
        row = connection.execute(sa.select(_COLD).where(_COLD.c.product_class == product_class)).mappings().first()
        if row is None:
            raise NotFoundError(f"class {product_class!r} is not registered for cold start")
        return ColdStartRow(**row)
