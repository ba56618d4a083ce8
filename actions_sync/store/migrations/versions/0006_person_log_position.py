"""persons.log_position: the offset of the change applied, the tie-break of equal
`changed_at` (the later record in the log wins, SPEC S1-S2)

Revision ID: 0006
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # -1: rows stored before have no position, so any later change with their
    # `changed_at` wins over them (as no change at an equal version did before).
    op.add_column(
        "persons", sa.Column("log_position", sa.BigInteger, nullable=False, server_default="-1")
    )


def downgrade() -> None:
    with op.batch_alter_table("persons") as batch:  # SQLite drops columns by copying
        batch.drop_column("log_position")
