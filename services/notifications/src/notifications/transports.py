"""The wire: email over SMTP (aiosmtplib) and webhooks over HTTP (httpx).

Each send answers an ``AttemptOutcome`` and never raises for a failure of the far end, so
the delivery worker records every attempt the same way. Nothing here touches the database.
"""

from __future__ import annotations

import asyncio
import email.header
import email.quoprimime
import email.utils
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Self
from urllib.parse import urlsplit, urlunsplit

import aiosmtplib
import httpx

from notifications.domain.delivery import (
    AttemptOutcome,
    classify_http_status,
    classify_smtp_reply,
    permanent_failure,
    transport_failure,
)
from notifications.domain.subscriptions import check_resolved_addresses, parse_subscriber_url
from notifications.domain.templates import EmailContent
from notifications.errors import UnsafeSubscriberUrl

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
    # The name given in EHLO; None: the machine's FQDN, looked up when the first session opens.
    local_hostname: str | None = None


@dataclass(frozen=True)
class OutgoingEmail:
    """One message as it goes on the wire: the envelope and the bytes of the message."""

    sender: str
    recipient: str
    data: bytes
    utf8: bool = False  # an address is not ASCII: the server must offer SMTPUTF8


def build_email(
    smtp: SmtpSettings, *, to: str, content: EmailContent, message_id: str, sent_at: datetime
) -> OutgoingEmail:
    """A plain-text UTF-8 message, written directly rather than through ``EmailMessage``,
    whose header objects re-parse every value (most of the CPU of a send). Non-ASCII in the
    subject or the sender's name is RFC 2047 encoded; a body that is not short-lined ASCII
    goes quoted-printable, which any server takes."""
    sender = _envelope_address(smtp.sender)
    utf8 = not (sender.isascii() and to.isascii())
    body_lines = content.body.encode().splitlines()
    if all(len(line) <= MAX_LINE and line.isascii() for line in body_lines):
        transfer_encoding = "7bit"
        body = b"\r\n".join(body_lines) + b"\r\n"
    else:
        transfer_encoding = "quoted-printable"
        text = (b"\n".join(body_lines) + b"\n").decode("latin-1")
        body = email.quoprimime.body_encode(text, MAX_LINE - 2, eol="\r\n").encode("ascii")
    headers = (
        ("From", smtp.sender if utf8 else _ascii_mailbox(smtp.sender)),
        ("To", to),
        ("Subject", content.subject),
        # The same Message-ID on a resend after a crash lets mail systems drop the copy.
        ("Message-ID", message_id),
        ("Date", email.utils.format_datetime(sent_at)),
        ("Auto-Submitted", "auto-generated"),
        ("MIME-Version", "1.0"),
        ("Content-Type", 'text/plain; charset="utf-8"'),
        ("Content-Transfer-Encoding", transfer_encoding),
    )
    head = "".join(_header_line(name, value, utf8=utf8) for name, value in headers)
    return OutgoingEmail(
        sender=sender,
        recipient=to,
        data=head.encode() + b"\r\n" + body,
        utf8=utf8,
    )


MAX_LINE = 78


def _header_line(name: str, value: str, *, utf8: bool) -> str:
    if "\r" in value or "\n" in value:
        raise ValueError(f"the {name} header may not contain a line break")
    too_long = len(name) + len(value) + 2 > MAX_LINE
    if name == "Subject" and not utf8 and (too_long or not value.isascii()):
        charset = "us-ascii" if value.isascii() else "utf-8"
        value = email.header.Header(value, charset, MAX_LINE, header_name=name).encode(
            linesep="\r\n"
        )
    elif too_long:  # an address or an identifier: folded whole onto a line of its own
        return f"{name}:\r\n {value}\r\n"
    return f"{name}: {value}\r\n"


def _ascii_mailbox(mailbox: str) -> str:
    if mailbox.isascii():
        return mailbox
    name, address = email.utils.parseaddr(mailbox)
    return email.utils.formataddr((name, address), charset="utf-8")


