"""Migration 0003 keeps the referrals already stored (on SQLite, as `make run` uses) and makes
their keys the submitting client's own."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from pathways_shared.migrations import upgrade

SERVICE_ROOT = Path(__file__).resolve().parents[2]

ROW = {
    "id": "0" * 32, "source_reference": "NDELIUS-1", "idempotency_key": "k", "fingerprint": "f",
    "area": "E08000029", "status": "open", "crn": "X123456", "given_name": "Sam",
    "family_name": "Example", "date_of_birth": "1990-04-01", "sex": "male",
    "needs_interpreter": 0, "supervision_status": "licence", "rosh": "low",
    "practitioner_name": "A", "practitioner_email": "a@probation.example", "consent_given": 1,
    "submitted_at": "2026-01-01 00:00:00", "submitted_by": "case-system",
    "updated_at": "2026-01-01 00:00:00",
}


def _insert(path: Path, row: dict) -> None:
    with sqlite3.connect(path) as db:
        db.execute(
            f"INSERT INTO referrals ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
            list(row.values()),
        )


def test_existing_referrals_take_their_submitter_as_client(tmp_path):
    path = tmp_path / "referrals.db"
    url = f"sqlite+aiosqlite:///{path}"
    upgrade(SERVICE_ROOT, url, "0002")
    _insert(path, ROW)
    upgrade(SERVICE_ROOT, url)
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT submitting_client FROM referrals").fetchall() == [
            ("case-system",)
        ]
    # Another client may now use the same keys; the same client may not.
    _insert(path, {**ROW, "id": "1" * 32, "submitting_client": "other-system"})
    with pytest.raises(sqlite3.IntegrityError):
        _insert(path, {**ROW, "id": "2" * 32, "submitting_client": "case-system"})
