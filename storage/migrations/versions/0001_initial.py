"""Initial schema: inspections, masks, banks, chat_turns.

Revision ID: 0001
Revises:
Create Date: 2026-01-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "inspections",
        sa.Column("id", _BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("frame_id", sa.String(128), nullable=False),
        sa.Column("line_id", sa.String(64), nullable=False),
        sa.Column("camera_id", sa.String(64), nullable=False),
        sa.Column("product_class", sa.String(64), nullable=False),
        sa.Column("captured_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("scored_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("is_anomalous", sa.Boolean(), nullable=False),
        sa.Column("positions", sa.JSON(), nullable=False),
        sa.Column("region_count", sa.Integer(), nullable=False),
        sa.Column("verdict", sa.Text(), nullable=False),
        sa.Column("verdict_source", sa.String(16), nullable=False),
        sa.Column("verdict_note", sa.Text(), nullable=True),
        sa.Column("bank_version", sa.Integer(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("source_topic", sa.String(255), nullable=True),
        sa.Column("source_partition", sa.Integer(), nullable=True),
        sa.Column("source_offset", sa.BigInteger(), nullable=True),
        sa.Column("alert_sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("frame_id", name="uq_inspections_frame_id"),
        sa.CheckConstraint("verdict_source IN ('template', 'llm')", name="ck_inspections_verdict_source"),
    )
    op.create_index("ix_inspections_line_id", "inspections", ["line_id", "id"])
    op.create_index("ix_inspections_camera_id", "inspections", ["camera_id", "id"])
    op.create_index("ix_inspections_product_class", "inspections", ["product_class", "id"])
    op.create_index("ix_inspections_is_anomalous", "inspections", ["is_anomalous", "id"])
    op.create_index("ix_inspections_captured_at", "inspections", ["captured_at"])

    op.create_table(
        "masks",
        sa.Column(
            "inspection_id",
            _BIG_ID,
            sa.ForeignKey("inspections.id", ondelete="CASCADE", name="fk_masks_inspection_id"),
            primary_key=True,
        ),
        sa.Column("anomaly_map_png", sa.LargeBinary(), nullable=False),
        sa.Column("mask_png", sa.LargeBinary(), nullable=False),
        sa.Column("width_px", sa.Integer(), nullable=False),
        sa.Column("height_px", sa.Integer(), nullable=False),
        sa.Column("frame_image", sa.LargeBinary(), nullable=True),
    )

    op.create_table(
        "banks",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("product_class", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("shots", sa.Integer(), nullable=False),
        sa.Column("encoder", sa.String(64), nullable=False),
        sa.Column("calibration", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.UniqueConstraint("product_class", "version", name="uq_banks_class_version"),
    )
    # At most one active version per class: a partial unique index (SQLite >= 3.8 and PostgreSQL).
    op.create_index(
        "uq_banks_one_active",
        "banks",
        ["product_class"],
        unique=True,
        sqlite_where=sa.text("active"),
        postgresql_where=sa.text("active"),
    )

    op.create_table(
        "chat_turns",
        sa.Column("id", _BIG_ID, primary_key=True, autoincrement=True),
        sa.Column(
            "inspection_id",
            _BIG_ID,
            sa.ForeignKey("inspections.id", ondelete="CASCADE", name="fk_chat_turns_inspection_id"),
            nullable=False,
        ),
        sa.Column("turn_index", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("inspection_id", "turn_index", name="uq_chat_turns_inspection_turn"),
        sa.CheckConstraint("role IN ('operator', 'assistant')", name="ck_chat_turns_role"),
    )


def downgrade() -> None:
    op.drop_table("chat_turns")
    op.drop_index("uq_banks_one_active", table_name="banks")
    op.drop_table("banks")
    op.drop_table("masks")
    op.drop_table("inspections")
