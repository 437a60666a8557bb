"""The baseline of the submit-throughput benchmark: a bare FastAPI endpoint doing the same
inserts as `POST /referrals` (a referral row and an outbox row, shaped like the real ones,
into a database migrated with the referrals service's own migrations, so the same tables and
indexes) with raw asyncpg, in one transaction. No authentication, validation, domain rules,
needs, history, access log or relay: the floor the real service is compared with.
Run under uvicorn exactly as the services are (`uvicorn.run(app, log_config=None)`; uvloop
and httptools when installed), one worker.

    python bench/_baseline_app.py --port 8101 --dsn postgresql://postgres@127.0.0.1/db
"""

from __future__ import annotations

import argparse
import hashlib
import json
import uuid
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime
from typing import Annotated, Any

import asyncpg
import uvicorn
from fastapi import Body, FastAPI, Response

INSERT_REFERRAL = """
INSERT INTO referrals (id, source_reference, idempotency_key, fingerprint, area, status, crn,
    noms_number, pnc_number, given_name, family_name, date_of_birth, sex, needs_interpreter,
    interpreter_language, supervision_status, expected_release_date, rosh, mappa_level,
    practitioner_name, practitioner_email, practitioner_team, consent_given,
    consent_recorded_at, submitted_at, submitted_by, updated_at, submitting_client)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19,
    $20, $21, $22, $23, $24, $25, $26, $27, $26)
"""
INSERT_OUTBOX = """
INSERT INTO outbox (event_id, event_type, subject, payload, headers, created_at, attempts)
VALUES ($1, $2, $3, $4, $5, $6, 0)
"""


def make_app(dsn: str, pool_size: int) -> FastAPI:
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state["pool"] = await asyncpg.create_pool(dsn, min_size=pool_size, max_size=pool_size)
        yield
        await state["pool"].close()

    app = FastAPI(lifespan=lifespan)

    @app.post("/referrals", status_code=201)
    async def submit(response: Response, body: Annotated[dict[str, Any], Body()]) -> dict[str, Any]:
        now = datetime.now(UTC)
        referral_id = uuid.uuid4()
        person, supervision = body["person"], body["supervision"]
        risk, practitioner, consent = body["risk"], body["practitioner"], body["consent"]
        fingerprint = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        dob = date.fromisoformat(person["date_of_birth"])
        envelope = {
            "id": str(uuid.uuid4()),
            "eventType": "referrals.referral.submitted",
            "version": 1,
            "description": "A referral was submitted by probation",
            "occurredAt": now.isoformat().replace("+00:00", "Z"),
            "detailUrl": f"http://127.0.0.1/referrals/{referral_id}",
            "personReference": {"identifiers": [{"type": "CRN", "value": person["crn"]}]},
            "additionalInformation": {
                "referralId": str(referral_id),
                "area": body["area"],
                "needs": [
                    {"needId": str(uuid.uuid4()), "pathway": n["pathway"],
                     "complexity": n["complexity"], "flags": n.get("flags", [])}
                    for n in body["needs"]
                ],
                "sex": person["sex"],
                "ageOnSubmission": now.year - dob.year,
                "supervisionStatus": supervision["status"],
                "rosh": risk["rosh"],
                "mappaLevel": risk["mappa_level"],
            },
        }
        recorded_at = consent.get("recorded_at")
        async with state["pool"].acquire() as conn, conn.transaction():
            await conn.execute(
                INSERT_REFERRAL,
                referral_id, body["source_reference"], None, fingerprint, body["area"], "open",
                person["crn"], person["noms_number"], person["pnc_number"], person["given_name"],
                person["family_name"], dob, person["sex"], person["needs_interpreter"],
                person["interpreter_language"], supervision["status"], None, risk["rosh"],
                risk["mappa_level"], practitioner["name"], practitioner["email"],
                practitioner["team"], consent["given"],
                datetime.fromisoformat(recorded_at) if recorded_at else None,
                now, "bench-probation", now,
            )
            await conn.execute(
                INSERT_OUTBOX,
                envelope["id"], envelope["eventType"],
                envelope["eventType"], json.dumps(envelope),
                json.dumps({"Nats-Msg-Id": envelope["id"]}), now,
            )
        response.headers["Location"] = f"/referrals/{referral_id}"
        return {"id": str(referral_id), "status": "open", **body}

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--pool-size", type=int, default=20)
    args = parser.parse_args()
    uvicorn.run(make_app(args.dsn, args.pool_size), host="127.0.0.1", port=args.port,
                log_config=None)


if __name__ == "__main__":
    main()
