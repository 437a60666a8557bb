"""The wire: email over SMTP (aiosmtplib) and webhooks over HTTP (httpx).

Each send answers an ``AttemptOutcome`` and never raises for a failure of the far end, so
the delivery worker records every attempt the same way. Nothing here touches the database.
"""

from __future__ import annotations

import asyncio
import email.utils
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from urllib.parse import urlsplit, urlunsplit

import aiosmtplib
import httpx

from notifications.delivery import (
    AttemptOutcome,
    classify_http_status,
    classify_smtp_reply,
    permanent_failure,
    transport_failure,
)
from notifications.errors import UnsafeSubscriberUrl
from notifications.subscriptions import check_resolved_addresses, parse_subscriber_url
from notifications.templates import EmailContent

USER_AGENT = "Pathways-Webhooks/1.0"


# --------------------------------------------------------------------------- email


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    sender: str
    username: str | None = None
    password: str | None = None
    use_tls: bool = False
    start_tls: bool | None = None  # None: upgrade when the server offers it
    timeout: float = 30.0


def build_email(
    smtp: SmtpSettings, *, to: str, content: EmailContent, message_id: str, sent_at: datetime
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = smtp.sender
    message["To"] = to
    message["Subject"] = content.subject
    # The same Message-ID on a resend after a crash lets mail systems drop the copy.
    message["Message-ID"] = message_id
    message["Date"] = email.utils.format_datetime(sent_at)
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(content.body)
    return message


async def send_email(smtp: SmtpSettings, message: EmailMessage) -> AttemptOutcome:
    try:
        await aiosmtplib.send(
            message,
            hostname=smtp.host,
            port=smtp.port,
            username=smtp.username,
            password=smtp.password,
            use_tls=smtp.use_tls,
            start_tls=smtp.start_tls,
            timeout=smtp.timeout,
        )
    except aiosmtplib.SMTPRecipientsRefused as exc:
        refusals = list(exc.recipients)
        if refusals:
            return classify_smtp_reply(refusals[0].code, "recipient refused")
        return permanent_failure("recipient refused")
    except aiosmtplib.SMTPResponseException as exc:
        return classify_smtp_reply(exc.code, exc.message[:200])
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        return transport_failure(f"SMTP unreachable: {type(exc).__name__}: {exc}"[:300])
    return classify_smtp_reply(250, "accepted")


# --------------------------------------------------------------------------- webhooks

Resolver = Callable[[str, int], Awaitable[list[str]]]


async def resolve_host(host: str, port: int) -> list[str]:
    """Every address a host name resolves to (an IP literal resolves to itself)."""
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True)
class Destination:
    """Where to connect: the checked address, and the URL and host it stands for."""

    url: str
    pinned_url: str
    host: str
    scheme: str


async def check_destination(
    url: str, *, allow_private: bool, resolver: Resolver = resolve_host
) -> Destination:
    """Parse and resolve a subscriber URL and check every address (``UnsafeSubscriberUrl``).

    The connection then goes to the checked address (``pinned_url``), so a second DNS answer
    cannot send it elsewhere (DNS rebinding)."""
    parsed = parse_subscriber_url(url, allow_private=allow_private)
    try:
        addresses = await resolver(parsed.host, parsed.port)
    except OSError as exc:
        raise UnsafeSubscriberUrl(f"the URL's host does not resolve ({exc})", field="url") from exc
    checked = check_resolved_addresses(addresses, allow_private=allow_private)
    # IPv4 first: `localhost` often resolves to ::1 first while servers listen on 127.0.0.1.
    address = next((a for a in checked if ":" not in a), checked[0])
    netloc_host = f"[{address}]" if ":" in address else address
    parts = urlsplit(url)
    pinned = urlunsplit(
        (parts.scheme, f"{netloc_host}:{parsed.port}", parts.path or "/", parts.query, "")
    )
    return Destination(url=url, pinned_url=pinned, host=parsed.host, scheme=parsed.scheme)


def make_http_client(timeout_seconds: float) -> httpx.AsyncClient:
    """Outbound HTTP: bounded timeouts, no redirects followed, no proxies from the env."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout_seconds, connect=min(5.0, timeout_seconds)),
        follow_redirects=False,
        trust_env=False,
    )


async def post_webhook(
    client: httpx.AsyncClient,
    destination: Destination,
    headers: Mapping[str, str],
    body: bytes,
) -> AttemptOutcome:
    host_header = urlsplit(destination.url).netloc.rsplit("@", 1)[-1]
    extensions = {"sni_hostname": destination.host} if destination.scheme == "https" else {}
    try:
        response = await client.post(
            destination.pinned_url,
            content=body,
            headers={
                **headers,
                "content-type": "application/json",
                "user-agent": USER_AGENT,
                "host": host_header,
            },
            extensions=extensions,
        )
    except httpx.TimeoutException:
        return transport_failure("timed out")
    except httpx.HTTPError as exc:
        return transport_failure(f"{type(exc).__name__}: {exc}"[:300])
    return classify_http_status(response.status_code)
