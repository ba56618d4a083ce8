"""persons: the people of the Actions store (SPEC S1-S5)

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

FIELDS = (
    "first_name",
    "last_name",
    "sfdc_contact_id",
    "sfdc_lead_id",
    "sfdc_account_id",
    "sfdc_opportunity_id",
    "company",
    "title",
    "email",
    "phone",
    "linkedin_url",
    "source",
    "sfdc_lead_owner_id",
    "sfdc_contact_owner_id",
)


def upgrade() -> None:
    op.create_table(
        "persons",
        sa.Column("marketo_id", sa.BigInteger, primary_key=True, autoincrement=False),
        *(sa.Column(name, sa.String(255)) for name in FIELDS),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("removed_at", sa.DateTime(timezone=True)),
        sa.Column("synced_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_persons_email", "persons", ["email"])


def downgrade() -> None:
    op.drop_table("persons")
