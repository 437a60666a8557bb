"""Tables of the providers service. The infrastructure tables (outbox, processed events, dead
letters, access log) come from the shared package and are created by migration 0001."""

from __future__ import annotations

from pathways_shared.infra_models import AccessLog, DeadLetter, OutboxMessage, ProcessedEvent

__all__ = ["AccessLog", "DeadLetter", "OutboxMessage", "ProcessedEvent"]
