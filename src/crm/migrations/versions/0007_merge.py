"""Join the migrations that campaign dispositions and the call log's work end added side by side.

Revision ID: 0007
Revises: 0006o, 0006s

Nothing changes in the schema: after this revision the history has one head again, and the next
migration revises "0007".
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0007"
down_revision: str | tuple[str, ...] | None = ("0006o", "0006s")
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
