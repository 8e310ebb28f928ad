"""Cold start in the stream: where a score came from, how its threshold was set, a bank's reference frames,
and the classes registered for cold start.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("inspections") as batch:
        # "bank" | "zero-shot" | "cold-start"; NULL for rows written before this revision
        batch.add_column(sa.Column("score_source", sa.String(16), nullable=True))
        batch.add_column(sa.Column("threshold_method", sa.String(64), nullable=True))
    with op.batch_alter_table("banks") as batch:
        batch.add_column(sa.Column("reference_frames", sa.JSON(), nullable=True))  # frame ids the shots came from
    op.create_table(
        "cold_starts",
        sa.Column("product_class", sa.String(64), primary_key=True),
        sa.Column("frames", sa.Integer(), nullable=False),
        sa.Column("shots", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("registered_by", sa.String(16), nullable=False),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("promoted_version", sa.Integer(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.CheckConstraint("state IN ('scoring', 'promoted', 'cancelled')", name="ck_cold_starts_state"),
    )


def downgrade() -> None:
    op.drop_table("cold_starts")
    with op.batch_alter_table("banks") as batch:
        batch.drop_column("reference_frames")
    with op.batch_alter_table("inspections") as batch:
        batch.drop_column("threshold_method")
        batch.drop_column("score_source")
