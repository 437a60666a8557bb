"""Structured JSON logs, the correlation id that follows a request onto the bus, and metrics.

The correlation id comes from the `X-Correlation-ID` request header (or is made up), is
written into each outbox row's headers, travels as a NATS header, and is bound again by the
consumer that handles the event, so one id threads through every service's logs.
"""

from __future__ import annotations

import logging
import sys
import uuid
from contextvars import ContextVar

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

CORRELATION_HEADER = "X-Correlation-ID"
correlation_id: ContextVar[str | None] = ContextVar("correlation_id", default=None)


def new_correlation_id() -> str:
    return uuid.uuid4().hex


def current_correlation_id() -> str | None:
    return correlation_id.get()


def _add_correlation(_logger, _name, event_dict):
    cid = correlation_id.get()
    if cid and "correlation_id" not in event_dict:
        event_dict["correlation_id"] = cid
    return event_dict


def configure_logging(service: str, level: str = "INFO", json_logs: bool = True) -> None:
    renderer = (
        structlog.processors.JSONRenderer()
        if json_logs
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            _add_correlation,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    structlog.contextvars.bind_contextvars(service=service)


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)


class Metrics:
    """Per-app registry, so several apps in one test process never clash."""

    def __init__(self, service: str) -> None:
        self.registry = CollectorRegistry()
        labels = {"service": service}
        self.http_requests = Counter(
            "pathways_http_requests_total", "HTTP requests", ["method", "route", "status"],
            registry=self.registry,
        )
        self.http_latency = Histogram(
            "pathways_http_request_seconds", "HTTP request latency", ["method", "route"],
            registry=self.registry,
        )
        self.outbox_published = Counter(
            "pathways_outbox_published_total", "Events published from the outbox",
            registry=self.registry,
        )
        self.outbox_failures = Counter(
            "pathways_outbox_publish_failures_total", "Failed outbox publish attempts",
            registry=self.registry,
        )
        self.outbox_pending = Gauge(
            "pathways_outbox_pending", "Unpublished outbox rows at the last relay pass",
            registry=self.registry,
        )
        self.outbox_lag = Gauge(
            "pathways_outbox_lag_seconds", "Age of the oldest unpublished outbox row",
            registry=self.registry,
        )
        self.publish_latency = Histogram(
            "pathways_outbox_publish_latency_seconds", "From outbox row creation to publish ack",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.consumer_messages = Counter(
            "pathways_consumer_messages_total", "Consumed messages by outcome",
            ["consumer", "outcome"], registry=self.registry,
        )
        # The broker as this service sees it (broker.sample_broker_health, every 15 s): streams
        # near their byte limit (alert at 80%, deploy/prometheus/pathways-alerts.yaml), and each
        # of this service's consumers falling behind or redelivering.
        self.stream_bytes = Gauge(
            "pathways_stream_bytes", "Bytes a stream holds", ["stream"], registry=self.registry)
        self.stream_max_bytes = Gauge(
            "pathways_stream_max_bytes", "A stream's byte limit (discard new)", ["stream"],
            registry=self.registry)
        self.stream_messages = Gauge(
            "pathways_stream_messages", "Messages a stream holds", ["stream"], registry=self.registry)
        self.consumer_pending = Gauge(
            "pathways_consumer_pending", "Messages not yet delivered to a durable consumer",
            ["consumer"], registry=self.registry)
        self.consumer_ack_pending = Gauge(
            "pathways_consumer_ack_pending", "Messages delivered and not yet acknowledged",
            ["consumer"], registry=self.registry)
        self.consumer_redelivered = Gauge(
            "pathways_consumer_redelivered", "Messages delivered more than once, not yet acknowledged",
            ["consumer"], registry=self.registry)
        self.info = Gauge("pathways_service_info", "Service info", ["service"], registry=self.registry)
        self.info.labels(**labels).set(1)
