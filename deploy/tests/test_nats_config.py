"""The production NATS configuration itself (deploy/nats/nats-server.conf) runs: with a
self-signed CA and server certificate put where it looks for them, it is valid, it refuses
plain connections, and a service connects over TLS the way the pods do (tls:// in NATS_URL, the
CA from SSL_CERT_FILE) with its permissions intact. And the stream set-up script creates what
the services expect."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import os
import ssl
import subprocess
import sys
from pathlib import Path

import nats
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from deploy_nats_server import ConfiguredNats, free_port

pytestmark = pytest.mark.timeout(60)
DEPLOY = Path(__file__).resolve().parents[1]


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def write_certificates(directory: Path) -> None:
    """ca.crt, and tls.crt/tls.key for localhost and 127.0.0.1 signed by it (as cert-manager
    would put them in the Secret nats-tls)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder().subject_name(_name("pathways-test-ca")).issuer_name(_name("pathways-test-ca"))
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder().subject_name(_name("nats")).issuer_name(ca.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH,
                                              x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (directory / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "tls.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


@pytest.fixture(scope="module")
def production_nats(tmp_path_factory):
    certs = tmp_path_factory.mktemp("nats-tls")
    write_certificates(certs)
    run = tmp_path_factory.mktemp("nats-run")
    server = ConfiguredNats("nats-server.conf", replacements={
        "/etc/nats/tls/": f"{certs}/",
        "port: 6222": f"port: {free_port()}\n  host: 127.0.0.1",
        '"/var/run/nats/nats.pid"': f'"{run}/nats.pid"',
    })
    server.certs = certs
    checked = server.check()
    assert checked.returncode == 0, checked.stdout + checked.stderr
    server.start()
    yield server
    server.cleanup()


def test_the_production_configuration_is_valid(production_nats):
    text = production_nats.conf.read_text()
    assert "tls: {" in text and "cluster: {" in text and "include ./accounts.conf" in text


async def test_plain_connections_are_refused(production_nats):
    with pytest.raises(Exception):  # noqa: B017  (the server requires TLS)
        await nats.connect(production_nats.url("referrals"), allow_reconnect=False,
                           connect_timeout=2, max_reconnect_attempts=0)


async def test_a_service_connects_over_tls_as_the_pods_do(production_nats, monkeypatch):
    # The pods set SSL_CERT_FILE to a bundle holding the CA; the shared Broker passes only the
    # URL, so Python's default context must find the CA there.
    monkeypatch.setenv("SSL_CERT_FILE", str(production_nats.certs / "ca.crt"))
    errors: list[str] = []

    async def on_error(exc):
        errors.append(str(exc))

    nc = await nats.connect(production_nats.url("referrals", scheme="tls").replace("127.0.0.1", "localhost"),
                            allow_reconnect=False, connect_timeout=3, error_cb=on_error)
    try:
        await nc.publish("referrals.referral.submitted", b"{}")
        await nc.publish("providers.referral.allocated", b"{}")
        await nc.flush()
        await asyncio.sleep(0.2)
        assert len(errors) == 1 and "providers.referral.allocated" in errors[0]
    finally:
        await nc.close()


async def test_an_untrusted_server_certificate_is_refused(production_nats):
    context = ssl.create_default_context()  # the public roots only: not our CA
    with pytest.raises(Exception):  # noqa: B017
        await nats.connect(production_nats.url("referrals", scheme="tls").replace("127.0.0.1", "localhost"),
                           tls=context, allow_reconnect=False, connect_timeout=3,
                           max_reconnect_attempts=0)


# --- the stream set-up job ------------------------------------------------------------------------

def streams_ensure(url: str, replicas: int) -> list[str]:
    """`pathways streams ensure`, the command the Kubernetes Job runs, as the Job runs it."""
    env = {**os.environ, "NATS_URL": url, "PATHWAYS_STREAM_REPLICAS": str(replicas)}
    done = subprocess.run(
        [sys.executable, "-m", "pathways_shared.cli", "streams", "ensure"],
        env=env, capture_output=True, text=True, timeout=60, check=True,
    )
    return done.stdout.splitlines()[1:]  # after the "streams at ..." line


async def test_stream_setup_creates_every_stream_and_the_police_consumer(dev_nats):
    from nats.js.api import StorageType

    from pathways_shared.broker import DUPLICATE_WINDOW_SECONDS, ensure_streams
    from pathways_shared.events import STREAMS

    url = dev_nats.url("pathways-admin")
    first = await asyncio.to_thread(streams_ensure, url, 1)
    again = await asyncio.to_thread(streams_ensure, url, 1)  # every roll-out runs it: idempotent
    assert len(first) == len(again) == len(STREAMS) + 1
    assert all(line.startswith("created") for line in first[:-1])
    assert all(line.startswith("updated") for line in again[:-1])
    nc = await nats.connect(url)
    try:
        js = nc.jetstream(timeout=5)
        for name, subjects in STREAMS.items():
            info = await js.stream_info(name)
            assert info.config.subjects == [subjects]
            assert info.config.duplicate_window == DUPLICATE_WINDOW_SECONDS
            assert info.config.num_replicas == 1
        consumer = await js.consumer_info("COHORTS", "police-cohort-tool")
        assert consumer.config.filter_subject == "cohorts.>"
        # the services' own declaration at start-up accepts the streams as they are
        await ensure_streams(js)
        assert (await js.stream_info("REFERRALS")).config.storage == StorageType.FILE
    finally:
        with contextlib.suppress(Exception):
            await nc.close()


def test_make_run_creates_the_police_consumer_as_production_does():
    """`make run` (scripts/run.sh) runs the Job's command before the services start, so the
    police tool's `pull_subscribe_bind("police-cohort-tool", "COHORTS")` works locally too."""
    run_sh = (Path(__file__).resolve().parents[2] / "scripts" / "run.sh").read_text()
    ensure = run_sh.index("pathways_shared.cli streams ensure")
    assert ensure < run_sh.index('"$PY" -m "$svc"'), "the consumer must exist before the services start"
    assert "--replicas 1" in run_sh[ensure:ensure + 200]


async def test_the_police_tool_binds_after_a_single_node_setup(dev_nats):
    await asyncio.to_thread(streams_ensure, dev_nats.url("pathways-admin"), 1)
    nc = await nats.connect(dev_nats.url("police-cohort-tool"))
    try:
        js = nc.jetstream(timeout=5)
        subscription = await js.pull_subscribe_bind("police-cohort-tool", "COHORTS")
        with contextlib.suppress(nats.errors.TimeoutError):
            await subscription.fetch(1, timeout=0.5)  # nothing published yet: bound, not refused
    finally:
        with contextlib.suppress(Exception):
            await nc.close()
