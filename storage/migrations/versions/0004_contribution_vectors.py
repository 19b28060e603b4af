"""Embeddings of contributions, kept so that a restart does not recompute them.

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "contribution_vectors",
        sa.Column("contribution_id", sa.Integer(), nullable=False),
        sa.Column("organisation_id", sa.String(64), nullable=False),
        sa.Column("embedder", sa.String(200), nullable=False),
        sa.Column("dims", sa.Integer(), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["contribution_id"],
            ["contributions.id"],
            name=op.f("fk_contribution_vectors_contribution_id_contributions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("contribution_id", name=op.f("pk_contribution_vectors")),
    )
    op.create_index(
        "ix_contribution_vectors_org", "contribution_vectors", ["organisation_id", "embedder"]
    )


def downgrade() -> None:
    op.drop_index("ix_contribution_vectors_org", table_name="contribution_vectors")
    op.drop_table("contribution_vectors")
