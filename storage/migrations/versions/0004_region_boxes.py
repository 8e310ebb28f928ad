"""Region boxes per inspection: full-frame pixel boxes (x, y, width, height), area and 3x3 position.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable: rows stored before this revision have no boxes (their mask PNG still has the regions).
    with op.batch_alter_table("inspections") as batch:
        batch.add_column(sa.Column("regions", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("frame_width_px", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("frame_height_px", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("inspections") as batch:
        batch.drop_column("frame_height_px")
        batch.drop_column("frame_width_px")
        batch.drop_column("regions")
