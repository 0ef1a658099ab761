"""Agents, their skills and languages (the routing capability's tables).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
