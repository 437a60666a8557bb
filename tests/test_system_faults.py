"""Faults: a steady stream of referral submissions while each service is killed (-9) and
restarted in turn and NATS is restarted once, on a system of its own with a private
nats-server. Afterwards, once quiet: every need of every accepted submission was routed
exactly once, every allocation email and webhook went out exactly once, no dead letters.

Sizes can be changed for a longer soak: PATHWAYS_FAULTS_SUBMISSIONS (default 2000),
PATHWAYS_FAULTS_RATE (submissions per second, default 25).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass

import httpx
import nats
import nats.js.errors
import pytest

from pathways_shared.events import STREAMS, stream_name
from pathways_shared.testing import NatsCluster, NatsServer, auth
from pathways_shared.vocabulary import PROVIDER_CODES

# Bounded; generous enough for a 2-core machine busy with other suites (see the printed times).
pytestmark = pytest.mark.timeout(int(os.environ.get("PATHWAYS_FAULTS_TIMEOUT", "900")))

SUBMISSIONS = int(os.environ.get("PATHWAYS_FAULTS_SUBMISSIONS", "2000"))
CLUSTER_SUBMISSIONS = int(os.environ.get("PATHWAYS_FAULTS_CLUSTER_SUBMISSIONS", "600"))
RATE = float(os.environ.get("PATHWAYS_FAULTS_RATE", "25"))
CONCURRENCY = 12
QUIET_TIMEOUT = float(os.environ.get("PATHWAYS_FAULTS_QUIET_TIMEOUT", "480"))

PROBATION = auth("probation", sub="faults.officer")
ADMIN = auth("admin", sub="faults.ops")

# (pathway, complexity): allocated to a service for a man on licence in Solihull, except
# health (ND-IOM needs IOM membership), which is unallocated.
NEEDS = [
    ("accommodation", "medium"),
    ("finance_benefit_debt", "medium"),
    ("education_training_employment", "high"),
    ("children_families", "low"),
    ("drugs_alcohol", "medium"),
    ("health", "low"),
    ("attitudes_thinking_behaviour", "medium"),
]
NEED_SETS = [[NEEDS[i % 7], NEEDS[(i + 3) % 7]] if i % 5 == 0 else [NEEDS[i % 7]] for i in range(35)]

# Quick retries and short leases, so that what a kill interrupts resumes within the test.
FAST_ENV = {
    "NOTIFICATIONS_RETRY_FIRST_DELAY_SECONDS": "1",
    "NOTIFICATIONS_RETRY_MULTIPLIER": "1.5",
    "NOTIFICATIONS_RETRY_MAX_DELAY_SECONDS": "4",
    "NOTIFICATIONS_SMTP_TIMEOUT_SECONDS": "3",
    "NOTIFICATIONS_WEBHOOK_TIMEOUT_SECONDS": "3",
    "NOTIFICATIONS_DELIVERY_LEASE_SECONDS": "12",
    "NOTIFICATIONS_WORKER_BATCH_SIZE": "50",
    "NOTIFICATIONS_RETRY_MAX_ATTEMPTS": "30",
    "PATHWAYS_LOG_LEVEL": "WARNING",
}


@dataclass
class Accepted:
    index: int
    source_reference: str
    referral_id: str
    pathways: list[str]


def submission(index: int, run: str) -> tuple[str, dict]:
    needs = NEED_SETS[index % len(NEED_SETS)]
    source_reference = f"FAULTS-{run}-{index:05d}"
    body = {
        "source_reference": source_reference,
        "area": "E08000029",
        "person": {
            "crn": f"F{index:06d}",
            "noms_number": None, "pnc_number": None,
            "given_name": "Fault", "family_name": f"Tolerant{index}", "date_of_birth": "1988-03-14",
            "sex": "male", "needs_interpreter": False, "interpreter_language": None,
        },
        "supervision": {"status": "licence", "expected_release_date": None},
        "risk": {"rosh": "medium", "mappa_level": None},
        "practitioner": {"name": "Pat Officer", "email": f"pat.officer+{index}@probation.example",
                         "team": "Solihull OMU"},
        "consent": {"given": True, "recorded_at": "2026-11-20T10:00:00Z"},
        "needs": [{"pathway": p, "complexity": c, "details": f"need {p}"} for p, c in needs],
    }
    return source_reference, body


class Stream:
    """Submits SUBMISSIONS referrals at RATE per second with CONCURRENCY in flight; a
    submission that fails (service down, 5xx) is retried with the same Idempotency-Key and
    source_reference until it is accepted (201, or 200: an earlier attempt had succeeded)."""

    def __init__(self, url: str, run: str, submissions: int = SUBMISSIONS) -> None:
        self.url, self.run, self.submissions = url, run, submissions
        self.accepted: list[Accepted] = []
        self.retries = 0
        self.statuses: Counter[int] = Counter()
        self.unexpected: list[str] = []
        self._next = itertools.count()
        self.started = time.monotonic()

    @property
    def done(self) -> int:
        return len(self.accepted)

    async def _worker(self, client: httpx.AsyncClient, started: float) -> None:
        while (index := next(self._next)) < self.submissions:
            delay = started + index / RATE - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            source_reference, body = submission(index, self.run)
            headers = PROBATION | {"Idempotency-Key": f"key-{source_reference}"}
            while True:
                try:
                    r = await client.post(f"{self.url}/referrals", json=body, headers=headers)
                except httpx.TransportError:
                    self.retries += 1
                    await asyncio.sleep(0.2)
                    continue
                self.statuses[r.status_code] += 1
                if r.status_code in (200, 201):
                    self.accepted.append(Accepted(index, source_reference, r.json()["id"],
                                                  [n["pathway"] for n in body["needs"]]))
                    break
                if r.status_code >= 500:
                    self.retries += 1
                    await asyncio.sleep(0.2)
                    continue
                self.unexpected.append(f"{r.status_code} {r.text[:300]}")
                break

    async def run_all(self) -> None:
        self.started = started = time.monotonic()
        async with httpx.AsyncClient(timeout=httpx.Timeout(10, connect=2)) as client:
            await asyncio.gather(*(self._worker(client, started) for _ in range(CONCURRENCY)))


STEPS = ("referrals", "providers", "cohorts", "notifications", "nats")
# On the cluster the broker step comes first, so the REFERRALS leader dies while referrals
# are still being submitted and published to it.
CLUSTER_STEPS = ("nats", "referrals", "providers", "cohorts", "notifications")


async def faults(system, nats_server, stream: Stream, log: list[str], steps=STEPS) -> None:
    """Each service killed with SIGKILL and restarted in turn, then NATS restarted (on a
    cluster: the node leading REFERRALS killed -9 and restarted), spread over the stream of
    submissions."""
    for number, step in enumerate(steps, start=1):
        threshold = stream.submissions * number // (len(steps) + 2)
        while stream.done < threshold:
            await asyncio.sleep(0.1)
        began = time.monotonic()
        if step == "nats":
            await asyncio.to_thread(nats_server.stop)
            await asyncio.sleep(2)
            await asyncio.to_thread(nats_server.start)
            for service in system.processes:
                await asyncio.to_thread(system.wait_ready, service, 60)
        else:
            system.kill(step)
            await asyncio.sleep(0.5)
            system.start(step)
            await asyncio.to_thread(system.wait_ready, step, 60)
        log.append(f"{step} at {stream.done} accepted, back in {time.monotonic() - began:.1f}s")
        print(f"faults: {log[-1]} ({time.monotonic() - stream.started:.0f}s into the stream)", flush=True)


async def all_pages(client: httpx.AsyncClient, url: str, headers: dict, params: dict | None = None) -> list[dict]:
    items, cursor = [], None
    while True:
        query = dict(params or {}, limit=200) | ({"cursor": cursor} if cursor else {})
        r = await client.get(url, headers=headers, params=query)
        assert r.status_code == 200, (url, r.status_code, r.text[:500])
        page = r.json()
        items.extend(page["data"])
        cursor = page.get("next_cursor")
        if not cursor:
            return items


def allocation_emails(system) -> tuple[list[tuple[str, str, str]], Counter]:
    """(kind, Message-ID, body) of each allocation email file, and copies per Message-ID."""
    found, copies = [], Counter()
    for message in system.emails():
        subject = " ".join((message["Subject"] or "").split())  # long subjects are folded
        body = message.get_payload(decode=True).decode(errors="replace")
        if " need allocated to " in subject:
            kind = "practitioner"
        elif subject.startswith("Pathways: new referral for "):
            kind = "provider"
        else:
            continue
        message_id = message["Message-ID"].strip().strip("<>").split("@")[0]
        found.append((kind, message_id, body))
        copies[message_id] += 1
    return found, copies


async def deliveries_in_flight(client: httpx.AsyncClient, system) -> int:
    """Emails and webhooks the notifications service has still to send (first page only)."""
    count = 0
    for status in ("pending", "sending", "retrying"):
        r = await client.get(f"{system.url('notifications')}/notifications", headers=ADMIN,
                             params={"status": status, "limit": 200})
        assert r.status_code == 200, r.text
        count += len(r.json()["data"])
    return count


async def delivery_log(client: httpx.AsyncClient, system) -> list[dict]:
    return await all_pages(client, f"{system.url('notifications')}/notifications", ADMIN)


def interrupted_keys(log: list[dict]) -> tuple[set[str], set[str]]:
    """The Message-IDs and webhook-ids of deliveries whose send was interrupted by the kill
    (an attempt with no recorded outcome, sent again with the same idempotency key)."""
    from notifications.domain.intents import Recipient, RecipientRole, idempotency_key

    emails, webhooks = set(), set()
    for d in log:
        if not any(a["outcome"] == "interrupted" for a in d["attempt_log"]):
            continue
        if d["channel"] == "webhook":
            webhooks.add(d["event_id"])
        else:
            key = idempotency_key(uuid.UUID(d["event_id"]),
                                  Recipient(RecipientRole(d["recipient_role"]), d["recipient_key"]))
            emails.add(str(key))
    return emails, webhooks


async def events_unsettled(system) -> int:
    """Events the services' durable consumers have still to take or to acknowledge: a message
    delivered to a killed process comes back only after ack_wait, so counts that stood still
    for a while do not yet mean that nothing more will happen."""
    nc = await nats.connect(system.nats_url.split(","), connect_timeout=2)
    try:
        js, total = nc.jetstream(), 0
        for stream in STREAMS:
            try:
                consumers = await js.consumers_info(stream_name(stream, system.prefix))
            except nats.js.errors.NotFoundError:
                continue
            total += sum(c.num_pending + c.num_ack_pending for c in consumers)
        return total
    finally:
        await nc.close()


async def settle(client: httpx.AsyncClient, system) -> tuple[list[dict], float]:
    """Poll until nothing is left to route or to consume and the counts stop changing (bounded)."""
    began, last, stable = time.monotonic(), None, 0
    while time.monotonic() - began < QUIET_TIMEOUT:
        referrals = await all_pages(client, f"{system.url('referrals')}/referrals", PROBATION)
        statuses = Counter(n["status"] for r in referrals for n in r["needs"])
        in_flight = await deliveries_in_flight(client, system)
        unsettled = await events_unsettled(system)
        snapshot = (len(referrals), tuple(sorted(statuses.items())), len(system.emails()),
                    len(system.webhooks()), in_flight, unsettled)
        if (statuses.get("submitted", 0) == 0 and in_flight == 0 and unsettled == 0
                and snapshot == last):
            stable += 1
            if stable >= 2:
                return referrals, time.monotonic() - began
        else:
            stable = 0
        if snapshot != last:
            print(f"faults: settling, {time.monotonic() - began:.0f}s: {snapshot}", flush=True)
        last = snapshot
        await asyncio.sleep(5)  # listing every referral is not free: leave the services to work
    raise AssertionError(f"the system did not settle within {QUIET_TIMEOUT}s: {last}\n"
                         + await diagnostics(client, system))


async def diagnostics(client: httpx.AsyncClient, system) -> str:
    """Outbox and consumer metrics and the warnings each service logged, for a failure."""
    lines = []
    for service in system.ports:
        r = await client.get(f"{system.url(service)}/metrics")
        lines += [f"{service}: {line}" for line in r.text.splitlines()
                  if line.startswith(("pathways_outbox", "pathways_consumer"))]
        log = (system.workdir / f"{service}.log").read_text(errors="replace").splitlines()
        lines += [f"{service} log: {line[:400]}" for line in log
                  if "nats.error" not in line and "nats.disconnected" not in line][-15:]
    return "\n".join(lines)


async def scenario(system, nats_server, submissions: int = SUBMISSIONS, steps=STEPS) -> None:
    run = uuid.uuid4().hex[:6]
    began = time.monotonic()
    async with httpx.AsyncClient(timeout=30) as client:
        r = await client.post(f"{system.url('notifications')}/subscriptions", headers=ADMIN, json={
            "url": system.webhook_url, "event_types": ["providers.referral.allocated"],
            "description": "faults: allocations"})
        assert r.status_code == 201, r.text
        subscription_id = r.json()["id"]

        stream, fault_log = Stream(system.url("referrals"), run, submissions), []
        fault_task = asyncio.create_task(faults(system, nats_server, stream, fault_log, steps))
        await stream.run_all()
        await fault_task
        submitted_in = time.monotonic() - began
        assert not stream.unexpected, stream.unexpected[:5]
        assert len(stream.accepted) == submissions

        referrals, settled_in = await settle(client, system)
        print(f"\nfaults: {submissions} accepted in {submitted_in:.1f}s, quiet {settled_in:.1f}s "
              f"later; " + "; ".join(fault_log), flush=True)

        # referrals: one referral per accepted submission, each need allocated or unallocated
        accepted_ids = {a.referral_id for a in stream.accepted}
        assert len(accepted_ids) == submissions, "two submissions answered the same referral"
        by_id = {r["id"]: r for r in referrals}
        assert set(by_id) == accepted_ids, (len(by_id), len(accepted_ids))
        needs = {n["id"]: (r["id"], n) for r in referrals for n in r["needs"]}
        assert len(needs) == sum(len(a.pathways) for a in stream.accepted)
        for a in stream.accepted:
            assert sorted(n["pathway"] for n in by_id[a.referral_id]["needs"]) == sorted(a.pathways)
        final = Counter(n["status"] for _, n in needs.values())
        assert set(final) <= {"allocated", "unallocated"}, final
        allocated = {nid: n for nid, (_, n) in needs.items() if n["status"] == "allocated"}
        unallocated = {nid for nid, (_, n) in needs.items() if n["status"] == "unallocated"}
        assert all(n["pathway"] == "health" for _, n in needs.values() if n["status"] == "unallocated")

        # ... and reached that status exactly once (the history of each referral)
        semaphore = asyncio.Semaphore(16)

        async def routing_entries(referral_id: str) -> list[dict]:
            async with semaphore:
                return await all_pages(
                    client, f"{system.url('referrals')}/referrals/{referral_id}/history", PROBATION)

        histories = await asyncio.gather(*(routing_entries(rid) for rid in accepted_ids))
        routed = Counter(e["need_id"] for h in histories for e in h
                         if e["event"] in ("allocated", "unallocated"))
        assert set(routed) == set(needs), (len(routed), len(needs))
        assert [nid for nid, count in routed.items() if count != 1] == []

        # providers: one provider referral per allocated need, none for unallocated ones
        inbox: dict[str, list[dict]] = defaultdict(list)
        for code in sorted(PROVIDER_CODES):
            entries = await all_pages(client, f"{system.url('providers')}/provider-referrals",
                                      auth("provider", provider=code, sub=f"faults-{code}"))
            for entry in entries:
                if entry["referral_id"] in accepted_ids:
                    inbox[entry["need_id"]].append(entry | {"provider_code": code})
        duplicates = {nid: len(v) for nid, v in inbox.items() if len(v) != 1}
        assert duplicates == {}, f"duplicate provider referrals: {list(duplicates.items())[:5]}"
        assert set(inbox) == set(allocated), (len(inbox), len(allocated))
        for nid, [entry] in inbox.items():
            assert entry["service_code"] == allocated[nid]["service_code"]
            assert entry["provider_code"] == allocated[nid]["provider_code"]

        # emails: one practitioner and one provider-mailbox email per allocated need
        # Sent once each; a copy on the wire is allowed only for a send the kill of the
        # notifications service interrupted (sent again with the same Message-ID/webhook-id,
        # so the receiver drops it: at least once on the wire, exactly once in effect).
        log = await delivery_log(client, system)
        log_statuses = Counter((d["channel"], d["status"]) for d in log)
        assert {status for _, status in log_statuses} == {"delivered"}, log_statuses
        interrupted_emails, interrupted_webhooks = interrupted_keys(log)
        emails, copies = allocation_emails(system)
        resent = {mid: c for mid, c in copies.items() if c > 1}
        assert all(c == 2 for c in resent.values()), resent
        unexplained = set(resent) - interrupted_emails
        assert unexplained == set(), f"allocation emails sent twice, not after a kill: {sorted(unexplained)[:5]}"
        practitioner = Counter()
        provider = Counter()
        provider_referral_of = {entry["id"]: nid for nid, [entry] in inbox.items()}
        for kind, _, body in {(k, mid, b) for k, mid, b in emails}:
            if kind == "practitioner":
                practitioner.update(nid for nid in set(_need_ids(body)) if nid in needs)
            else:
                provider.update(provider_referral_of[p] for p in set(_provider_referral_ids(body))
                                if p in provider_referral_of)
        assert set(practitioner) == set(allocated), (len(practitioner), len(allocated))
        assert [n for n, c in practitioner.items() if c != 1] == []
        missing = Counter(allocated[n]["provider_code"] for n in set(allocated) - set(provider))
        assert set(provider) == set(allocated), (len(provider), len(allocated), missing)
        assert [n for n, c in provider.items() if c != 1] == []

        # webhooks: one allocation webhook per allocated need, each webhook-id once
        hooks = [w for w in system.webhooks() if "providers.referral.allocated" in w["body"]]
        by_webhook_id = Counter(w["headers"]["webhook-id"] for w in hooks)
        hooks_resent = {i: c for i, c in by_webhook_id.items() if c > 1}
        assert all(c == 2 for c in hooks_resent.values()), hooks_resent
        unexplained = set(hooks_resent) - interrupted_webhooks
        assert unexplained == set(), f"webhooks delivered twice, not after a kill: {sorted(unexplained)[:5]}"
        once = {w["headers"]["webhook-id"]: w for w in hooks}.values()
        by_need = Counter(json.loads(w["body"])["additionalInformation"]["needId"] for w in once)
        assert set(by_need) == set(allocated), (len(by_need), len(allocated))
        assert [n for n, c in by_need.items() if c != 1] == []

        # nothing was dead-lettered anywhere
        for service in system.ports:
            letters = await all_pages(client, f"{system.url(service)}/admin/dead-letters", ADMIN)
            assert letters == [], (service, letters[:3])

        r = await client.get(f"{system.url('notifications')}/subscriptions/{subscription_id}",
                             headers=ADMIN)
        assert r.status_code == 200, r.text

    print(
        f"\nfaults: {submissions} submissions ({stream.retries} retried attempts, statuses "
        f"{dict(stream.statuses)}), {len(needs)} needs: {len(allocated)} allocated, "
        f"{len(unallocated)} unallocated; {sum(practitioner.values())} practitioner and "
        f"{sum(provider.values())} provider allocation emails ({len(resent)} sent again after the "
        f"kill), {len(by_need)} allocation webhooks ({len(hooks_resent)} again after the kill); "
        f"submitted in {submitted_in:.1f}s, quiet {settled_in:.1f}s later, "
        f"{time.monotonic() - began:.1f}s in all\nfaults: " + "; ".join(fault_log)
    )


def _need_ids(body: str) -> list[str]:
    import re

    return re.findall(r"need ([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})", body)


def _provider_referral_ids(body: str) -> list[str]:
    import re

    return re.findall(r"Provider referral:\s+([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})", body)


def test_referrals_survive_kills_and_a_broker_restart(system_factory, capsys):
    nats_server = NatsServer()
    nats_server.start()
    try:
        # its progress and counts go to the terminal: a long test shows what it is doing
        with system_factory(nats_server.url, FAST_ENV) as system, capsys.disabled():
            asyncio.run(scenario(system, nats_server))
    finally:
        nats_server.cleanup()


class ReferralsLeader:
    """The fault run's broker step on a cluster: `stop` kills -9 the node leading the
    REFERRALS stream (no lame duck, no flush), `start` restarts that node."""

    def __init__(self, cluster: NatsCluster, prefix: str) -> None:
        self.cluster, self.stream = cluster, stream_name("REFERRALS", prefix)
        self.killed: list[str] = []

    def leader(self) -> str:
        async def ask() -> str:
            nc = await nats.connect(self.cluster.url.split(","), connect_timeout=3)
            try:
                return (await nc.jetstream(timeout=10).stream_info(self.stream)).cluster.leader
            finally:
                await nc.close()

        return asyncio.run(ask())

    def stop(self) -> None:
        name = self.leader()
        self.cluster.kill(name)
        self.killed.append(name)
        print(f"faults: killed -9 {name}, the leader of {self.stream}", flush=True)

    def start(self) -> None:
        self.cluster.start(self.killed[-1])


def test_referrals_survive_kills_and_the_loss_of_the_referrals_leader_on_a_cluster(
    system_factory, capsys,
):
    """The same run on a three-node JetStream cluster (routes on loopback, every stream at
    three replicas, sync_interval: always), the broker step killing -9 the node that leads
    REFERRALS and restarting it. Smaller (PATHWAYS_FAULTS_CLUSTER_SUBMISSIONS, default 600) to
    stay within a few minutes."""
    cluster = NatsCluster()
    cluster.start()
    try:
        env = FAST_ENV | {"PATHWAYS_STREAM_REPLICAS": "3"}  # the services create the streams at R3
        with system_factory(cluster.url, env) as system, capsys.disabled():
            asyncio.run(scenario(system, ReferralsLeader(cluster, system.prefix), CLUSTER_SUBMISSIONS,
                                 CLUSTER_STEPS))
            replicas = asyncio.run(_replicas(cluster.url, system.prefix))
            print(f"faults: streams on the cluster {replicas}", flush=True)
            assert set(replicas.values()) == {3}, replicas
    finally:
        cluster.cleanup()


async def _replicas(url: str, prefix: str) -> dict[str, int]:
    nc = await nats.connect(url.split(","), connect_timeout=3)
    try:
        js = nc.jetstream(timeout=10)
        return {name: (await js.stream_info(stream_name(name, prefix))).config.num_replicas
                for name in STREAMS}
    finally:
        await nc.close()
