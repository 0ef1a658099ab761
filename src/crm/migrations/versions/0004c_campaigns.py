"""Outbound campaigns: campaigns, leads, dial attempts, do-not-call, registry lists, lead imports.

Revision ID: 0004c
Revises: 0003

Written by hand to match ``crm.campaigns``; plain column types only, like 0001.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004c"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _ts(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "dialer_campaigns",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("service", sa.String(32), nullable=False),
        sa.Column("caller_id", sa.String(16), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        _ts("created_at"),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_dialer_campaigns"),
    )
    op.create_table(
        "dialer_leads",
        sa.Column("id", Id, primary_key=True),
        sa.Column("campaign_id", sa.String(40), nullable=False),
        sa.Column("phone_e164", sa.String(16), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("consent", sa.Boolean(), nullable=True),
        sa.Column("customer_id", Id, nullable=True),
        sa.Column("fields", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        _ts("next_attempt_at", nullable=True),
        sa.Column("done_reason", sa.Text(), nullable=True),
        _ts("created_at"),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_dialer_leads"),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["dialer_campaigns.id"],
            name="fk_dialer_leads_campaign_id_dialer_campaigns",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name="fk_dialer_leads_customer_id_customers",
            ondelete="SET NULL",
        ),
        sa.UniqueConstraint("campaign_id", "phone_e164", name="uq_dialer_leads_campaign_id_phone_e164"),
    )
    op.create_index(
        "ix_dialer_leads_campaign_id_status_next_attempt_at",
        "dialer_leads",
        ["campaign_id", "status", "next_attempt_at"],
    )
    op.create_table(
        "dialer_attempts",
        sa.Column("id", Id, primary_key=True),
        sa.Column("lead_id", Id, nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("channel_id", sa.String(64), nullable=False),
        _ts("dialled_at"),
        sa.Column("outcome", sa.String(16), nullable=False),
        _ts("ended_at", nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_dialer_attempts"),
        sa.ForeignKeyConstraint(
            ["lead_id"],
            ["dialer_leads.id"],
            name="fk_dialer_attempts_lead_id_dialer_leads",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("lead_id", "number", name="uq_dialer_attempts_lead_id_number"),
        sa.UniqueConstraint("channel_id", name="uq_dialer_attempts_channel_id"),
    )
    op.create_index("ix_dialer_attempts_outcome", "dialer_attempts", ["outcome"])
    op.create_table(
        "dialer_do_not_call",
        sa.Column("e164", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("added_by", sa.String(64), nullable=True),
        _ts("added_at"),
        sa.PrimaryKeyConstraint("e164", name="pk_dialer_do_not_call"),
    )
    op.create_table(
        "dialer_registries",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("published_on", sa.Date(), nullable=False),
        _ts("imported_at"),
        sa.Column("numbers", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_dialer_registries"),
    )
    op.create_table(
        "dialer_registry_numbers",
        sa.Column("registry_name", sa.String(64), nullable=False),
        sa.Column("e164", sa.String(16), nullable=False),
        sa.PrimaryKeyConstraint("registry_name", "e164", name="pk_dialer_registry_numbers"),
        sa.ForeignKeyConstraint(
            ["registry_name"],
            ["dialer_registries.name"],
            name="fk_dialer_registry_numbers_registry_name_dialer_registries",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_dialer_registry_numbers_e164", "dialer_registry_numbers", ["e164"])
    op.create_table(
        "dialer_lead_imports",
        sa.Column("id", Id, primary_key=True),
        sa.Column("campaign_id", sa.String(40), nullable=False),
        sa.Column("filename", sa.Text(), nullable=False),
        sa.Column("encoding", sa.String(32), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("added", sa.Integer(), nullable=False),
        sa.Column("merged", sa.Integer(), nullable=False),
        sa.Column("rejected", sa.Integer(), nullable=False),
        sa.Column("rejected_report", sa.LargeBinary(), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=True),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_dialer_lead_imports"),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["dialer_campaigns.id"],
            name="fk_dialer_lead_imports_campaign_id_dialer_campaigns",
            ondelete="CASCADE",
        ),
    )


def downgrade() -> None:
    op.drop_table("dialer_lead_imports")
    op.drop_index("ix_dialer_registry_numbers_e164", table_name="dialer_registry_numbers")
    op.drop_table("dialer_registry_numbers")
    op.drop_table("dialer_registries")
    op.drop_table("dialer_do_not_call")
    op.drop_index("ix_dialer_attempts_outcome", table_name="dialer_attempts")
    op.drop_table("dialer_attempts")
    op.drop_index("ix_dialer_leads_campaign_id_status_next_attempt_at", table_name="dialer_leads")
    op.drop_table("dialer_leads")
    op.drop_table("dialer_campaigns")
