"""The insights service: `create_app(settings)` wires the figures API and the consumers of all
four streams (durable, from the first event) that project every event into the figures."""

from __future__ import annotations

import uvicorn
from fastapi import FastAPI

from insights import api, consumers
from insights.config import InsightsSettings
from insights.web import routes as dashboard
from pathways_shared.runtime import build_app


def create_app(settings: InsightsSettings | None = None) -> FastAPI:
    settings = settings or InsightsSettings()
    app = build_app(
        settings,
        title="Pathways insights service",
        description=(
            "The partnership's figures: a projection of every event, aggregates only, small "
            "numbers suppressed"
        ),
        routers=[api.router],
        subscriptions=consumers.subscriptions(settings),
    )
    dashboard.install(app, settings)
    return app


def main() -> None:
    settings = InsightsSettings()
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_config=None)


if __name__ == "__main__":
    main()
