"""Personal data erased after the retention period: the erasure register and `erased_at` on
notifications (notifications.erasure; the columns it blanks are nullable already).

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

_ENDED = sa.text("erased_at IS NULL AND status IN ('delivered', 'failed', 'cancelled')")


def upgrade() -> None:
    create_erasure_register()
    with op.batch_alter_table("notifications") as batch:
        batch.add_column(sa.Column("erased_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_notifications_erasable", "notifications", ["updated_at"],
                    postgresql_where=_ENDED, sqlite_where=_ENDED)


def downgrade() -> None:
    op.drop_index("ix_notifications_erasable", table_name="notifications")
    with op.batch_alter_table("notifications") as batch:
        batch.drop_column("erased_at")
    drop_erasure_register()
