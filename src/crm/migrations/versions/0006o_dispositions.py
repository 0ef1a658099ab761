"""Campaign calls at the agent's desk: dispositions of attempts, the lead's event trail (skips,
dispositions, do-not-call), preview holds, callbacks for an agent, per-campaign disposition codes.

Revision ID: 0006o
Revises: 0005

New tables only (the campaign tables of 0004c are not altered); written by hand to match
``crm.campaigns``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006o"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _ts(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _lead_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["lead_id"], ["dialer_leads.id"], name=f"fk_{table}_lead_id_dialer_leads", ondelete="CASCADE"
    )


def upgrade() -> None:
    op.create_table(
        "dialer_dispositions",
        sa.Column("attempt_id", Id, nullable=False),
        sa.Column("code", sa.String(64), nullable=False),
        sa.Column("notes", sa.Text(), nullable=False),
        sa.Column("agent_id", sa.String(64), nullable=False),
        _ts("at"),
        sa.Column("next_step", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("attempt_id", name="pk_dialer_dispositions"),
        sa.ForeignKeyConstraint(
            ["attempt_id"],
            ["dialer_attempts.id"],
            name="fk_dialer_dispositions_attempt_id_dialer_attempts",
            ondelete="CASCADE",
        ),
    )
    op.create_table(
        "dialer_lead_events",
        sa.Column("id", Id, primary_key=True),
        sa.Column("lead_id", Id, nullable=False),
        _ts("at"),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("actor", sa.String(64), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_dialer_lead_events"),
        _lead_fk("dialer_lead_events"),
    )
    op.create_index("ix_dialer_lead_events_lead_id", "dialer_lead_events", ["lead_id"])
    op.create_table(
        "dialer_lead_holds",
        sa.Column("lead_id", Id, nullable=False),
        sa.Column("agent_id", sa.String(32), nullable=False),
        _ts("until"),
        sa.PrimaryKeyConstraint("lead_id", name="pk_dialer_lead_holds"),
        _lead_fk("dialer_lead_holds"),
    )
    op.create_table(
        "dialer_lead_callbacks",
        sa.Column("lead_id", Id, nullable=False),
        sa.Column("agent_id", sa.String(32), nullable=True),
        _ts("at"),
        sa.Column("booked_by", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("lead_id", name="pk_dialer_lead_callbacks"),
        _lead_fk("dialer_lead_callbacks"),
    )
    op.create_table(
        "dialer_campaign_dispositions",
        sa.Column("campaign_id", sa.String(40), nullable=False),
        sa.Column("codes", sa.JSON(), nullable=False),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("campaign_id", name="pk_dialer_campaign_dispositions"),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["dialer_campaigns.id"],
            name="fk_dialer_campaign_dispositions_campaign_id_dialer_campaigns",
            ondelete="CASCADE",
        ),
    )


def downgrade() -> None:
    op.drop_table("dialer_campaign_dispositions")
    op.drop_table("dialer_lead_callbacks")
    op.drop_table("dialer_lead_holds")
    op.drop_index("ix_dialer_lead_events_lead_id", table_name="dialer_lead_events")
    op.drop_table("dialer_lead_events")
    op.drop_table("dialer_dispositions")
