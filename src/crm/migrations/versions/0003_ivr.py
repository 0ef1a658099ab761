"""Voicemails, callback requests and self-service answers (the ivr capability's tables).

Revision ID: 0003
Revises: 0002

Written by hand to match ``crm.voicemail``; plain column types only, like 0001.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _ts(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _customer_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["customer_id"], ["customers.id"], name=f"fk_{table}_customer_id_customers", ondelete="CASCADE"
    )


def upgrade() -> None:
    op.create_table(
        "voicemails",
        sa.Column("id", Id, primary_key=True),
        sa.Column("call_key", sa.String(128), nullable=False),
        sa.Column("customer_id", Id, nullable=False),
        sa.Column("file_path", sa.Text(), nullable=False),
        sa.Column("compressed_path", sa.Text(), nullable=True),
        sa.Column("duration_seconds", sa.Float(), nullable=False),
        _ts("created_at"),
        sa.Column("listened", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_voicemails"),
        _customer_fk("voicemails"),
    )
    op.create_index("ix_voicemails_call_key", "voicemails", ["call_key"])
    op.create_index("ix_voicemails_customer_id_created_at", "voicemails", ["customer_id", "created_at"])
    op.create_table(
        "callback_tasks",
        sa.Column("id", Id, primary_key=True),
        sa.Column("call_key", sa.String(128), nullable=False),
        sa.Column("customer_id", Id, nullable=False),
        sa.Column("number_e164", sa.String(16), nullable=False),
        _ts("requested_at"),
        sa.Column("status", sa.String(16), nullable=False),
        _ts("due", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_callback_tasks"),
        _customer_fk("callback_tasks"),
    )
    op.create_index("ix_callback_tasks_call_key", "callback_tasks", ["call_key"])
    op.create_index("ix_callback_tasks_status_requested_at", "callback_tasks", ["status", "requested_at"])
    op.create_table(
        "customer_self_service",
        sa.Column("customer_id", Id, nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("customer_id", name="pk_customer_self_service"),
        _customer_fk("customer_self_service"),
    )


def downgrade() -> None:
    op.drop_table("customer_self_service")
    op.drop_index("ix_callback_tasks_status_requested_at", table_name="callback_tasks")
    op.drop_index("ix_callback_tasks_call_key", table_name="callback_tasks")
    op.drop_table("callback_tasks")
    op.drop_index("ix_voicemails_customer_id_created_at", table_name="voicemails")
    op.drop_index("ix_voicemails_call_key", table_name="voicemails")
    op.drop_table("voicemails")
