"""The cohorts service: `create_app(settings)` wires routes, relay, consumers and workers."""

from __future__ import annotations

from fastapi import FastAPI

from cohorts import api, consumers, erasure
from cohorts.config import CohortsSettings
from cohorts.scheduler import review_scheduler
from pathways_shared.runtime import build_app
from pathways_shared.serving import serve


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
    serve(create_app(settings), settings)


if __name__ == "__main__":
    main()
