"""Routing a submitted referral reads, on PostgreSQL, its inputs in one statement (IOM
membership, the needs already stored or withdrawn, the catalogue's fingerprint) and keeps the
catalogue loaded until its fingerprint changes. The one statement reads what the steps read,
and the cached catalogue is always the catalogue as stored, also after `PUT /services/{code}`."""

from __future__ import annotations

import dataclasses
import uuid

from pathways_shared.events import make_event
from pathways_shared.testing import auth, wait_until
from providers.repository import NeedRepository
from providers.service import cached_catalogue, load_catalogue

from .test_providers_routing_flow import _processed


async def _reads(sessionmaker, crn, need_ids):
    async with sessionmaker() as session:
        repo = NeedRepository(session)
        one = await repo.routing_reads(crn, need_ids)
        steps = await repo._routing_reads_in_steps(crn, need_ids)
    assert one.catalogue is not None and steps.catalogue is None
    assert dataclasses.replace(one, catalogue=None) == steps
    return one


async def test_one_statement_reads_what_the_steps_read(
    app, sessionmaker, publish, make_submitted
):
    stored, withdrawn, unknown = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    ids = [stored, withdrawn, unknown]
    before = await _reads(sessionmaker, "M111111", ids)
    assert before.known == before.withdrawn == frozenset() and not before.iom_member

    member = make_event("cohorts.member.selected", {
        "area": "E08000029", "cohort": "fixed", "score": 60,
        "reviewDueAt": "2027-02-16T00:00:00Z"}, crn="M111111")
    gone = make_event("referrals.referral.withdrawn", {
        "referralId": str(uuid.uuid4()), "needIds": [str(withdrawn)], "reasonCode": "duplicate"},
        crn="M111111")
    submitted = make_submitted(crn="M111111", needs=[
        {"needId": str(stored), "pathway": "accommodation", "complexity": "low"}])
    for event in (member, gone, submitted):
        await publish(event)
        await wait_until(lambda event=event: _processed(sessionmaker, event.id))

    after = await _reads(sessionmaker, "M111111", ids)
    assert after.iom_member
    assert after.known == {stored} and after.withdrawn == {withdrawn}
    assert after.catalogue == before.catalogue  # routing changed no service


async def test_the_cached_catalogue_is_the_stored_one_also_after_a_put(app, client, sessionmaker):
    async def both():
        async with sessionmaker() as session:
            reads = await NeedRepository(session).routing_reads("X123456", [])
            return reads.catalogue, await cached_catalogue(session, reads.catalogue), \
                await load_catalogue(session)

    fingerprint, cached, stored = await both()
    assert cached == stored and len(stored) > 1
    again, cached_again, _ = await both()
    assert again == fingerprint and cached_again is cached  # loaded once

    [service] = [s for s in stored if s.code == "CRS-ACC-M"]
    body = service.model_dump(mode="json", exclude={"code"}) | {"priority": service.priority + 7}
    response = await client.put("/services/CRS-ACC-M", json=body, headers=auth("admin"))
    assert response.status_code == 200, response.text

    changed, cached, stored = await both()
    assert changed != fingerprint
    assert cached == stored
    assert [s.priority for s in cached if s.code == "CRS-ACC-M"] == [service.priority + 7]
