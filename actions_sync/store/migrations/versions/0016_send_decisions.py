"""send_decisions: the send-check decisions given, by check id (SPEC S10, one per check)

Revision ID: 0016
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "send_decisions",
        sa.Column("check_id", sa.String(255), primary_key=True),
        sa.Column("allowed", sa.Boolean, nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_send_decisions_decided_at", "send_decisions", ["decided_at"])


def downgrade() -> None:
    op.drop_index("ix_send_decisions_decided_at", "send_decisions")
    op.drop_table("send_decisions")
