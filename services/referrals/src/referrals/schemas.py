"""Request and response bodies. Requests refuse unknown fields; every text is bounded.

Field types (enums, dates, lengths) are checked here; the rules across fields (age on the
day, release date, duplicates, consent) are the domain's, so both report the same dotted
field paths.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Annotated, Any
from uuid import UUID

import orjson
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, PlainSerializer, WithJsonSchema

from pathways_shared.erasure import ErasurePublic
from pathways_shared.events import iso_z
from pathways_shared.inputs import (
    AreaCode,
    Crn,
    InputBool,
    InputDate,
    NomsNumber,
    PncNumber,
    comments_required_when_other,
    not_blank,
)
from pathways_shared.pagination import NextCursor
from pathways_shared.problems import problem_responses as shared_problem_responses
from pathways_shared.vocabulary import (
    Complexity,
    NeedStatus,
    Pathway,
    Rosh,
    Sex,
    SupervisionStatus,
    WithdrawalReason,
)
from referrals.domain.referral import (
    Consent,
    HistoryEntry,
    NeedFlag,
    Person,
    Practitioner,
    Referral,
    ReferralStatus,
    Risk,
    Supervision,
    referral_status_of,
)
from referrals.domain.submission import MAX_NEEDS, MIN_NEEDS, NeedRequest, Submission

UtcDatetime = Annotated[
    datetime,
    PlainSerializer(iso_z, return_type=str),
    WithJsonSchema({"type": "string", "format": "date-time"}, mode="serialization"),
]

Short = Annotated[str, Field(max_length=100)]
Name = Annotated[str, Field(max_length=200)]
# Texts the submission rules refuse blank (their own message, every error at once): the
# schema says so with a pattern.
ShortText = Annotated[str, not_blank(100)]
NameText = Annotated[str, not_blank(200)]
EMAIL_JSON_PATTERN = r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$"
LongText = Annotated[str, Field(max_length=4000)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PersonIn(_Request):
    crn: Crn
    noms_number: NomsNumber | None = None
    pnc_number: PncNumber | None = None
    given_name: NameText
    family_name: NameText
    date_of_birth: InputDate
    sex: Sex
    needs_interpreter: InputBool = False
    interpreter_language: Short | None = None


class SupervisionIn(_Request):
    status: SupervisionStatus
    expected_release_date: InputDate | None = None


class RiskIn(_Request):
    rosh: Rosh
    mappa_level: Annotated[int, Field(json_schema_extra={"enum": [1, 2, 3]})] | None = None


class PractitionerIn(_Request):
    name: NameText
    email: Annotated[str, Field(max_length=320, json_schema_extra={
        "pattern": EMAIL_JSON_PATTERN, "maxLength": 254})]
    team: Name | None = None


class ConsentIn(_Request):
    # the referral is voluntary engagement: consent must be given (the rules say why if not)
    given: Annotated[InputBool, Field(json_schema_extra={"enum": [True]})]
    recorded_at: AwareDatetime | None = None


class NeedIn(_Request):
    pathway: Pathway
    complexity: Complexity
    details: LongText | None = None
    flags: Annotated[list[NeedFlag], Field(
        max_length=len(NeedFlag) * 2, json_schema_extra={"uniqueItems": True})] = []


class ReferralCreate(_Request):
    source_reference: ShortText
    area: AreaCode
    person: PersonIn
    supervision: SupervisionIn
    risk: RiskIn
    practitioner: PractitionerIn
    consent: ConsentIn
    # 1 to 7 is a domain rule (reported at `needs`); the 50 only bounds the payload.
    needs: Annotated[list[NeedIn], Field(
        max_length=50, json_schema_extra={"minItems": MIN_NEEDS, "maxItems": MAX_NEEDS})]

    def fingerprint(self) -> str:
        """The same body, however its keys are ordered or spaced, has the same fingerprint.

        The hash of `json.dumps(body, sort_keys=True, separators=(",", ":"))`, which stored
        referrals carry (a replay is matched by it). orjson writes the same bytes, several
        times faster, when they are printable ASCII with no escape in them (json escapes
        all else; orjson escapes some of it otherwise, and writes DEL and non-ASCII as
        they are): those bodies are hashed from orjson's, the others from json's."""
        body = self.model_dump(mode="json")
        canonical = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
        if not canonical.isascii() or b"\\" in canonical or b"\x7f" in canonical:
            canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(canonical).hexdigest()

    def to_domain(self) -> Submission:
        p, s, r, pr, c = self.person, self.supervision, self.risk, self.practitioner, self.consent
        return Submission(
            source_reference=self.source_reference,
            area=self.area,
            person=Person(
                crn=p.crn,
                noms_number=p.noms_number,
                pnc_number=p.pnc_number,
                given_name=p.given_name,
                family_name=p.family_name,
                date_of_birth=p.date_of_birth,
                sex=p.sex,
                needs_interpreter=p.needs_interpreter,
                interpreter_language=p.interpreter_language,
            ),
            supervision=Supervision(
                status=s.status, expected_release_date=s.expected_release_date
            ),
            risk=Risk(rosh=r.rosh, mappa_level=r.mappa_level),
            practitioner=Practitioner(name=pr.name, email=pr.email, team=pr.team),
            consent=Consent(given=c.given, recorded_at=c.recorded_at),
            needs=tuple(
                NeedRequest(
                    pathway=n.pathway,
                    complexity=n.complexity,
                    details=n.details,
                    flags=tuple(n.flags),
                )
                for n in self.needs
            ),
        )


class WithdrawalCreate(_Request):
    model_config = ConfigDict(extra="forbid", json_schema_extra=comments_required_when_other("reason_code"))

    reason_code: WithdrawalReason
    comments: LongText | None = None


# --------------------------------------------------------------------------- responses


PROBLEM_MEANINGS: dict[int, str] = {
    401: "No token, or a bad one",
    403: "The caller's role or areas do not allow this",
    404: "No such referral (or not in the caller's areas)",
    409: "The referral is already withdrawn or closed",
    422: "Invalid input: `errors` lists each field at fault",
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for these statuses, each a problem+json body."""
    return shared_problem_responses(PROBLEM_MEANINGS, *statuses)


