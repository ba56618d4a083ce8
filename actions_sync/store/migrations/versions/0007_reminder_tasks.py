"""reminder_tasks: reminder tasks synced both ways with Salesforce Tasks (SPEC S11)

Revision ID: 0007
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reminder_tasks",
        sa.Column("task_id", sa.String(64), primary_key=True),
        sa.Column("marketo_id", sa.BigInteger),
        sa.Column("subject", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("priority", sa.String(16), nullable=False),
        sa.Column("due_date", sa.Date),
        sa.Column("details", sa.Text),
        sa.Column("deleted", sa.Boolean, nullable=False),
        sa.Column("sfdc_task_id", sa.String(18)),
        sa.Column("actions_version", sa.DateTime(timezone=True)),
        sa.Column("salesforce_version", sa.DateTime(timezone=True)),
        sa.Column("salesforce_synced", sa.JSON, nullable=False),
        sa.Column("stamps", sa.JSON, nullable=False),
        sa.Column("written_at", sa.DateTime(timezone=True)),
        sa.Column("written", sa.JSON, nullable=False),
        sa.Column("unpushed", sa.Boolean, nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_reminder_tasks_sfdc_task_id", "reminder_tasks", ["sfdc_task_id"])
    op.create_index("ix_reminder_tasks_unpushed", "reminder_tasks", ["unpushed"])


def downgrade() -> None:
    op.drop_index("ix_reminder_tasks_unpushed", "reminder_tasks")
    op.drop_index("ix_reminder_tasks_sfdc_task_id", "reminder_tasks")
    op.drop_table("reminder_tasks")
