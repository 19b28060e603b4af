"""A person's own settings: language and whether answers are anonymous by default.

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "person_settings",
        sa.Column("organisation_id", sa.String(64), nullable=False),
        sa.Column("platform", sa.String(16), nullable=False),
        sa.Column("person_id", sa.String(200), nullable=False),
        sa.Column("language", sa.String(8), nullable=True),
        sa.Column("anonymous_default", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint(
            "organisation_id", "platform", "person_id", name=op.f("pk_person_settings")
        ),
    )


def downgrade() -> None:
    op.drop_table("person_settings")
