"""The referrals service: `create_app(settings)` wires routes, relay, consumers and workers."""

from __future__ import annotations

import asyncio

import uvicorn
from fastapi import FastAPI

from pathways_shared.runtime import Runtime, build_app

from referrals import api, consumers
from referrals.config import ReferralsSettings


STOP_TIMEOUT_SECONDS = 10.0


async def stop_workers(runtime: Runtime) -> None:
    """Cancel the relay and consumers, and cancel again until they have stopped.

    On Python 3.11 `asyncio.wait_for` can swallow a cancellation that lands as its inner wait
    completes (fixed in 3.12). The shared relay waits with it between polls, so one cancel()
    may be lost and shutdown would then wait on that task forever.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STOP_TIMEOUT_SECONDS
    pending = [task for task in runtime.tasks if not task.done()]
    while pending and loop.time() < deadline:
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=0.2)
        pending = [task for task in pending if not task.done()]


def create_app(settings: ReferralsSettings | None = None) -> FastAPI:
    settings = settings or ReferralsSettings()
    return build_app(
        settings,
        title="Pathways referrals service",
        description="Referrals: probation submits referrals and follows every need to its end",
        routers=[api.router],
        subscriptions=consumers.subscriptions(),
        on_shutdown=stop_workers,
    )


def main() -> None:
    settings = ReferralsSettings()
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_config=None)


if __name__ == "__main__":
    main()
