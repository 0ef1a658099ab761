"""The call that carried out a callback task (queue callbacks dialled by routing).

Revision ID: 0004w
Revises: 0003

Written by hand to match ``crm.voicemail.CallbackTask.handled_call_key``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004w"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("callback_tasks") as batch:
        batch.add_column(sa.Column("handled_call_key", sa.String(128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("callback_tasks") as batch:
        batch.drop_column("handled_call_key")
