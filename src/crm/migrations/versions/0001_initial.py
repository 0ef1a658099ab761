"""Initial CRM schema: customers, customer_phones, services, users, call_logs.

Revision ID: 0001
Revises:
Create Date: 2026-11-22

Written by hand to match ``crm.model``; plain column types only (no imports from the application),
so this revision keeps working however the model evolves.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _ts(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "customers",
        sa.Column("id", Id, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("tier", sa.String(32), nullable=False),
        sa.Column("value", sa.Numeric(14, 2), nullable=False),
        sa.Column("language", sa.String(35), nullable=True),
        sa.Column("notes", sa.Text(), nullable=False),
        _ts("created_at"),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_customers"),
    )
    op.create_table(
        "customer_phones",
        sa.Column("id", Id, primary_key=True),
        sa.Column("customer_id", Id, nullable=False),
        sa.Column("e164", sa.String(16), nullable=False),
        sa.Column("raw", sa.String(64), nullable=False),
        sa.Column("label", sa.String(50), nullable=False),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_customer_phones"),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name="fk_customer_phones_customer_id_customers",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("customer_id", "e164", name="uq_customer_phones_customer_id_e164"),
    )
    op.create_index("ix_customer_phones_e164", "customer_phones", ["e164"])
    op.create_table(
        "services",
        sa.Column("id", Id, primary_key=True),
        sa.Column("dnis", sa.String(32), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("language", sa.String(35), nullable=True),
        sa.Column("required_skills", sa.JSON(), nullable=False),
        sa.Column("business_hours", sa.JSON(), nullable=True),
        sa.Column("time_zone", sa.String(64), nullable=False),
        _ts("created_at"),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_services"),
        sa.UniqueConstraint("dnis", name="uq_services_dnis"),
    )
    op.create_table(
        "users",
        sa.Column("id", Id, primary_key=True),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("display_name", sa.String(200), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.UniqueConstraint("username", name="uq_users_username"),
        sa.CheckConstraint("role IN ('agent', 'supervisor', 'admin')", name="ck_users_role"),
    )
    op.create_table(
        "call_logs",
        sa.Column("id", Id, primary_key=True),
        sa.Column("pbx", sa.String(32), nullable=False),
        sa.Column("linkedid", sa.String(64), nullable=False),
        sa.Column("direction", sa.String(16), nullable=False),
        sa.Column("ani_raw", sa.Text(), nullable=False),
        sa.Column("ani_e164", sa.String(16), nullable=True),
        sa.Column("caller_name", sa.Text(), nullable=False),
        sa.Column("dnis", sa.Text(), nullable=False),
        sa.Column("service_id", Id, nullable=True),
        sa.Column("customer_id", Id, nullable=True),
        sa.Column("new_contact", sa.Boolean(), nullable=True),
        sa.Column("customer_match", sa.String(32), nullable=True),
        _ts("started_at"),
        _ts("answered_at", nullable=True),
        _ts("connected_at", nullable=True),
        _ts("ended_at", nullable=True),
        sa.Column("wait_seconds", sa.Float(), nullable=True),
        sa.Column("talk_seconds", sa.Float(), nullable=True),
        sa.Column("hangup_cause", sa.Integer(), nullable=True),
        sa.Column("hangup_cause_txt", sa.Text(), nullable=True),
        sa.Column("end_reason", sa.String(64), nullable=True),
        sa.Column("phase", sa.String(16), nullable=False),
        sa.Column("agent", sa.Text(), nullable=True),
        sa.Column("ivr_path", sa.JSON(), nullable=True),
        sa.Column("ivr_inputs", sa.JSON(), nullable=True),
        sa.Column("disposition", sa.String(64), nullable=True),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("recording_path", sa.Text(), nullable=True),
        sa.Column("recording_seconds", sa.Float(), nullable=True),
        _ts("created_at"),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_call_logs"),
        sa.ForeignKeyConstraint(
            ["service_id"], ["services.id"], name="fk_call_logs_service_id_services", ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name="fk_call_logs_customer_id_customers", ondelete="SET NULL"
        ),
        sa.UniqueConstraint("pbx", "linkedid", name="uq_call_logs_pbx_linkedid"),
    )
    op.create_index("ix_call_logs_ani_e164", "call_logs", ["ani_e164"])
    op.create_index("ix_call_logs_customer_id", "call_logs", ["customer_id"])
    op.create_index("ix_call_logs_started_at", "call_logs", ["started_at"])
    op.create_index("ix_call_logs_pbx_ended_at", "call_logs", ["pbx", "ended_at"])


def downgrade() -> None:
    op.drop_table("call_logs")
    op.drop_table("users")
    op.drop_table("services")
    op.drop_table("customer_phones")
    op.drop_table("customers")
