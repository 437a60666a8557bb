"""Covering indexes for the figures that read many rows: the details behind the medians and
the decline reasons (service levels), and the cohort facts (cohorts) are answered from the
index alone (an index-only scan), not from rows scattered over the whole table.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

DETAIL_INCLUDE = ['pathway', 'complexity', 'sex', 'age_band', 'supervision', 'service_code',
                  'provider_code', 'programme', 'month', 'detail', 'count']
COHORT_INCLUDE = ['event_id', 'kind', 'member_key', 'cohort', 'reason', 'pathway', 'status']


def upgrade() -> None:
    op.create_index('ix_figure_details_read', 'figure_details',
                    ['measure', 'cube', 'grain', 'area', 'period'], unique=False,
                    postgresql_include=DETAIL_INCLUDE)
    op.drop_index('ix_figure_details_measure_area_period', table_name='figure_details')
    op.create_index('ix_cohort_facts_read', 'cohort_facts', ['area', 'occurred_at'],
                    unique=False, postgresql_include=COHORT_INCLUDE)
    op.drop_index('ix_cohort_facts_area_at', table_name='cohort_facts')


def downgrade() -> None:
    op.create_index('ix_cohort_facts_area_at', 'cohort_facts', ['area', 'occurred_at'], unique=False)
    op.drop_index('ix_cohort_facts_read', table_name='cohort_facts')
    op.create_index('ix_figure_details_measure_area_period', 'figure_details',
                    ['measure', 'cube', 'grain', 'area', 'period'], unique=False)
    op.drop_index('ix_figure_details_read', table_name='figure_details')
