"""Memory-bank registry queries (mixed into :class:`storage.repository.Repository`).

A bank version is immutable; activating one is the hot swap. At most one version per class is
active: :meth:`BankQueries.activate_bank` deactivates the others in the same transaction, and a
partial unique index enforces it in the database too.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from model.names import check_class_name
from storage.exceptions import InvalidRecordError, NotFoundError, StorageError
from storage.models import Bank
from storage.rows import BankRow

if TYPE_CHECKING:
    from storage.db import Database

__all__ = ["BankQueries", "bank_file_path"]

_BANKS = Bank.__table__


def bank_file_path(banks_dir: str | Path, product_class: str, version: int) -> Path:
    """``<banks_dir>/<class>/v<version>.safetensors``, resolved; never outside ``banks_dir``.

    The class name must follow :mod:`model.names` (``ClassNameError`` naming it); a resolved path
    that still lands outside the folder (e.g. through a symlinked class folder) is an
    :class:`InvalidRecordError` naming both paths.

    >>> bank_file_path("/data/banks", "washer", 3).as_posix()
    '/data/banks/washer/v3.safetensors'
    """
    check_class_name(product_class)
    if int(version) < 1:
        raise InvalidRecordError(f"bank {product_class!r}: version must be >= 1, got {version}")
    root = Path(banks_dir).resolve()
    path = (root / product_class / f"v{int(version)}.safetensors").resolve()
    if not path.is_relative_to(root) or path.parent == root:
        raise InvalidRecordError(f"bank file {str(path)!r} of class {product_class!r} is outside {str(root)!r}")
    return path


class BankQueries:
    """Bank registry methods; needs ``self.database``."""

    database: Database

    def next_bank_version(self, product_class: str) -> int:
        """The version number a new bank of this class gets (1 for a new class)."""
        query = sa.select(sa.func.max(_BANKS.c.version)).where(_BANKS.c.product_class == product_class)
        with self.database.transaction() as connection:
            latest = connection.execute(query).scalar_one()
        return 1 if latest is None else int(latest) + 1

    def register_bank(
        self,
        product_class: str,
        version: int,
        path: str,
        sha256: str,
        shots: int,
        encoder: str,
        calibration: dict[str, Any],
        activate: bool = False,
        reference_frames: Sequence[str] | None = None,
    ) -> BankRow:
        """Record a saved bank file as ``class@vN`` (and make it the active one if ``activate``).

        ``reference_frames``: the frame ids (or file names) the shots came from, when known.

        A class/version registered before raises :class:`StorageError` naming both.
        """
        check_class_name(product_class)
        if version < 1 or shots < 1:
            raise InvalidRecordError(
                f"bank {product_class!r}: version and shots must be >= 1, got {version}, {shots}"
            )
        values = {
            "product_class": product_class,
            "version": int(version),
            "path": str(path),
            "sha256": sha256,
            "shots": int(shots),
            "encoder": encoder,
            "calibration": dict(calibration),
            "created_at": datetime.now(UTC),
            "active": False,
            "reference_frames": None if reference_frames is None else [str(r) for r in reference_frames],
        }
        with self.database.transaction(write=True) as connection:
            try:
                connection.execute(_BANKS.insert().values(values))
            except sa.exc.IntegrityError:
                raise StorageError(
                    f"bank class {product_class!r} version {version} is already registered "
                    f"(next free version: ask next_bank_version({product_class!r}))"
                ) from None
            if activate:
                self._activate(connection, product_class, version)
            return self._get(connection, product_class, version)

    def activate_bank(self, product_class: str, version: int) -> BankRow:
        """Make ``version`` the only active bank of the class (atomically); returns its row."""
        with self.database.transaction(write=True) as connection:
            self._get(connection, product_class, version, lock=True)
            self._activate(connection, product_class, version)
            return self._get(connection, product_class, version)

    def active_banks(self) -> dict[str, BankRow]:
        """The active bank of every class that has one."""
        query = sa.select(_BANKS).where(_BANKS.c.active.is_(True)).order_by(_BANKS.c.product_class)
        with self.database.transaction() as connection:
            return {
                row.product_class: row
                for row in map(BankRow.from_mapping, connection.execute(query).mappings())
            }

    def list_banks(self, product_class: str | None = None) -> list[BankRow]:
        """All registered versions (of one class if given), by class then version."""
        query = sa.select(_BANKS).order_by(_BANKS.c.product_class, _BANKS.c.version)
        if product_class is not None:
            query = query.where(_BANKS.c.product_class == product_class)
        with self.database.transaction() as connection:
            return [BankRow.from_mapping(row) for row in connection.execute(query).mappings()]

    def get_bank(self, product_class: str, version: int) -> BankRow:
        """The row of ``class@vN``; :class:`NotFoundError` naming both (and the known versions) if absent."""
        with self.database.transaction() as connection:
            return self._get(connection, product_class, version)

    # --- internals ---------------------------------------------------------------------------
    def _get(
        self, connection: sa.Connection, product_class: str, version: int, lock: bool = False
    ) -> BankRow:
        query = sa.select(_BANKS).where(_BANKS.c.product_class == product_class, _BANKS.c.version == version)
        if lock:
            query = query.with_for_update()
        row = connection.execute(query).mappings().first()
        if row is None:
            known = (
                connection.execute(
                    sa.select(_BANKS.c.version)
                    .where(_BANKS.c.product_class == product_class)
                    .order_by(_BANKS.c.version)
                )
                .scalars()
                .all()
            )
            raise NotFoundError(
                f"no bank for class {product_class!r} version {version} "
                f"(registered versions of {product_class!r}: {list(known) or 'none'})"
            )
        return BankRow.from_mapping(row)

    @staticmethod
    def _activate(connection: sa.Connection, product_class: str, version: int) -> None:
        c = _BANKS.c
        # Deactivate first: the partial unique index allows one active row per class at any moment.
        connection.execute(
            sa.update(_BANKS)
            .where(c.product_class == product_class, c.version != version)
            .values(active=False)
        )
        connection.execute(
            sa.update(_BANKS)
            .where(c.product_class == product_class, c.version == version)
            .values(active=True)
        )
