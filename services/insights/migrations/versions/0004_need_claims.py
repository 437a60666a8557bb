"""`need_claims`: a row per need whose facts are stored, inserted by every writer before it
reads them, so a projection in one statement (which reads nothing) conflicts with any
concurrent writer of the same need instead of missing it. Filled from the facts stored.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('need_claims',
    sa.Column('need_id', sa.String(length=36), nullable=False),
    sa.PrimaryKeyConstraint('need_id')
    )
    op.execute(
        "INSERT INTO need_claims (need_id) SELECT need_id FROM need_facts"
        " UNION SELECT need_id FROM allocation_facts UNION SELECT need_id FROM step_facts"
    )


def downgrade() -> None:
    op.drop_table('need_claims')
