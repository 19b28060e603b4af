"""Lessons that travel: suggestions to other departments and theme channels, and their feedback;
whether a person may be named beside their lessons elsewhere.

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "crossposts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("organisation_id", sa.String(64), nullable=False),
        sa.Column("contribution_id", sa.Integer(), nullable=False),
        sa.Column("source_department_id", sa.String(64), nullable=False),
        sa.Column("target", sa.String(80), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("due_at", sa.DateTime(), nullable=False),
        sa.Column("platform", sa.String(16), nullable=True),
        sa.Column("channel", sa.String(200), nullable=True),
        sa.Column("message_id", sa.String(200), nullable=True),
        sa.Column("thread_id", sa.String(200), nullable=True),
        sa.Column("claimed_by", sa.String(100), nullable=True),
        sa.Column("claimed_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("sent_at", sa.DateTime(), nullable=True),
        sa.Column("note", sa.String(500), nullable=True),
        sa.ForeignKeyConstraint(
            ["contribution_id"],
            ["contributions.id"],
            name=op.f("fk_crossposts_contribution_id_contributions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crossposts")),
        sa.UniqueConstraint("contribution_id", "target", name="uq_crosspost_target"),
    )
    op.create_index("ix_crossposts_due", "crossposts", ["organisation_id", "status", "due_at"])
    op.create_index("ix_crossposts_thread", "crossposts", ["platform", "channel", "thread_id"])
    op.create_table(
        "crosspost_feedback",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("crosspost_id", sa.Integer(), nullable=False),
        sa.Column("person_key", sa.String(64), nullable=False),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["crosspost_id"],
            ["crossposts.id"],
            name=op.f("fk_crosspost_feedback_crosspost_id_crossposts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crosspost_feedback")),
        sa.UniqueConstraint("crosspost_id", "person_key", name="uq_feedback_person"),
    )
    with op.batch_alter_table("person_settings") as batch:
        batch.add_column(
            sa.Column("named_elsewhere", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("person_settings") as batch:
        batch.drop_column("named_elsewhere")
    op.drop_table("crosspost_feedback")
    op.drop_index("ix_crossposts_thread", table_name="crossposts")
    op.drop_index("ix_crossposts_due", table_name="crossposts")
    op.drop_table("crossposts")
