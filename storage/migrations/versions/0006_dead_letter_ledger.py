"""The dead-letter ledger: source records already written to the dead-letter topic (no duplicates on replay).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "dead_letters",
        sa.Column("id", _BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("source_topic", sa.String(255), nullable=False),
        sa.Column("source_partition", sa.Integer(), nullable=False),
        sa.Column("source_offset", sa.BigInteger(), nullable=False),
        sa.Column("record_sha256", sa.String(64), nullable=False),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("dead_lettered_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint(
            "source_topic", "source_partition", "source_offset", "record_sha256", name="uq_dead_letters_source"
        ),
    )
    op.create_index("ix_dead_letters_dead_lettered_at", "dead_letters", ["dead_lettered_at"])


def downgrade() -> None:
    op.drop_index("ix_dead_letters_dead_lettered_at", table_name="dead_letters")
    op.drop_table("dead_letters")
