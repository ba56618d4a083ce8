"""unsubscribes: people who unsubscribed, from either side (SPEC S9, read by S10)

Revision ID: 0005
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "unsubscribes",
        sa.Column("marketo_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("email", sa.String(255)),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("unsubscribes")
