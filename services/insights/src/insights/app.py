"""The insights service: `create_app(settings)` wires the figures API and the consumers of all
four streams (durable, from the first event) that project every event into the figures."""

from __future__ import annotations

from fastapi import FastAPI

from insights import api, consumers
from insights.config import InsightsSettings
from insights.web import routes as dashboard
from pathways_shared.runtime import build_app
from pathways_shared.serving import serve


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
    serve(create_app(settings), settings)


if __name__ == "__main__":
    main()
