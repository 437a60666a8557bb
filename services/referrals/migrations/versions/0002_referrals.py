"""Referrals, their needs and their history.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from pathways_shared.migrations import BIGINT_PK

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _utc(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "referrals",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("source_reference", sa.String(100), nullable=False),
        sa.Column("idempotency_key", sa.String(200), nullable=True),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("area", sa.String(20), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("crn", sa.String(20), nullable=False),
        sa.Column("noms_number", sa.String(20), nullable=True),
        sa.Column("pnc_number", sa.String(20), nullable=True),
        sa.Column("given_name", sa.String(200), nullable=False),
        sa.Column("family_name", sa.String(200), nullable=False),
        sa.Column("date_of_birth", sa.Date(), nullable=False),
        sa.Column("sex", sa.String(10), nullable=False),
        sa.Column("needs_interpreter", sa.Boolean(), nullable=False),
        sa.Column("interpreter_language", sa.String(100), nullable=True),
        sa.Column("supervision_status", sa.String(40), nullable=False),
        sa.Column("expected_release_date", sa.Date(), nullable=True),
        sa.Column("rosh", sa.String(20), nullable=False),
        sa.Column("mappa_level", sa.Integer(), nullable=True),
        sa.Column("practitioner_name", sa.String(200), nullable=False),
        sa.Column("practitioner_email", sa.String(320), nullable=False),
        sa.Column("practitioner_team", sa.String(200), nullable=True),
        sa.Column("consent_given", sa.Boolean(), nullable=False),
        _utc("consent_recorded_at", nullable=True),
        _utc("submitted_at"),
        sa.Column("submitted_by", sa.String(200), nullable=False),
        _utc("updated_at"),
        sa.Column("withdrawal_reason", sa.String(40), nullable=True),
        sa.Column("withdrawal_comments", sa.Text(), nullable=True),
        _utc("withdrawn_at", nullable=True),
        sa.Column("withdrawn_by", sa.String(200), nullable=True),
        sa.UniqueConstraint("source_reference", name="uq_referrals_source_reference"),
        sa.UniqueConstraint("idempotency_key", name="uq_referrals_idempotency_key"),
    )
    op.create_index("ix_referrals_submitted", "referrals", ["submitted_at", "id"])
    op.create_index("ix_referrals_area_submitted", "referrals", ["area", "submitted_at", "id"])
    op.create_index("ix_referrals_crn_submitted", "referrals", ["crn", "submitted_at", "id"])
    op.create_index("ix_referrals_status_submitted", "referrals", ["status", "submitted_at", "id"])

    op.create_table(
        "needs",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column(
            "referral_id",
            sa.Uuid(),
            sa.ForeignKey("referrals.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("pathway", sa.String(40), nullable=False),
        sa.Column("complexity", sa.String(10), nullable=False),
        sa.Column("details", sa.Text(), nullable=True),
        sa.Column("flags", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("service_code", sa.String(40), nullable=True),
        sa.Column("provider_code", sa.String(40), nullable=True),
        sa.Column("programme", sa.String(40), nullable=True),
        sa.Column("provider_referral_id", sa.Uuid(), nullable=True),
        sa.Column("status_reason", sa.Text(), nullable=True),
        _utc("allocated_at", nullable=True),
        _utc("acknowledge_by", nullable=True),
        _utc("respond_by", nullable=True),
        _utc("updated_at"),
        _utc("last_event_at", nullable=True),
        sa.Column("missed_deadlines", sa.JSON(), nullable=False),
        sa.UniqueConstraint("referral_id", "pathway", name="uq_needs_referral_pathway"),
    )
    op.create_index("ix_needs_pathway_referral", "needs", ["pathway", "referral_id"])
    op.create_index("ix_needs_provider_referral", "needs", ["provider_code", "referral_id"])

    op.create_table(
        "referral_history",
        sa.Column("id", BIGINT_PK, primary_key=True, autoincrement=True),
        sa.Column(
            "referral_id",
            sa.Uuid(),
            sa.ForeignKey("referrals.id", ondelete="CASCADE"),
            nullable=False,
        ),
        _utc("at"),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("event", sa.String(40), nullable=False),
        sa.Column("need_id", sa.Uuid(), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
    )
    op.create_index(
        "ix_referral_history_referral_at", "referral_history", ["referral_id", "at", "id"]
    )


def downgrade() -> None:
    op.drop_table("referral_history")
    op.drop_table("needs")
    op.drop_table("referrals")
