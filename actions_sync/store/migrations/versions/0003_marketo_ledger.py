"""marketo_ledger: which sales activities Marketo holds (pending -> accepted)

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "marketo_ledger",
        sa.Column("activity_id", sa.String(64), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("claim", sa.String(32), nullable=False),
        sa.Column("lead_id", sa.BigInteger, nullable=False),
        sa.Column("type_id", sa.Integer, nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("marketo_id", sa.BigInteger),
        sa.Column("marketo_guid", sa.String(64)),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_marketo_ledger_state_sent_at", "marketo_ledger", ["state", "sent_at"])


def downgrade() -> None:
    op.drop_index("ix_marketo_ledger_state_sent_at", "marketo_ledger")
    op.drop_table("marketo_ledger")
