"""task_deliveries: the last Task upsert the Salesforce Task sink delivered, by external id

Revision ID: 0017
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "task_deliveries",
        sa.Column("external_id", sa.String(255), primary_key=True),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("task_deliveries")
