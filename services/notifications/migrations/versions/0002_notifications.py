"""Notifications: subscriptions, deliveries (the log), their attempts, need allocations.

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
        "subscriptions",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("event_types", sa.JSON(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("areas", sa.JSON(), nullable=True),
        sa.Column("cohort_events_only", sa.Boolean(), nullable=False),
        sa.Column("secret_sealed", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("created_by_roles", sa.String(200), nullable=False),
        _utc("created_at"),
        sa.Column("active", sa.Boolean(), nullable=False),
        _utc("disabled_at", True),
        sa.Column("disabled_reason", sa.Text(), nullable=True),
        _utc("deleted_at", True),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        _utc("failing_since", True),
        sa.Column("last_error", sa.Text(), nullable=True),
    )
    op.create_index("ix_subscriptions_active", "subscriptions", ["active"])
    op.create_table(
        "notifications",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("idempotency_key", sa.Uuid(), nullable=False, unique=True),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("event_type", sa.String(200), nullable=False),
        sa.Column("event_payload", sa.Text(), nullable=False),
        sa.Column("crn", sa.String(20), nullable=True),
        sa.Column("referral_id", sa.Uuid(), nullable=True),
        sa.Column("need_ids", sa.JSON(), nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("channel", sa.String(20), nullable=False),
        sa.Column("recipient_role", sa.String(40), nullable=False),
        sa.Column("recipient_key", sa.String(100), nullable=True),
        sa.Column("subscription_id", sa.Uuid(), sa.ForeignKey("subscriptions.id"), nullable=True),
        sa.Column("address", sa.String(320), nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        _utc("next_attempt_at", True),
        _utc("lease_expires_at", True),
        sa.Column("last_error", sa.Text(), nullable=True),
        _utc("delivered_at", True),
        _utc("created_at"),
        _utc("updated_at"),
    )
    op.create_index("ix_notifications_event_id", "notifications", ["event_id"])
    op.create_index("ix_notifications_crn", "notifications", ["crn"])
    op.create_index("ix_notifications_subscription_id", "notifications", ["subscription_id"])
    op.create_index("ix_notifications_due", "notifications", ["status", "next_attempt_at"])
    op.create_index("ix_notifications_referral", "notifications", ["referral_id", "created_at"])
    op.create_table(
        "delivery_attempts",
        sa.Column("id", BIGINT_PK, primary_key=True, autoincrement=True),
        sa.Column("notification_id", sa.Uuid(), sa.ForeignKey("notifications.id"), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        _utc("started_at"),
        _utc("finished_at", True),
        sa.Column("outcome", sa.String(20), nullable=True),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
    )
    op.create_index(
        "ix_delivery_attempts_notification_id", "delivery_attempts", ["notification_id"]
    )
    op.create_table(
        "need_allocations",
        sa.Column("need_id", sa.Uuid(), primary_key=True),
        sa.Column("referral_id", sa.Uuid(), nullable=False),
        sa.Column("provider_code", sa.String(50), nullable=False),
        sa.Column("service_code", sa.String(50), nullable=False),
        sa.Column("provider_referral_id", sa.Uuid(), nullable=False),
        _utc("updated_at"),
    )
    op.create_index("ix_need_allocations_referral_id", "need_allocations", ["referral_id"])


def downgrade() -> None:
    op.drop_table("need_allocations")
    op.drop_table("delivery_attempts")
    op.drop_table("notifications")
    op.drop_table("subscriptions")
