"""The providers service: `create_app(settings)` wires routes, relay, consumers and workers."""

from __future__ import annotations

from fastapi import FastAPI

from pathways_shared.runtime import Runtime, build_app
from pathways_shared.serving import serve
from providers import api, consumers, erasure
from providers.config import ProvidersSettings
from providers.domain.working_days import WorkingCalendar
from providers.referrals_client import ReferralsClient
from providers.scheduler import deadline_worker


def create_app(settings: ProvidersSettings | None = None) -> FastAPI:
    settings = settings or ProvidersSettings()
    calendar = WorkingCalendar()

    async def on_startup(runtime: Runtime) -> None:
        runtime.extras["calendar"] = calendar
        runtime.extras["referrals_client"] = ReferralsClient(
            settings,
            settings.referrals_url,
            timeout=settings.referrals_timeout_seconds,
            retries=settings.referrals_retries,
        )

    async def on_shutdown(runtime: Runtime) -> None:
        client = runtime.extras.get("referrals_client")
        if client is not None:
            await client.close()

    return build_app(
        settings,
        title="Pathways providers service",
        description="Providers: the catalogue, routing every need, and the provider's API",
        routers=[api.router],
        subscriptions=consumers.subscriptions(settings.base_url, calendar),
        workers=[deadline_worker(calendar, settings.deadline_poll_seconds)],
        erasers=erasure.ERASERS,
        on_startup=on_startup,
        on_shutdown=on_shutdown,
    )


def main() -> None:
    settings = ProvidersSettings()
    serve(create_app(settings), settings)


if __name__ == "__main__":
    main()