class PersonPublic(BaseModel):
    crn: str
    noms_number: str | None
    pnc_number: str | None
    given_name: str
    family_name: str
    date_of_birth: date
    sex: Sex
    needs_interpreter: bool
    interpreter_language: str | None


class SupervisionPublic(BaseModel):
    status: SupervisionStatus
    expected_release_date: date | None


class RiskPublic(BaseModel):
    rosh: Rosh
    mappa_level: int | None


class PractitionerPublic(BaseModel):
    name: str
    email: str
    team: str | None


class ConsentPublic(BaseModel):
    given: bool
    recorded_at: UtcDatetime | None


class NeedPublic(BaseModel):
    id: UUID
    pathway: Pathway
    complexity: Complexity
    details: str | None
    flags: list[NeedFlag]
    status: NeedStatus
    service_code: str | None
    provider_code: str | None
    programme: str | None
    provider_referral_id: UUID | None
    status_reason: str | None
    allocated_at: UtcDatetime | None
    acknowledge_by: UtcDatetime | None
    respond_by: UtcDatetime | None
    updated_at: UtcDatetime


class WithdrawalPublic(BaseModel):
    reason_code: WithdrawalReason
    comments: str | None
    withdrawn_at: UtcDatetime
    withdrawn_by: str


class ReferralPublic(BaseModel):
    id: UUID
    source_reference: str
    area: str
    status: ReferralStatus
    submitted_at: UtcDatetime
    person: PersonPublic
    supervision: SupervisionPublic
    risk: RiskPublic
    practitioner: PractitionerPublic
    consent: ConsentPublic
    needs: list[NeedPublic]
    withdrawal: WithdrawalPublic | None

    @classmethod
    def of(cls, referral: Referral) -> ReferralPublic:
        """From the domain, whose values are already the right types: built without
        validating again (`model_construct`), as listing builds fifty at a time."""
        p = referral.person
        w = referral.withdrawal
        return cls.model_construct(
            id=referral.id,
            source_reference=referral.source_reference,
            area=referral.area,
            status=referral.status,
            submitted_at=referral.submitted_at,
            person=PersonPublic.model_construct(
                crn=p.crn,
                noms_number=p.noms_number,
                pnc_number=p.pnc_number,
                given_name=p.given_name,
                family_name=p.family_name,
                date_of_birth=p.date_of_birth,
                sex=p.sex,
                needs_interpreter=p.needs_interpreter,
                interpreter_language=p.interpreter_language,
            ),
            supervision=SupervisionPublic.model_construct(
                status=referral.supervision.status,
                expected_release_date=referral.supervision.expected_release_date,
            ),
            risk=RiskPublic.model_construct(rosh=referral.risk.rosh, mappa_level=referral.risk.mappa_level),
            practitioner=PractitionerPublic.model_construct(
                name=referral.practitioner.name,
                email=referral.practitioner.email,
                team=referral.practitioner.team,
            ),
            consent=ConsentPublic.model_construct(
                given=referral.consent.given, recorded_at=referral.consent.recorded_at
            ),
            needs=[
                NeedPublic.model_construct(
                    id=n.id,
                    pathway=n.pathway,
                    complexity=n.complexity,
                    details=n.details,
                    flags=list(n.flags),
                    status=n.status,
                    service_code=n.service_code,
                    provider_code=n.provider_code,
                    programme=n.programme,
                    provider_referral_id=n.provider_referral_id,
                    status_reason=n.status_reason,
                    allocated_at=n.allocated_at,
                    acknowledge_by=n.acknowledge_by,
                    respond_by=n.respond_by,
                    updated_at=n.updated_at,
                )
                for n in referral.needs
            ],
            withdrawal=WithdrawalPublic.model_construct(
                reason_code=w.reason_code,
                comments=w.comments,
                withdrawn_at=w.withdrawn_at,
                withdrawn_by=w.withdrawn_by,
            )
            if w
            else None,
        )


