"""The notifications service: `create_app(settings)` wires routes, relay, consumers and workers."""

from __future__ import annotations

import uvicorn
from fastapi import FastAPI
from pathways_shared.runtime import build_app

from notifications import api, consumers, erasure
from notifications.config import NotificationsSettings
from notifications.worker import delivery_worker


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
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_config=None)


if __name__ == "__main__":
    main()
