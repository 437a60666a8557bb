"""A real HTTP webhook receiver for the system tests: records every request it gets, as a
JSON line (path, headers, body), in the file named on the command line, and answers 200.

    python webhook_receiver.py PORT OUTFILE
"""

from __future__ import annotations

import json
import sys

import uvicorn


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    record = {
        "path": scope["path"],
        "headers": {k.decode(): v.decode() for k, v in scope["headers"]},
        "body": body.decode("utf-8", errors="replace"),
    }
    with open(sys.argv[2], "a", encoding="utf-8") as out:  # noqa: ASYNC230  a test receiver, one line
        out.write(json.dumps(record) + "\n")
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
