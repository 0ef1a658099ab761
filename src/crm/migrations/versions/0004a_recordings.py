"""Call recordings (the recordings capability's table).

Revision ID: 0004a
Revises: 0003

Written by hand to match ``crm.recordings``; plain column types only, like 0001.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004a"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "recordings",
        sa.Column("id", Id, primary_key=True),
        sa.Column("pbx", sa.String(32), nullable=False),
        sa.Column("linkedid", sa.String(64), nullable=False),
        sa.Column("customer_id", Id, nullable=True),
        sa.Column("agent", sa.String(32), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("file_path", sa.Text(), nullable=True),
        sa.Column("compressed_path", sa.Text(), nullable=True),
        sa.Column("duration_seconds", sa.Float(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_recordings"),
        sa.UniqueConstraint("pbx", "linkedid", name="uq_recordings_pbx_linkedid"),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name="fk_recordings_customer_id_customers", ondelete="SET NULL"
        ),
    )
    op.create_index("ix_recordings_customer_id", "recordings", ["customer_id"])
    op.create_index("ix_recordings_created_at", "recordings", ["created_at"])
    op.create_index("ix_recordings_customer_id_started_at", "recordings", ["customer_id", "started_at"])


def downgrade() -> None:
    op.drop_index("ix_recordings_customer_id_started_at", table_name="recordings")
    op.drop_index("ix_recordings_created_at", table_name="recordings")
    op.drop_index("ix_recordings_customer_id", table_name="recordings")
    op.drop_table("recordings")
