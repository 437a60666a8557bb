"""Cohorts: nominals, offences, selection policies and runs, memberships, referral needs,
offence imports.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from pathways_shared.migrations import BIGINT_PK

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "nominals",
        sa.Column("crn", sa.String(7), primary_key=True),
        sa.Column("area", sa.String(9), nullable=False),
        sa.Column("date_of_birth", sa.Date(), nullable=False),
        sa.Column("supervision_status", sa.String(40), nullable=False),
        sa.Column("mappa_level", sa.Integer(), nullable=True),
        sa.Column("pnc_number", sa.String(13), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_nominals_area", "nominals", ["area", "crn"])
    op.create_table(
        "offences",
        sa.Column("id", BIGINT_PK, primary_key=True, autoincrement=True),
        sa.Column("crn", sa.String(7), nullable=False),
        sa.Column("offence_date", sa.Date(), nullable=False),
        sa.Column("category", sa.String(40), nullable=False),
        sa.Column("description", sa.Text(), nullable=False, server_default=""),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("import_id", sa.String(36), nullable=True),
        sa.UniqueConstraint(
            "crn", "offence_date", "category", "description", name="uq_offences_natural"
        ),
    )
    op.create_table(
        "selection_policies",
        sa.Column("area", sa.String(9), primary_key=True),
        sa.Column("version", sa.Integer(), primary_key=True),
        sa.Column("body", JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
    )
    op.create_table(
        "selection_runs",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("area", sa.String(9), nullable=False),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("policy_version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("counts", JSON, nullable=False),
        sa.Column("candidates", JSON, nullable=False),
        sa.Column("excluded", JSON, nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=False, server_default="0"),
    )
    op.create_index("ix_selection_runs_area_created", "selection_runs", ["area", "created_at"])
    op.create_table(
        "memberships",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("crn", sa.String(7), nullable=False),
        sa.Column("area", sa.String(9), nullable=False),
        sa.Column("cohort", sa.String(10), nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("adopted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("adopted_by", sa.String(200), nullable=False),
        sa.Column("rationale", sa.Text(), nullable=False),
        sa.Column("met_criteria", sa.Boolean(), nullable=False),
        sa.Column("criteria_reasons", JSON, nullable=False),
        sa.Column("score_at_adoption", sa.Integer(), nullable=False),
        sa.Column("review_due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deselected_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deselected_by", sa.String(200), nullable=True),
        sa.Column("deselection_reason", sa.String(30), nullable=True),
        sa.Column("deselection_comments", sa.Text(), nullable=True),
    )
    op.create_index("ix_memberships_crn", "memberships", ["crn"])
    op.create_index(
        "uq_memberships_active",
        "memberships",
        ["crn", "area"],
        unique=True,
        postgresql_where=sa.text("status = 'active'"),
        sqlite_where=sa.text("status = 'active'"),
    )
    op.create_index(
        "ix_memberships_area_status", "memberships", ["area", "status", "cohort", "crn"]
    )
    op.create_index(
        "ix_memberships_review_due",
        "memberships",
        ["review_due_at"],
        postgresql_where=sa.text("status = 'active'"),
        sqlite_where=sa.text("status = 'active'"),
    )
    op.create_table(
        "referral_needs",
        sa.Column("need_id", sa.String(36), primary_key=True),
        sa.Column("referral_id", sa.String(36), nullable=False),
        sa.Column("crn", sa.String(7), nullable=False),
        sa.Column("pathway", sa.String(40), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("programme", sa.String(40), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_referral_needs_crn", "referral_needs", ["crn"])
    op.create_table(
        "offence_imports",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("total_rows", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("processed_rows", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("loaded", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("duplicates", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("rejected", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("batches_total", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("batches_done", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("errors", JSON, nullable=False),
        sa.Column("failure", sa.Text(), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("offence_imports")
    op.drop_index("ix_referral_needs_crn", table_name="referral_needs")
    op.drop_table("referral_needs")
    op.drop_index("ix_memberships_review_due", table_name="memberships")
    op.drop_index("ix_memberships_area_status", table_name="memberships")
    op.drop_index("uq_memberships_active", table_name="memberships")
    op.drop_index("ix_memberships_crn", table_name="memberships")
    op.drop_table("memberships")
    op.drop_index("ix_selection_runs_area_created", table_name="selection_runs")
    op.drop_table("selection_runs")
    op.drop_table("selection_policies")
    op.drop_table("offences")
    op.drop_index("ix_nominals_area", table_name="nominals")
    op.drop_table("nominals")
