"""`pathways`: the command line for local use.

    pathways token --role probation [--provider NACRO] [--areas E08000029,E08000025]
    pathways migrate referrals [--url sqlite+aiosqlite:///.data/referrals.db]
    pathways events tail referrals.> [--durable my-tool]
    pathways streams ensure [--replicas 3] [--max-bytes 4Gi] [--force]   (NATS_URL: pathways-admin)
    pathways outbox resend --service referrals --since 2026-12-07T01:00:00Z   (<SERVICE>_DATABASE_URL)
    pathways erase --service referrals [--dry-run]   (<SERVICE>_DATABASE_URL)
    pathways demo
    pathways sar X123456
    pathways offences import extract.csv [--cohorts-url http://127.0.0.1:8003]
    pathways insights rebuild

The local HS256 secret comes from PATHWAYS_JWT_SECRET, or `.data/jwt-secret` as written by
`make run`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from pathways_shared.auth import mint_token

ROOT = Path.cwd()
SECRET_FILE = ROOT / ".data" / "jwt-secret"


def local_secret() -> str:
    secret = os.environ.get("PATHWAYS_JWT_SECRET")
    if secret:
        return secret
    if SECRET_FILE.exists():
        return SECRET_FILE.read_text().strip()
    sys.exit("no PATHWAYS_JWT_SECRET and no .data/jwt-secret: run `make run` first, or export the secret")


def cmd_token(args: argparse.Namespace) -> None:
    areas = [a for a in args.areas.split(",") if a] if args.areas else None
    roles = [r for r in args.role.split(",") if r]
    print(
        mint_token(
            local_secret(), sub=args.sub or f"local-{roles[0]}", roles=roles,
            provider=args.provider, areas=areas, ttl_seconds=args.ttl,
        )
    )


def cmd_migrate(args: argparse.Namespace) -> None:
    from pathways_shared.migrations import upgrade

    root = ROOT / "services" / args.service
    if not (root / "alembic.ini").exists():
        sys.exit(f"no such service: {args.service}")
    url = args.url or os.environ.get(f"{args.service.upper()}_DATABASE_URL") or (
        f"sqlite+aiosqlite:///{ROOT / '.data' / (args.service + '.db')}"
    )
    upgrade(root, url)
    print(f"{args.service}: migrated {url.split('@')[-1]}")


async def _tail(subject: str, durable: str | None, url: str) -> None:
    import nats

    from pathways_shared.events import Event

    nc = await nats.connect(url)
    js = nc.jetstream()
    sub = await js.subscribe(subject, durable=durable, manual_ack=True)
    print(f"listening on {subject} at {url} (durable: {durable or 'none'}); Ctrl-C to stop", file=sys.stderr)
    try:
        async for msg in sub.messages:
            try:
                event = Event.from_json(msg.data)
                print(f"{event.occurred_at.isoformat()} {event.event_type} {event.crn or '-'} "
                      f"{event.additional_information}", flush=True)
            except ValueError:
                print(f"(unparseable) {msg.subject}: {msg.data[:200]!r}", flush=True)
            await msg.ack()
    finally:
        await nc.close()


def cmd_events_tail(args: argparse.Namespace) -> None:
    try:
        asyncio.run(_tail(args.subject, args.durable, args.nats_url))
    except KeyboardInterrupt:
        pass


def cmd_outbox_resend(args: argparse.Namespace) -> None:
    from datetime import UTC, datetime

    from pathways_shared.db import make_engine, make_sessionmaker
    from pathways_shared.outbox import mark_for_resend

    url = args.url or os.environ.get(f"{args.service.upper()}_DATABASE_URL")
    if not url:
        sys.exit(f"set {args.service.upper()}_DATABASE_URL or give --url")
    since = datetime.fromisoformat(args.since)
    if since.tzinfo is None:
        sys.exit("--since needs a time zone, e.g. 2026-12-07T01:00:00Z")
    tag = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")

    async def resend() -> int:
        engine = make_engine(url)
        try:
            return await mark_for_resend(make_sessionmaker(engine), since, tag=tag)
        finally:
            await engine.dispose()

    count = asyncio.run(resend())
    print(f"{args.service}: {count} outbox rows since {since.isoformat()} queued to be sent again "
          f"(resend {tag}); the service's relay sends them in order")


def cmd_streams_ensure(args: argparse.Namespace) -> None:
    import nats.errors

    from pathways_shared.broker import (
        ReplicasWouldDrop,
        ensure_deployment_streams,
        parse_bytes,
        redact,
    )

    if not args.nats_url:
        sys.exit("set NATS_URL (the pathways-admin user) or give --nats-url")
    try:
        total = parse_bytes(args.max_bytes)
    except ValueError as bad:
        sys.exit(str(bad))
    print(f"streams at {redact(args.nats_url)}", flush=True)
    try:
        done = asyncio.run(ensure_deployment_streams(
            args.nats_url, args.replicas, total_max_bytes=total, force=args.force))
    except ReplicasWouldDrop as refused:
        sys.exit(f"refused: {refused}")
    except (TimeoutError, nats.errors.TimeoutError, nats.errors.NoServersError) as silent:
        sys.exit(f"NATS did not answer ({type(silent).__name__}): is JetStream up, with a leader elected? "
                 "Nothing was changed that the next run will not finish; run it again.")
    for line in done:
        print(line, flush=True)


def cmd_demo(args: argparse.Namespace) -> None:
    from pathways_shared.demo import Demo, Endpoints

    endpoints = Endpoints(
        referrals=os.environ.get("PATHWAYS_REFERRALS_URL", Endpoints.referrals),
        providers=os.environ.get("PATHWAYS_PROVIDERS_URL", Endpoints.providers),
        cohorts=os.environ.get("PATHWAYS_COHORTS_URL", Endpoints.cohorts),
        notifications=os.environ.get("PATHWAYS_NOTIFICATIONS_URL", Endpoints.notifications),
        insights=os.environ.get("PATHWAYS_INSIGHTS_URL", Endpoints.insights),
    )
    prefix = os.environ.get("PATHWAYS_SUBJECT_PREFIX", "")
    asyncio.run(Demo(local_secret(), endpoints, args.nats_url, prefix).run())


def cmd_offences_import(args: argparse.Namespace) -> None:
    import time

    import httpx

    path = Path(args.file)
    if not path.is_file():
        sys.exit(f"no such file: {path}")
    token = mint_token(local_secret(), sub="offences-import", roles=["iom_panel"])
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "text/csv"}
    with httpx.Client(base_url=args.cohorts_url, timeout=300, headers=headers) as client:
        r = client.post("/offences:import", params={"wait": "false"}, content=path.read_bytes())
        if r.status_code not in (200, 202):
            sys.exit(f"import refused ({r.status_code}): {r.text[:500]}")
        job = r.json()
        while job.get("status") in ("running", "pending", "queued"):
            time.sleep(0.5)
            job = client.get(f"/offence-imports/{job['id']}").json()
            total, done = job.get("total_rows") or 0, job.get("processed_rows") or 0
            width = 40
            filled = int(width * done / total) if total else 0
            print(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} rows", end="", flush=True)
        print()
    print(f"{job.get('status')}: {job.get('loaded', 0)} loaded, {job.get('duplicates', 0)} duplicates, "
          f"{job.get('rejected', 0)} rejected")
    for error in (job.get("errors") or [])[:20]:
        print(f"  line {error.get('line')}: {error.get('message') or error.get('reason')}")
    if job.get("failure"):
        sys.exit(f"the import failed: {job['failure']}")


SERVICE_URLS = {
    "referrals": ("PATHWAYS_REFERRALS_URL", "http://127.0.0.1:8001"),
    "providers": ("PATHWAYS_PROVIDERS_URL", "http://127.0.0.1:8002"),
    "cohorts": ("PATHWAYS_COHORTS_URL", "http://127.0.0.1:8003"),
    "notifications": ("PATHWAYS_NOTIFICATIONS_URL", "http://127.0.0.1:8004"),
    "insights": ("PATHWAYS_INSIGHTS_URL", "http://127.0.0.1:8005"),
}


def cmd_sar(args: argparse.Namespace) -> None:
    """One subject access request answered from all five services, as one JSON document."""
    import json

    import httpx

    token = mint_token(local_secret(), sub=args.requested_by, roles=["admin"])
    answer: dict[str, object] = {"crn": args.crn, "services": {}}
    for service, (variable, default) in SERVICE_URLS.items():
        url = os.environ.get(variable, default)
        try:
            r = httpx.get(f"{url}/subject-access-requests", params={"crn": args.crn},
                          headers={"Authorization": f"Bearer {token}"}, timeout=30)
            answer["services"][service] = r.json() if r.status_code == 200 else {
                "error": r.status_code, "detail": r.text[:500]}
        except httpx.HTTPError as exc:
            answer["services"][service] = {"error": "unreachable", "detail": str(exc)}
    print(json.dumps(answer, indent=2, default=str))
    if any(isinstance(v, dict) and "error" in v for v in answer["services"].values()):
        sys.exit("some services could not answer: the response above is incomplete")


def cmd_erase(args: argparse.Namespace) -> None:
    """Erase now the personal data whose period has passed (what the service's retention task
    does each interval), or with --dry-run count it. The service's own erasers and settings
    (`<SERVICE>_DATABASE_URL`, PATHWAYS_ERASE_PERSONAL_DATA_AFTER_DAYS, ...) are imported by
    name, so the shared package does not depend on the services."""
    import importlib
    import inspect

    from pathways_shared.clock import utc_now
    from pathways_shared.config import ServiceSettings
    from pathways_shared.db import make_engine, make_sessionmaker
    from pathways_shared.erasure import erase_personal_data

    os.environ.setdefault("PATHWAYS_JWT_SECRET", local_secret())
    if args.url:
        os.environ[f"{args.service.upper()}_DATABASE_URL"] = args.url
    config = importlib.import_module(f"{args.service}.config")
    [settings_class] = [
        c for _, c in inspect.getmembers(config, inspect.isclass)
        if issubclass(c, ServiceSettings) and c is not ServiceSettings
        and c.__module__ == config.__name__
    ]
    settings = settings_class()
    erasers = importlib.import_module(f"{args.service}.erasure").ERASERS

    async def erase() -> dict[str, int]:
        engine = make_engine(settings.database_url)
        try:
            return await erase_personal_data(
                make_sessionmaker(engine), erasers, settings, utc_now(), dry_run=args.dry_run)
        finally:
            await engine.dispose()

    done = asyncio.run(erase())
    verb = "due for erasure (dry run, nothing changed)" if args.dry_run else "erased"
    for record_type, count in done.items():
        print(f"{args.service}: {count} {record_type} records {verb} "
              f"(ended more than {settings.erase_personal_data_after_days} days ago)")


def cmd_insights_rebuild(args: argparse.Namespace) -> None:
    """Empty the insights projection and replay the streams (the service's own code does it:
    imported by name here, so the shared package does not depend on the service)."""
    import importlib

    os.environ.setdefault("PATHWAYS_JWT_SECRET", local_secret())
    if args.url:
        os.environ["INSIGHTS_DATABASE_URL"] = args.url
    os.environ.setdefault(
        "INSIGHTS_DATABASE_URL", f"sqlite+aiosqlite:///{ROOT / '.data' / 'insights.db'}"
    )
    importlib.import_module("insights.rebuild").main()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="pathways", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    token = sub.add_parser("token", help="mint a local HS256 token")
    token.add_argument("--role", required=True, help="role, or several separated by commas")
    token.add_argument("--provider", help="provider code, for provider users")
    token.add_argument("--areas", help="GSS codes separated by commas (absent: all areas)")
    token.add_argument("--sub", help="the subject (user or client id)")
    token.add_argument("--ttl", type=int, default=8 * 3600, help="lifetime in seconds")
    token.set_defaults(func=cmd_token)

    migrate = sub.add_parser("migrate", help="migrate one service's database")
    migrate.add_argument("service", choices=["referrals", "providers", "cohorts", "notifications", "insights"])
    migrate.add_argument("--url", help="database URL (default: <SERVICE>_DATABASE_URL or .data/<service>.db)")
    migrate.set_defaults(func=cmd_migrate)

    events = sub.add_parser("events", help="watch the event streams")
    events_sub = events.add_subparsers(dest="events_command", required=True)
    tail = events_sub.add_parser("tail", help="print events on a subject as they arrive")
    tail.add_argument("subject", help="e.g. 'cohorts.member.*' or 'providers.>'")
    tail.add_argument("--durable", help="a durable name, to resume where you left off")
    tail.add_argument("--nats-url", default=os.environ.get("NATS_URL", "nats://127.0.0.1:4223"))
    tail.set_defaults(func=cmd_events_tail)

    streams = sub.add_parser("streams", help="the JetStream streams")
    streams_sub = streams.add_subparsers(dest="streams_command", required=True)
    ensure = streams_sub.add_parser(
        "ensure", help="create or update every stream and the police consumer (once per roll-out)"
    )
    ensure.add_argument("--nats-url", default=os.environ.get("NATS_URL"))
    ensure.add_argument(
        "--replicas", type=int, default=int(os.environ.get("PATHWAYS_STREAM_REPLICAS", "3")),
        help="copies of each stream (default: PATHWAYS_STREAM_REPLICAS, else 3)",
    )
    ensure.add_argument(
        "--max-bytes", default=os.environ.get("PATHWAYS_STREAMS_MAX_BYTES", "4Gi"),
        help="bytes all streams may hold together, shared out per stream; at most 80%% of the "
             "NATS volume (default: PATHWAYS_STREAMS_MAX_BYTES, else 4Gi)",
    )
    ensure.add_argument(
        "--force", action="store_true", help="allow lowering a stream's replicas",
    )
    ensure.set_defaults(func=cmd_streams_ensure)

    outbox = sub.add_parser("outbox", help="a service's outbox")
    outbox_sub = outbox.add_subparsers(dest="outbox_command", required=True)
    resend = outbox_sub.add_parser(
        "resend", help="after the broker lost messages: send again what the outbox holds from a time")
    resend.add_argument("--service", required=True,
                        choices=["referrals", "providers", "cohorts", "notifications"])
    resend.add_argument("--since", required=True, help="ISO time with zone, e.g. 2026-12-07T01:00:00Z")
    resend.add_argument("--url", help="the service's database (default: <SERVICE>_DATABASE_URL)")
    resend.set_defaults(func=cmd_outbox_resend)

    erase = sub.add_parser(
        "erase", help="erase personal data whose retention period has passed (s.62 logged)")
    erase.add_argument("--service", required=True,
                       choices=["referrals", "providers", "cohorts", "notifications"])
    erase.add_argument("--dry-run", action="store_true", help="count what is due, change nothing")
    erase.add_argument("--url", help="the service's database (default: <SERVICE>_DATABASE_URL)")
    erase.set_defaults(func=cmd_erase)

    demo = sub.add_parser("demo", help="submit sample referrals to the running system and narrate")
    demo.add_argument("--nats-url", default=os.environ.get("NATS_URL", "nats://127.0.0.1:4223"))
    demo.set_defaults(func=cmd_demo)

    offences = sub.add_parser("offences", help="police offence extracts")
    offences_sub = offences.add_subparsers(dest="offences_command", required=True)
    load = offences_sub.add_parser("import", help="load a CSV extract (crn,offence_date,category,description)")
    load.add_argument("file")
    load.add_argument("--cohorts-url", default=os.environ.get("PATHWAYS_COHORTS_URL", "http://127.0.0.1:8003"))
    load.set_defaults(func=cmd_offences_import)

    insights = sub.add_parser("insights", help="the insights service's projection")
    insights_sub = insights.add_subparsers(dest="insights_command", required=True)
    rebuild = insights_sub.add_parser("rebuild", help="empty the projection and replay every stream")
    rebuild.add_argument("--url", help="database URL (default: INSIGHTS_DATABASE_URL or .data/insights.db)")
    rebuild.set_defaults(func=cmd_insights_rebuild)

    sar = sub.add_parser("sar", help="answer a subject access request from all five services")
    sar.add_argument("crn")
    sar.add_argument("--requested-by", default="dpo", help="who asks (recorded in each access log)")
    sar.set_defaults(func=cmd_sar)

    asyncapi = sub.add_parser("asyncapi", help="print the AsyncAPI 3.0 document of every event")
    asyncapi.set_defaults(func=lambda _args: print(__import__("pathways_shared.asyncapi").asyncapi.render(), end=""))

    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
