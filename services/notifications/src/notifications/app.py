"""The notifications service: `create_app(settings)` wires routes, relay, consumers and workers."""

from __future__ import annotations

from fastapi import FastAPI

from notifications import api, consumers, erasure
from notifications.config import NotificationsSettings
from notifications.scheduler import delivery_worker
from pathways_shared.runtime import build_app
from pathways_shared.serving import serve


def create_app(settings: NotificationsSettings | None = None) -> FastAPI:
    settings = settings or NotificationsSettings()
    return build_app(
        settings,
        title="Pathways notifications service",
        description="Notifications: email and signed webhooks, with a delivery log",
        routers=[api.router],
        subscriptions=consumers.subscriptions(),
        workers=[delivery_worker],
        erasers=erasure.ERASERS,
    )


def main() -> None:
    settings = NotificationsSettings()
    serve(create_app(settings), settings)


if __name__ == "__main__":
    main()
