"""unsubscribes: people who unsubscribed, from either side (SPEC S9, read by S10);
salesforce_optout_writes: the opt-outs the sync itself set in Salesforce (echo filter);
salesforce_optouts_held: Salesforce opt-outs waiting for their person or for the sync;
indexes on persons' Salesforce ids (an opt-out finds its people by them)

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
        sa.Column("event_id", sa.String(36)),
        sa.Column("sfdc_id", sa.String(18)),
        sa.Column("pushed_at", sa.DateTime(timezone=True)),
        sa.Column("unsynced", sa.String(32)),
    )
    op.create_index("ix_unsubscribes_unpushed", "unsubscribes", ["pushed_at"])
    op.create_table(
        "salesforce_optout_writes",
        sa.Column("sfdc_id", sa.String(18), primary_key=True),
        sa.Column("field", sa.String(64), primary_key=True),
        sa.Column("sobject", sa.String(16), nullable=False),
        sa.Column("marketo_id", sa.BigInteger, nullable=False),
        sa.Column("written_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True)),
    )
    op.create_table(
        "salesforce_optouts_held",
        sa.Column("sfdc_id", sa.String(18), primary_key=True),
        sa.Column("field", sa.String(64), primary_key=True),
        sa.Column("sobject", sa.String(16), nullable=False),
        sa.Column("email", sa.String(255)),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("system_modstamp", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("held_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_persons_sfdc_lead_id", "persons", ["sfdc_lead_id"])
    op.create_index("ix_persons_sfdc_contact_id", "persons", ["sfdc_contact_id"])


def downgrade() -> None:
    op.drop_index("ix_persons_sfdc_contact_id", "persons")
    op.drop_index("ix_persons_sfdc_lead_id", "persons")
    op.drop_table("salesforce_optouts_held")
    op.drop_table("salesforce_optout_writes")
    op.drop_table("unsubscribes")
