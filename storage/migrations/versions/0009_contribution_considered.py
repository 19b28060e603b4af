"""When a contribution was considered for cross-posting: NULL is a pending entry of the outbox.

Revision ID: 0009
Revises: 0008
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("contributions", sa.Column("considered_at", sa.DateTime(), nullable=True))
    # What is already stored was considered when it arrived: only new contributions wait.
    op.execute("UPDATE contributions SET considered_at = created_at")
    op.create_index(
        "ix_contributions_considered", "contributions", ["organisation_id", "considered_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_contributions_considered", table_name="contributions")
    op.drop_column("contributions", "considered_at")
