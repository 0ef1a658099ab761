"""Agents, their skills and languages, and each service's routing (the routing capability's tables).

Revision ID: 0002
Revises: 0001

Written by hand to match ``crm.agents``; plain column types only (no imports from the application),
so this revision keeps working however the model evolves.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _ts(name: str) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    op.create_table(
        "agents",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("languages", sa.JSON(), nullable=False),
        sa.Column("team", sa.String(64), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("max_occupancy", sa.Float(), nullable=True),
        _ts("created_at"),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_agents"),
    )
    op.create_table(
        "agent_skills",
        sa.Column("agent_id", sa.String(32), nullable=False),
        sa.Column("skill", sa.String(64), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("agent_id", "skill", name="pk_agent_skills"),
        sa.ForeignKeyConstraint(
            ["agent_id"], ["agents.id"], name="fk_agent_skills_agent_id_agents", ondelete="CASCADE"
        ),
        sa.CheckConstraint("level >= 1 AND level <= 10", name="ck_agent_skills_level"),
    )
    op.create_table(
        "service_routing",
        sa.Column("service_id", Id, nullable=False),
        sa.Column("strategy", sa.String(32), nullable=False),
        sa.Column("needs", sa.JSON(), nullable=False),
        sa.Column("relaxations", sa.JSON(), nullable=False),
        sa.Column("max_wait_seconds", sa.Float(), nullable=True),
        sa.Column("overflow_kind", sa.String(16), nullable=True),
        sa.Column("overflow_target", sa.String(100), nullable=True),
        sa.Column("wrap_up_seconds", sa.Integer(), nullable=False),
        sa.Column("weight", sa.Float(), nullable=False),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("service_id", name="pk_service_routing"),
        sa.ForeignKeyConstraint(
            ["service_id"], ["services.id"], name="fk_service_routing_service_id_services", ondelete="CASCADE"
        ),
    )


def downgrade() -> None:
    op.drop_table("service_routing")
    op.drop_table("agent_skills")
    op.drop_table("agents")
