"""The referrals service: `create_app(settings)` wires routes, relay, consumers and workers."""

from __future__ import annotations

from fastapi import FastAPI

from pathways_shared.runtime import build_app
from pathways_shared.serving import serve
from referrals import api, consumers, erasure
from referrals.config import ReferralsSettings


def create_app(settings: ReferralsSettings | None = None) -> FastAPI:
    settings = settings or ReferralsSettings()
    return build_app(
        settings,
        title="Pathways referrals service",
        description="Referrals: probation submits referrals and follows every need to its end",
        routers=[api.router],
        subscriptions=consumers.subscriptions(),
        erasers=erasure.ERASERS,
        fast_paths={("POST", "/referrals"): api.submit_referral_fast},
    )


def main() -> None:
    settings = ReferralsSettings()
    serve(create_app(settings), settings)


if __name__ == "__main__":
    main()
