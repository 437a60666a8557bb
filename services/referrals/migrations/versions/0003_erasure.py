"""Personal data erased after the retention period: the erasure register, `erased_at`, and
the personal columns of a referral nullable, so erasure blanks them (pathways_shared.erasure).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from pathways_shared.erasure import create_erasure_register, drop_erasure_register

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_BLANKABLE = {
    "crn": sa.String(20),
    "given_name": sa.String(200),
    "family_name": sa.String(200),
    "date_of_birth": sa.Date(),
    "practitioner_name": sa.String(200),
    "practitioner_email": sa.String(320),
}
_ERASABLE = sa.text("erased_at IS NULL AND status <> 'open'")


def upgrade() -> None:
    create_erasure_register()
    with op.batch_alter_table("referrals") as batch:
        batch.add_column(sa.Column("erased_at", sa.DateTime(timezone=True), nullable=True))
        for name, type_ in _BLANKABLE.items():
            batch.alter_column(name, existing_type=type_, nullable=True)
    op.create_index("ix_referrals_erasable", "referrals", ["updated_at"],
                    postgresql_where=_ERASABLE, sqlite_where=_ERASABLE)


def downgrade() -> None:
    op.drop_index("ix_referrals_erasable", table_name="referrals")
    with op.batch_alter_table("referrals") as batch:
        batch.drop_column("erased_at")
    drop_erasure_register()
