"""Personal data erased after the retention period: the erasure register, `erased_at` on
memberships, and a membership's CRN and rationale nullable, so erasure blanks them
(cohorts.erasure).

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

_ENDED = sa.text("erased_at IS NULL AND status = 'deselected'")


def upgrade() -> None:
    create_erasure_register()
    with op.batch_alter_table("memberships") as batch:
        batch.add_column(sa.Column("erased_at", sa.DateTime(timezone=True), nullable=True))
        batch.alter_column("crn", existing_type=sa.String(7), nullable=True)
        batch.alter_column("rationale", existing_type=sa.Text(), nullable=True)
    op.create_index("ix_memberships_erasable", "memberships", ["deselected_at"],
                    postgresql_where=_ENDED, sqlite_where=_ENDED)


def downgrade() -> None:
    op.drop_index("ix_memberships_erasable", table_name="memberships")
    with op.batch_alter_table("memberships") as batch:
        batch.drop_column("erased_at")
    drop_erasure_register()