def _time(moment: datetime | None) -> str | None:
    return None if moment is None else iso_z(moment)


def referral_document(
    row: Mapping[str, Any], needs: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """The JSON of `ReferralPublic.of(referral)`, built straight from the stored referral row
    and its need rows (in position order), as mappings (`Row._mapping`: a column by key costs
    a tenth of `row.column`, whose every lookup goes through a caught AttributeError). Listing
    answers fifty referrals at a time; going through the domain and the response models was
    40% of its CPU (bench/README.md).
    `test_a_listed_referral_is_the_same_document_as_its_read` keeps the two identical."""
    withdrawn_at = row["withdrawn_at"]
    release = row["expected_release_date"]
    return {
        "id": str(row["id"]),
        "source_reference": row["source_reference"],
        "area": row["area"],
        "status": referral_status_of([n["status"] for n in needs]).value,
        "submitted_at": iso_z(row["submitted_at"]),
        "person": {
            "crn": row["crn"],
            "noms_number": row["noms_number"],
            "pnc_number": row["pnc_number"],
            "given_name": row["given_name"],
            "family_name": row["family_name"],
            "date_of_birth": row["date_of_birth"].isoformat(),
            "sex": row["sex"],
            "needs_interpreter": row["needs_interpreter"],
            "interpreter_language": row["interpreter_language"],
        },
        "supervision": {
            "status": row["supervision_status"],
            "expected_release_date": release.isoformat() if release else None,
        },
        "risk": {"rosh": row["rosh"], "mappa_level": row["mappa_level"]},
        "practitioner": {
            "name": row["practitioner_name"],
            "email": row["practitioner_email"],
            "team": row["practitioner_team"],
        },
        "consent": {
            "given": row["consent_given"], "recorded_at": _time(row["consent_recorded_at"])
        },
        "needs": [
            {
                "id": str(n["id"]),
                "pathway": n["pathway"],
                "complexity": n["complexity"],
                "details": n["details"],
                "flags": list(n["flags"]),
                "status": n["status"],
                "service_code": n["service_code"],
                "provider_code": n["provider_code"],
                "programme": n["programme"],
                "provider_referral_id": (
                    str(n["provider_referral_id"]) if n["provider_referral_id"] else None
                ),
                "status_reason": n["status_reason"],
                "allocated_at": _time(n["allocated_at"]),
                "acknowledge_by": _time(n["acknowledge_by"]),
                "respond_by": _time(n["respond_by"]),
                "updated_at": iso_z(n["updated_at"]),
            }
            for n in needs
        ],
        "withdrawal": {
            "reason_code": row["withdrawal_reason"],
            "comments": row["withdrawal_comments"],
            "withdrawn_at": iso_z(withdrawn_at),
            "withdrawn_by": row["withdrawn_by"] or "",
        }
        if withdrawn_at is not None
        else None,
    }


class ReferralsPublic(BaseModel):
    data: list[ReferralPublic]
    next_cursor: NextCursor


class HistoryEntryPublic(BaseModel):
    at: UtcDatetime
    actor: str
    event: str
    need_id: UUID | None
    detail: dict[str, Any]

    @classmethod
    def of(cls, entry: HistoryEntry) -> HistoryEntryPublic:
        return cls(
            at=entry.at,
            actor=entry.actor,
            event=entry.event,
            need_id=entry.need_id,
            detail=dict(entry.detail),
        )


class HistoryPublic(BaseModel):
    data: list[HistoryEntryPublic]
    next_cursor: NextCursor


class PathwayPublic(BaseModel):
    code: Pathway
    name: str


class PathwaysPublic(BaseModel):
    data: list[PathwayPublic]
    next_cursor: NextCursor = None


class AccessLogPublic(BaseModel):
    at: UtcDatetime
    actor: str
    roles: str
    action: str
    resource: str
    purpose: str

    @classmethod
    def of(cls, row: Any) -> AccessLogPublic:
        at = row.at if row.at.tzinfo else row.at.replace(tzinfo=UTC)
        return cls(
            at=at,
            actor=row.actor,
            roles=row.roles,
            action=row.action,
            resource=row.resource,
            purpose=row.purpose,
        )


class SubjectAccessReferral(BaseModel):
    referral: ReferralPublic
    history: list[HistoryEntryPublic]


class SubjectAccessPublic(BaseModel):
    """Everything this service holds on one person (DPA 2018 right of access)."""

    crn: str
    generated_at: UtcDatetime
    referrals: list[SubjectAccessReferral]
    access_log: list[AccessLogPublic]
    # What was erased once its retention period ended, and when: the erased referrals are no
    # longer found by the CRN, the erasure register still is (pathways_shared.erasure).
    erasures: list[ErasurePublic] = []
