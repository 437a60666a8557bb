"""A development mail sink: an SMTP server on loopback that keeps every message it gets.

    python scripts/mailsink.py --port 1025 --directory .data/mail

Each message is written as ``<n>-<Message-ID>.eml`` to read with any mail client or a pager.
For development and demonstrations only (`make run`, the system tests and the benchmarks
start it); it is no part of the notifications service, whose unit tests start their own server.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import re
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

_UNSAFE = re.compile(r"[^A-Za-z0-9@._-]+")


class KeepingHandler:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self._numbers = itertools.count(len(list(directory.glob("*.eml"))) + 1)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content: bytes = envelope.original_content or envelope.content
        match = re.search(rb"^Message-ID:\s*<?([^>\r\n]+)", content, re.IGNORECASE | re.MULTILINE)
        name = _UNSAFE.sub("_", match.group(1).decode(errors="replace")) if match else "message"
        path = self.directory / f"{next(self._numbers):05d}-{name[:80]}.eml"
        path.write_bytes(content)
        return "250 Message accepted for delivery"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1025)
    parser.add_argument("--directory", default=".data/mail")
    args = parser.parse_args()
    controller = Controller(
        KeepingHandler(Path(args.directory)), hostname=args.host, port=args.port
    )
    controller.start()
    print(f"mail sink on {args.host}:{args.port}, keeping messages in {args.directory}")
    try:
        asyncio.run(asyncio.Event().wait())
    except KeyboardInterrupt:
        pass
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
