"""Personal data erased after the retention period: the erasure register, `erased_at` on
needs, provider referrals and IOM memberships, and their CRNs (and the routing decisions')
nullable, so erasure blanks them (providers.erasure).

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

_ERASED = ("needs", "provider_referrals", "iom_members")
_ENDED = sa.text("erased_at IS NULL AND status IN ('declined', 'completed', 'withdrawn')")


def upgrade() -> None:
    create_erasure_register()
    for table in (*_ERASED, "routing_decisions"):
        with op.batch_alter_table(table) as batch:
            if table in _ERASED:
                batch.add_column(sa.Column("erased_at", sa.DateTime(timezone=True), nullable=True))
            batch.alter_column("crn", existing_type=sa.String(20), nullable=True)
    op.create_index("ix_provider_referrals_erasable", "provider_referrals", ["updated_at"],
                    postgresql_where=_ENDED, sqlite_where=_ENDED)


def downgrade() -> None:
    op.drop_index("ix_provider_referrals_erasable", table_name="provider_referrals")
    for table in _ERASED:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("erased_at")
    drop_erasure_register()
