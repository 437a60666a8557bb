"""A closed-loop HTTP/1.1 load client, run as a process of its own so it does not share a
core's event loop with the server: `concurrency` keep-alive connections, each sending the
next request as soon as the previous answer is read. Raw asyncio streams on uvloop (far
cheaper per request than httpx), so the client is not the bottleneck; it reports its own CPU
use so that can be checked.

    python bench/_load.py '{"port": 8001, "path": "/referrals", "concurrency": 32,
        "warmup": 2, "seconds": 10, "headers": {...}, "body": "...__N__...", "start": 0}'

Every `__N__` in the body is replaced by a number unique to the request (start, start+1, ...).
Prints one JSON line: requests and statuses in the measured window, its length, the
client's CPU seconds, and latency percentiles.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from collections import Counter


async def main(config: dict) -> dict:
    port = config["port"]
    path = config["path"]
    method = config.get("method", "POST")
    body_template = config.get("body", "")
    headers = dict(config.get("headers", {}))
    counter = iter(range(config.get("start", 0), 1 << 62))
    warmup, seconds = config.get("warmup", 2.0), config["seconds"]
    head_lines = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    prefix = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{head_lines}".encode()

    statuses: Counter[int] = Counter()
    total = [0]
    latencies: list[float] = []
    started = time.perf_counter()
    measure_from = started + warmup
    measure_to = measure_from + seconds

    async def connection() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while True:
                sent = time.perf_counter()
                if sent >= measure_to:
                    return
                body = body_template.replace("__N__", str(next(counter))).encode()
                writer.write(prefix + b"Content-Length: %d\r\n\r\n" % len(body) + body)
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head[9:12])
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                if length:
                    await reader.readexactly(length)
                done = time.perf_counter()
                total[0] += 1
                if measure_from <= sent and done <= measure_to:
                    statuses[status] += 1
                    latencies.append(done - sent)
        finally:
            writer.close()

    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    await asyncio.gather(*(connection() for _ in range(config["concurrency"])))
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    latencies.sort()
    n = len(latencies)

    def pct(p: float) -> float:
        return latencies[min(n - 1, int(p / 100 * n))] * 1000 if n else float("nan")

    return {
        "requests": n,
        "total_requests": total[0],
        "statuses": {str(k): v for k, v in statuses.items()},
        "seconds": seconds,
        "rps": n / seconds,
        "client_cpu_seconds": (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime),
        "client_wall_seconds": time.perf_counter() - started,
        "p50_ms": pct(50),
        "p99_ms": pct(99),
    }


if __name__ == "__main__":
    try:
        from uvloop import run
    except ImportError:
        run = asyncio.run
    print(json.dumps(run(main(json.loads(sys.argv[1])))), flush=True)
