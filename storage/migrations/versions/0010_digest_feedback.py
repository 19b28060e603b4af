"""Clicks on the lessons in the weekly digest: useful, or let's talk, once per person.

Revision ID: 0010
Revises: 0009
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "digest_feedback",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("organisation_id", sa.String(64), nullable=False),
        sa.Column("contribution_id", sa.Integer(), nullable=False),
        sa.Column("person_key", sa.String(64), nullable=False),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["contribution_id"],
            ["contributions.id"],
            name=op.f("fk_digest_feedback_contribution_id_contributions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_digest_feedback")),
        sa.UniqueConstraint(
            "contribution_id", "person_key", "verdict", name="uq_digest_feedback_person"
        ),
    )
    op.create_index("ix_digest_feedback_org", "digest_feedback", ["organisation_id", "person_key"])


def downgrade() -> None:
    op.drop_index("ix_digest_feedback_org", table_name="digest_feedback")
    op.drop_table("digest_feedback")
