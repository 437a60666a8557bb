"""Infrastructure tables: outbox, processed events, dead letters, access log.

Revision ID: 0001
Revises:
"""

from pathways_shared.migrations import create_infrastructure_tables, drop_infrastructure_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_infrastructure_tables()


def downgrade() -> None:
    drop_infrastructure_tables()
