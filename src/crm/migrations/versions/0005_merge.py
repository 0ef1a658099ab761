"""Join the migrations that recordings, campaigns and queue callbacks added side by side.

Revision ID: 0005
Revises: 0004a, 0004c, 0004w

Nothing changes in the schema: after this revision the history has one head again, and the next
migration revises "0005".
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0005"
down_revision: str | tuple[str, ...] | None = ("0004a", "0004c", "0004w")
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
