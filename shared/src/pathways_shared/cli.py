"""`pathways`: the command line for local use.

    pathways token --role probation [--provider NACRO] [--areas E08000029,E08000025]
    pathways migrate referrals [--url sqlite+aiosqlite:///.data/referrals.db]
    pathways events tail referrals.> [--durable my-tool]

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
    migrate.add_argument("service", choices=["referrals", "providers", "cohorts", "notifications"])
    migrate.add_argument("--url", help="database URL (default: <SERVICE>_DATABASE_URL or .data/<service>.db)")
    migrate.set_defaults(func=cmd_migrate)

    events = sub.add_parser("events", help="watch the event streams")
    events_sub = events.add_subparsers(dest="events_command", required=True)
    tail = events_sub.add_parser("tail", help="print events on a subject as they arrive")
    tail.add_argument("subject", help="e.g. 'cohorts.member.*' or 'providers.>'")
    tail.add_argument("--durable", help="a durable name, to resume where you left off")
    tail.add_argument("--nats-url", default=os.environ.get("NATS_URL", "nats://127.0.0.1:4222"))
    tail.set_defaults(func=cmd_events_tail)

    asyncapi = sub.add_parser("asyncapi", help="print the AsyncAPI 3.0 document of every event")
    asyncapi.set_defaults(func=lambda _args: print(__import__("pathways_shared.asyncapi").asyncapi.render(), end=""))

    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
