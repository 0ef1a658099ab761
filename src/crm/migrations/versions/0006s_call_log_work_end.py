"""When the agent finished a call (wrap-up over, or no wrap-up): the supervisor's average handle
time counts each call then.

Revision ID: 0006s
Revises: 0005

Written by hand to match ``crm.model.CallLog.work_ended_at``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006s"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("call_logs") as batch:
        batch.add_column(sa.Column("work_ended_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("call_logs") as batch:
        batch.drop_column("work_ended_at")
