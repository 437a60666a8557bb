"""A nats-server run with the project's own configuration (deploy/nats/*.conf), on a free port
of 127.0.0.1, for deploy/tests (imported by conftest.py and test_nats_config.py)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from pathways_shared.harness import nats_server_binary

NATS_DIR = Path(__file__).resolve().parents[1] / "nats"

# The users of deploy/nats/accounts.conf and the variable each password is read from.
NATS_PASSWORD_VARS = {
    "referrals": "REFERRALS_NATS_PASSWORD",
    "providers": "PROVIDERS_NATS_PASSWORD",
    "cohorts": "COHORTS_NATS_PASSWORD",
    "notifications": "NOTIFICATIONS_NATS_PASSWORD",
    "insights": "INSIGHTS_NATS_PASSWORD",
    "pathways-admin": "ADMIN_NATS_PASSWORD",
    "police-cohort-tool": "POLICE_NATS_PASSWORD",
    "sys": "SYS_NATS_PASSWORD",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def nats_binary() -> str:
    try:
        return nats_server_binary()  # the release the images run (test_manifests checks)
    except RuntimeError as missing:
        pytest.fail(str(missing))


class ConfiguredNats:
    """nats-server run with a copy of one of deploy/nats/*.conf, ports and paths made local."""

    def __init__(self, conf_name: str, replacements: dict[str, str] | None = None) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="pathways-deploy-nats-"))
        self.port = free_port()
        self.passwords = {user: f"pw-{user}-{os.urandom(4).hex()}" for user in NATS_PASSWORD_VARS}
        shutil.copy(NATS_DIR / "accounts.conf", self.dir / "accounts.conf")
        text = (NATS_DIR / conf_name).read_text()
        local = {
            "port: 4222": f"port: {self.port}\nhost: 127.0.0.1",
            "http_port: 8222": "",
            '"/data/jetstream"': f'"{self.dir / "js"}"',
            **(replacements or {}),
        }
        for old, new in local.items():
            assert old in text, f"{conf_name} no longer contains {old!r}"
            text = text.replace(old, new)
        self.conf = self.dir / conf_name
        self.conf.write_text(text)
        self.env = {
            **os.environ,
            "POD_NAME": "nats-test",
            **{var: self.passwords[user] for user, var in NATS_PASSWORD_VARS.items()},
        }
        self.process: subprocess.Popen | None = None
        self.log = self.dir / "nats.log"

    def check(self) -> subprocess.CompletedProcess:
        return subprocess.run(
            [nats_binary(), "-t", "-c", str(self.conf)], check=False, env=self.env,
            capture_output=True, text=True, timeout=10,
        )

    def start(self) -> None:
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                [nats_binary(), "-c", str(self.conf)], env=self.env, stdout=log, stderr=log
            )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nats-server exited: {self.log.read_text()[-2000:]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.2):
                return
            time.sleep(0.05)
        raise RuntimeError("nats-server did not start")

    def url(self, user: str, scheme: str = "nats") -> str:
        return f"{scheme}://{user}:{self.passwords[user]}@127.0.0.1:{self.port}"

    def cleanup(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        shutil.rmtree(self.dir, ignore_errors=True)
