"""The catalogue (seeded from catalogue.json), needs, routing decisions, provider referrals
and the IOM membership projection.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from providers.domain.catalogue import load_seed_catalogue

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    providers = op.create_table(
        "providers",
        sa.Column("code", sa.String(40), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
    )
    services = op.create_table(
        "services",
        sa.Column("code", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("provider_code", sa.String(40), nullable=False, index=True),
        sa.Column("programme", sa.String(50), nullable=False),
        sa.Column("pathway", sa.String(40), nullable=False, index=True),
        sa.Column("areas", sa.JSON(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("eligibility", sa.JSON(), nullable=False),
        sa.Column("acknowledge_days", sa.Integer(), nullable=False),
        sa.Column("respond_days", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
    )
    op.create_table(
        "needs",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("referral_id", sa.Uuid(), nullable=False, index=True),
        sa.Column("crn", sa.String(20), nullable=False, index=True),
        sa.Column("area", sa.String(20), nullable=False),
        sa.Column("pathway", sa.String(40), nullable=False),
        sa.Column("complexity", sa.String(20), nullable=False),
        sa.Column("flags", sa.JSON(), nullable=False),
        sa.Column("sex", sa.String(10), nullable=False),
        sa.Column("age", sa.Integer(), nullable=False),
        sa.Column("supervision_status", sa.String(40), nullable=False),
        sa.Column("iom_member", sa.Boolean(), nullable=False),
        sa.Column("duty_to_refer", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("status_reason", sa.Text(), nullable=True),
        sa.Column("current_provider_referral_id", sa.Uuid(), nullable=True),
        sa.Column("submitted_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
    )
    op.create_table(
        "withdrawn_needs",
        sa.Column("need_id", sa.Uuid(), primary_key=True),
        sa.Column("referral_id", sa.Uuid(), nullable=False),
        sa.Column("reason_code", sa.String(40), nullable=False),
        sa.Column("withdrawn_at", TZ, nullable=False),
    )
    op.create_table(
        "routing_decisions",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("need_id", sa.Uuid(), nullable=False, index=True),
        sa.Column("crn", sa.String(20), nullable=False, index=True),
        sa.Column("decided_at", TZ, nullable=False),
        sa.Column("trigger", sa.String(20), nullable=False),
        sa.Column("chosen_service_code", sa.String(32), nullable=True),
        sa.Column("provider_referral_id", sa.Uuid(), nullable=True),
        sa.Column("unallocated_reason", sa.Text(), nullable=True),
        sa.Column("iom_member", sa.Boolean(), nullable=False),
        sa.Column("assessments", sa.JSON(), nullable=False),
    )
    op.create_table(
        "provider_referrals",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("referral_id", sa.Uuid(), nullable=False, index=True),
        sa.Column("need_id", sa.Uuid(), nullable=False, index=True),
        sa.Column("crn", sa.String(20), nullable=False, index=True),
        sa.Column("area", sa.String(20), nullable=False),
        sa.Column("pathway", sa.String(40), nullable=False),
        sa.Column("complexity", sa.String(20), nullable=False),
        sa.Column("flags", sa.JSON(), nullable=False),
        sa.Column("service_code", sa.String(32), nullable=False),
        sa.Column("provider_code", sa.String(40), nullable=False),
        sa.Column("programme", sa.String(50), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("allocated_at", TZ, nullable=False),
        sa.Column("acknowledge_by", TZ, nullable=False),
        sa.Column("respond_by", TZ, nullable=False),
        sa.Column("acknowledged_at", TZ, nullable=True),
        sa.Column("responded_at", TZ, nullable=True),
        sa.Column("decline_reason", sa.String(40), nullable=True),
        sa.Column("decline_comments", sa.Text(), nullable=True),
        sa.Column("started_at", TZ, nullable=True),
        sa.Column("completed_at", TZ, nullable=True),
        sa.Column("outcome", sa.String(40), nullable=True),
        sa.Column("outcome_notes", sa.Text(), nullable=True),
        sa.Column("withdrawn_at", TZ, nullable=True),
        sa.Column("withdrawal_reason", sa.String(40), nullable=True),
        sa.Column("acknowledge_missed_at", TZ, nullable=True),
        sa.Column("respond_missed_at", TZ, nullable=True),
        sa.Column("updated_at", TZ, nullable=False),
    )
    op.create_index(
        "ix_provider_referrals_inbox", "provider_referrals", ["provider_code", "allocated_at", "id"]
    )
    op.create_index(
        "ix_provider_referrals_open_deadlines",
        "provider_referrals",
        ["status", "acknowledge_by", "respond_by"],
    )
    op.create_table(
        "iom_members",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("crn", sa.String(20), nullable=False, index=True),
        sa.Column("area", sa.String(20), nullable=False),
        sa.Column("cohort", sa.String(20), nullable=True),
        sa.Column("member", sa.Boolean(), nullable=False),
        sa.Column("changed_at", TZ, nullable=False),
        sa.UniqueConstraint("crn", "area", name="uq_iom_members_crn_area"),
    )

    seed = load_seed_catalogue()
    now = datetime.now(UTC)
    op.bulk_insert(providers, [p.model_dump(mode="json") for p in seed.providers])
    op.bulk_insert(
        services, [s.model_dump(mode="json") | {"updated_at": now} for s in seed.services]
    )


def downgrade() -> None:
    for table in (
        "iom_members",
        "provider_referrals",
        "routing_decisions",
        "withdrawn_needs",
        "needs",
        "services",
        "providers",
    ):
        op.drop_table(table)
