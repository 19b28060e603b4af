"""Several themes per contribution, whether the person chose them, and a person's "niet delen".

`theme` stays: the first (primary) of `themes`. Existing contributions keep their one theme, as
a list of one, counted as chosen by the person (before this, only the person set a theme).

Revision ID: 0007
Revises: 0006
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

contributions = sa.table(
    "contributions",
    sa.column("id", sa.Integer()),
    sa.column("theme", sa.String(64)),
    sa.column("themes", sa.JSON()),
    sa.column("themes_chosen", sa.Boolean()),
)


def upgrade() -> None:
    with op.batch_alter_table("contributions") as batch:
        batch.add_column(sa.Column("themes", sa.JSON(), nullable=True))
        batch.add_column(
            sa.Column("themes_chosen", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(
            sa.Column("shareable", sa.Boolean(), nullable=False, server_default=sa.true())
        )
    connection = op.get_bind()
    rows = connection.execute(
        sa.select(contributions.c.id, contributions.c.theme).where(
            contributions.c.theme.is_not(None)
        )
    ).all()
    for row_id, theme in rows:
        connection.execute(
            contributions.update()
            .where(contributions.c.id == row_id)
            .values(themes=[theme], themes_chosen=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("contributions") as batch:
        batch.drop_column("shareable")
        batch.drop_column("themes_chosen")
        batch.drop_column("themes")
