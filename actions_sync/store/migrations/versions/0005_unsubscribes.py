"""unsubscribes: people who unsubscribed, from either side (SPEC S9, read by S10);
salesforce_optout_writes: the opt-outs the sync itself set in Salesforce (echo filter)

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
    op.create_table(
        "salesforce_optout_writes",
        sa.Column("sfdc_id", sa.String(18), primary_key=True),
        sa.Column("field", sa.String(64), primary_key=True),
        sa.Column("sobject", sa.String(16), nullable=False),
        sa.Column("marketo_id", sa.BigInteger, nullable=False),
        sa.Column("written_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("salesforce_optout_writes")
    op.drop_table("unsubscribes")
