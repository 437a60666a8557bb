"""A referral's source reference and idempotency key are unique per submitting client and
area, not across every client: another client reusing one neither collides with nor learns of
the referral.

Existing referrals take their submitter (`submitted_by`, the token subject) as their client.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("referrals") as batch:
        batch.add_column(sa.Column("submitting_client", sa.String(200), nullable=True))
    op.execute("UPDATE referrals SET submitting_client = submitted_by")
    with op.batch_alter_table("referrals") as batch:
        batch.alter_column("submitting_client", existing_type=sa.String(200), nullable=False)
        batch.drop_constraint("uq_referrals_source_reference", type_="unique")
        batch.drop_constraint("uq_referrals_idempotency_key", type_="unique")
        batch.create_unique_constraint(
            "uq_referrals_source_reference",
            ["submitting_client", "area", "source_reference"],
        )
        batch.create_unique_constraint(
            "uq_referrals_idempotency_key",
            ["submitting_client", "area", "idempotency_key"],
        )


def downgrade() -> None:
    with op.batch_alter_table("referrals") as batch:
        batch.drop_constraint("uq_referrals_source_reference", type_="unique")
        batch.drop_constraint("uq_referrals_idempotency_key", type_="unique")
        batch.create_unique_constraint("uq_referrals_source_reference", ["source_reference"])
        batch.create_unique_constraint("uq_referrals_idempotency_key", ["idempotency_key"])
        batch.drop_column("submitting_client")
