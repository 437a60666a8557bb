"""The cohorts service: `create_app(settings)` wires routes, relay, consumers and workers."""

from __future__ import annotations

import uvicorn
from fastapi import FastAPI

from cohorts import api, consumers, erasure
from cohorts.config import CohortsSettings
from cohorts.scheduler import review_scheduler
from pathways_shared.runtime import build_app


def create_app(settings: CohortsSettings | None = None) -> FastAPI:
    settings = settings or CohortsSettings()
    return build_app(
        settings,
        title="Pathways cohorts service",
        description="Cohorts: IOM fixed, flex and free cohort selection",
        routers=[api.router],
        subscriptions=consumers.subscriptions(settings),
        workers=[review_scheduler],
        erasers=erasure.ERASERS,
    )


def main() -> None:
    settings = CohortsSettings()
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_config=None)


if __name__ == "__main__":
    main()
