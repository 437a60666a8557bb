"""The providers service: `create_app(settings)` wires routes, relay, consumers and workers."""

from __future__ import annotations

import uvicorn
from fastapi import FastAPI

from pathways_shared.runtime import build_app

from providers import api, consumers
from providers.config import ProvidersSettings


def create_app(settings: ProvidersSettings | None = None) -> FastAPI:
    settings = settings or ProvidersSettings()
    return build_app(
        settings,
        title="Pathways providers service",
        description="Providers: the catalogue, routing every need, and the provider's API",
        routers=[api.router],
        subscriptions=consumers.subscriptions(),
    )


def main() -> None:
    settings = ProvidersSettings()
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_config=None)


if __name__ == "__main__":
    main()
