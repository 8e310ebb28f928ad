"""Operator review: feedback labels (false alarm / confirmed defect) and acknowledgements.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "feedback",
        sa.Column("id", _BIG_ID, primary_key=True, autoincrement=True),
        sa.Column(
            "frame_id",
            sa.String(128),
            sa.ForeignKey("inspections.frame_id", ondelete="CASCADE", name="fk_feedback_frame_id"),
            nullable=False,
        ),
        sa.Column("label", sa.String(16), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("label IN ('false_alarm', 'defect')", name="ck_feedback_label"),
    )
    op.create_index("ix_feedback_frame_id", "feedback", ["frame_id", "id"])
    op.create_table(
        "acknowledgements",
        sa.Column(
            "frame_id",
            sa.String(128),
            sa.ForeignKey("inspections.frame_id", ondelete="CASCADE", name="fk_acknowledgements_frame_id"),
            primary_key=True,
        ),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("acknowledged_by", sa.String(128), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("acknowledgements")
    op.drop_index("ix_feedback_frame_id", table_name="feedback")
    op.drop_table("feedback")