def _envelope_address(mailbox: str) -> str:
    return email.utils.parseaddr(mailbox)[1] or mailbox.strip()


class SmtpSession:
    """The emails of one worker round over one SMTP connection, opened at the first message,
    reopened when it breaks, closed (QUIT) at the end of the round.

    Messages go one at a time. Each is given the outcome it would have had on a connection
    of its own: a reply (4xx, 5xx, refused recipient) is its own; a connection that turns
    out to have dropped, or is closed by the server (421), is reopened and the message sent
    once more on the fresh one. If the server cannot be reached at all, the rest of the
    round's messages get the same outcome without trying again. A message whose turn comes
    after ``start_by`` (``loop.time()``) is not started, so a slow server cannot keep
    messages in flight past their lease."""

    def __init__(self, smtp: SmtpSettings, *, start_by: float | None = None) -> None:
        self.smtp = smtp
        self.start_by = start_by
        self.connections_opened = 0
        self._client: aiosmtplib.SMTP | None = None
        self._unreachable: AttemptOutcome | None = None
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        if client.is_connected:
            try:
                await client.quit()
            except (aiosmtplib.SMTPException, OSError, TimeoutError):
                pass
        client.close()

    async def send(self, message: OutgoingEmail) -> AttemptOutcome:
        async with self._lock:
            if self._unreachable is not None:
                return self._unreachable
            if self.start_by is not None and asyncio.get_running_loop().time() > self.start_by:
                return transport_failure(
                    "not sent: the mail server was too slow to reach this message in time"
                )
            reused = self._client is not None and self._client.is_connected
            outcome, connection_broke = await self._send_once(message)
            if reused and connection_broke:
                outcome, _ = await self._send_once(message)
            return outcome

    async def _send_once(self, message: OutgoingEmail) -> tuple[AttemptOutcome, bool]:
        """The outcome, and whether the connection broke under it."""
        client = self._client
        if client is None or not client.is_connected:
            try:
                client = await self._connect()
            except aiosmtplib.SMTPResponseException as exc:
                self._unreachable = classify_smtp_reply(exc.code, exc.message[:200])
                return self._unreachable, True
            except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
                self._unreachable = _no_answer(exc)
                return self._unreachable, True
        try:
            await client.sendmail(
                message.sender,
                [message.recipient],
                message.data,
                mail_options=["SMTPUTF8"] if message.utf8 else None,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            refusals = list(exc.recipients)
            if refusals:
                return classify_smtp_reply(refusals[0].code, "recipient refused"), False
            return permanent_failure("recipient refused"), False
        except aiosmtplib.SMTPResponseException as exc:
            closing = exc.code == SERVICE_CLOSING
            if closing:
                self._drop()
            return classify_smtp_reply(exc.code, exc.message[:200]), closing
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            self._drop()
            return _no_answer(exc), isinstance(exc, ConnectionError)
        return classify_smtp_reply(250, "accepted"), False

    async def _connect(self) -> aiosmtplib.SMTP:
        self._drop()
        client = aiosmtplib.SMTP(
            hostname=self.smtp.host,
            port=self.smtp.port,
            username=self.smtp.username,
            password=self.smtp.password,
            use_tls=self.smtp.use_tls,
            start_tls=self.smtp.start_tls,
            timeout=self.smtp.timeout,
            local_hostname=self.smtp.local_hostname,
        )
        self.connections_opened += 1
        await client.connect()
        self._client = client
        return client

    def _drop(self) -> None:
        """Forget a connection in an unknown state; the next message opens a new one."""
        if self._client is not None:
            self._client.close()
            self._client = None


SERVICE_CLOSING = 421


def _no_answer(exc: BaseException) -> AttemptOutcome:
    return transport_failure(f"SMTP unreachable: {type(exc).__name__}: {exc}"[:300])


async def machine_hostname() -> str:
    """The FQDN given in EHLO when none is configured (a DNS lookup: off the event loop)."""
    return await asyncio.to_thread(socket.getfqdn)


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
