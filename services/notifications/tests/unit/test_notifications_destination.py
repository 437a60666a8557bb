"""Where a webhook goes: the checked address is the one connected to (no second lookup)."""

from __future__ import annotations

import asyncio

import pytest

from notifications.errors import UnsafeSubscriberUrl
from notifications.transports import check_destination


def resolver_answering(*addresses: str):
    asked = []

    async def resolve(host: str, port: int) -> list[str]:
        asked.append((host, port))
        return list(addresses)

    resolve.asked = asked  # type: ignore[attr-defined]
    return resolve


@pytest.mark.parametrize(
    ("url", "addresses", "pinned"),
    [
        ("https://hooks.police.example/iom?x=1", ["93.184.215.14"],
         "https://93.184.215.14:443/iom?x=1"),
        ("https://hooks.police.example:8443", ["93.184.215.14"], "https://93.184.215.14:8443/"),
        ("https://hooks.police.example/a", ["2606:2800:21f:cb07:6820:80da:af6b:8b2c"],
         "https://[2606:2800:21f:cb07:6820:80da:af6b:8b2c]:443/a"),
        # IPv4 first when both are offered
        ("https://hooks.police.example/a", ["2606:2800:21f:cb07:6820:80da:af6b:8b2c",
                                            "93.184.215.14"], "https://93.184.215.14:443/a"),
    ],
)  # fmt: skip
def test_the_connection_is_pinned_to_a_checked_address(url, addresses, pinned):
    resolve = resolver_answering(*addresses)

    destination = asyncio.run(check_destination(url, allow_private=False, resolver=resolve))

    assert destination.pinned_url == pinned
    assert destination.host == "hooks.police.example"
    assert destination.url == url
    assert resolve.asked == [("hooks.police.example", int(pinned.split(":")[-1].split("/")[0]))]


@pytest.mark.parametrize(
    ("url", "addresses", "allow_private"),
    [
        ("https://hooks.police.example/", ["10.0.0.1"], False),
        ("https://hooks.police.example/", ["93.184.215.14", "127.0.0.1"], False),
        ("https://hooks.police.example/", [], True),
        ("http://hooks.police.example/", ["93.184.215.14"], False),
    ],
)
def test_unsafe_destinations_are_refused(url, addresses, allow_private):
    with pytest.raises(UnsafeSubscriberUrl):
        asyncio.run(
            check_destination(
                url, allow_private=allow_private, resolver=resolver_answering(*addresses)
            )
        )


def test_a_host_that_does_not_resolve_is_refused():
    async def failing(host: str, port: int) -> list[str]:
        raise OSError("Name or service not known")

    with pytest.raises(UnsafeSubscriberUrl, match="does not resolve"):
        asyncio.run(
            check_destination("https://nowhere.example/", allow_private=True, resolver=failing)
        )


def test_development_reaches_a_local_receiver():
    destination = asyncio.run(
        check_destination(
            "http://localhost:8080/hook",
            allow_private=True,
            resolver=resolver_answering("::1", "127.0.0.1"),
        )
    )

    assert destination.pinned_url == "http://127.0.0.1:8080/hook"
