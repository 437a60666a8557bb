"""Large bodies against the running services (real processes, real sockets): refused before
they are held, so a process's memory stays bounded however much is sent. Each case sends
100 MB (or past the CSV limit) five times at once and reads the process's peak resident size
(`VmHWM`, reset first) from /proc."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from pathways_shared.testing import auth

MIB = 1 << 20
CHUNK = b"x" * MIB
HUNDRED_MB = 100_000_000
AT_ONCE = 5
# What refusing may cost a process over its resident size before: a few chunks per connection
# and the interpreter's arenas, far below one body (100 MB) or the CSV limit (64 MiB).
BOUND = 48 * MIB


def memory(pid: int) -> dict[str, int]:
    """The process's resident size now and at its peak, in bytes."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return {key: int(fields[key].split()[0]) * 1024 for key in ("VmRSS", "VmHWM")}


def reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM from now on


def head(path: str, headers: dict[str, str], *, length: int | None) -> bytes:
    framing = {"Content-Length": str(length)} if length is not None else {
        "Transfer-Encoding": "chunked"}
    lines = [f"POST {path} HTTP/1.1", "Host: test",
             *(f"{k}: {v}" for k, v in {**headers, **framing}.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def send_large(port: int, start: bytes, *, chunked: bool, total: int) -> tuple[int | None, int]:
    """Send `start` then up to `total` body bytes, reading the answer meanwhile; stop sending
    once it has come. Answers its status and how many body bytes were sent."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    answer = asyncio.create_task(reader.read())
    piece = b"%x\r\n" % len(CHUNK) + CHUNK + b"\r\n" if chunked else CHUNK
    sent = 0
    try:
        writer.write(start)
        while sent < total and not answer.done():
            writer.write(piece)
            await writer.drain()
            sent += len(CHUNK)
    except ConnectionError:
        pass
    try:
        raw = await asyncio.wait_for(answer, 15)
    except ConnectionError:
        raw = b""
    finally:
        writer.close()
    return (int(raw.split()[1]) if raw else None), sent


CASES = {
    # unauthenticated: 401 on the head, nothing of the body kept
    "referrals, no token, 100 MB declared": (
        "referrals", "/referrals", {"Content-Type": "application/json"}, False, 401),
    # authenticated, length declared: 413 on the head
    "referrals, 100 MB declared": (
        "referrals", "/referrals",
        {**auth("probation"), "Content-Type": "application/json"}, False, 413),
    # authenticated, no length: 413 once 1 MiB (the JSON limit) has been read
    "referrals, 100 MB chunked": (
        "referrals", "/referrals",
        {**auth("probation"), "Content-Type": "application/json"}, True, 413),
    # the CSV import, no length, past its limit (64 MiB): spooled to disk (wait=false),
    # then 413
    "cohorts import, 70 MiB chunked": (
        "cohorts", "/offences:import?wait=false",
        {**auth("service"), "Content-Type": "text/csv"}, True, 413),
    # the CSV import parsed as it arrives (wait=true), within its limit: 60 MiB of one line
    "cohorts import, one line of 60 MiB": (
        "cohorts", "/offences:import",
        {**auth("service"), "Content-Type": "text/csv"}, False, 422),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_large_bodies_are_refused_in_bounded_memory(system, case):
    service, path, headers, chunked, status = CASES[case]
    pid = system.pid(service)
    total = {"cohorts import, one line of 60 MiB": 60 * MIB}.get(
        case, 70 * MIB if service == "cohorts" else HUNDRED_MB)
    start = head(path, headers, length=None if chunked else total)
    reset_peak(pid)
    before = memory(pid)
    answers = await asyncio.gather(*(
        send_large(system.ports[service], start, chunked=chunked, total=total)
        for _ in range(AT_ONCE)))
    after = memory(pid)
    assert [got for got, _ in answers] == [status] * AT_ONCE, answers
    grown = after["VmHWM"] - before["VmRSS"]
    print(f"{case}: {AT_ONCE} at once, {sum(s for _, s in answers) / MIB:.0f} MiB sent; "
          f"RSS {before['VmRSS'] / MIB:.0f} MiB before, peak {after['VmHWM'] / MIB:.0f} MiB")
    assert grown < BOUND, f"{case}: the peak grew {grown / MIB:.0f} MiB"
