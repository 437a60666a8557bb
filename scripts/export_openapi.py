"""Write each service's OpenAPI document to docs/openapi/<service>.json (`make docs`).
With --check, fail instead when a committed document differs from the code."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVICES = ["referrals", "providers", "cohorts", "notifications", "insights"]


def render(service: str) -> str:
    app_module = importlib.import_module(f"{service}.app")
    config = importlib.import_module(f"{service}.config")
    settings_class = next(
        v for k, v in vars(config).items() if k.endswith("Settings") and k != "ServiceSettings"
    )
    app = app_module.create_app(settings_class(jwt_secret="openapi-export", environment="development"))
    return json.dumps(app.openapi(), indent=2, sort_keys=True) + "\n"


def render_apart(service: str) -> str:
    """Each service in its own interpreter: their tables share names, never a process."""
    done = subprocess.run(
        [sys.executable, __file__, "--one", service], capture_output=True, text=True, check=True
    )
    return done.stdout


def main() -> int:
    if "--one" in sys.argv:
        sys.stdout.write(render(sys.argv[sys.argv.index("--one") + 1]))
        return 0
    check = "--check" in sys.argv
    out = ROOT / "docs" / "openapi"
    out.mkdir(parents=True, exist_ok=True)
    stale = []
    for service in SERVICES:
        path = out / f"{service}.json"
        text = render_apart(service)
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path.relative_to(ROOT)))
        else:
            path.write_text(text)
            print(f"wrote {path.relative_to(ROOT)}")
    if stale:
        print("stale (run `make docs`): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
