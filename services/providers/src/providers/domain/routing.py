"""Eligibility and the routing rule (DOMAIN.md, "Routing rule").

Eligibility is a fixed list of criteria, checked in order; the first that fails is the reason
a service is not eligible, in words a practitioner can read. Routing picks, among the services
of the need's pathway, the eligible one with the lowest priority (ties by code), skipping
services that already declined this need, and records why every other service was passed over.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from pathways_shared.clock import age_on  # noqa: F401  (routing's ages)
from pathways_shared.vocabulary import (
    AREAS,
    STATUTORY_STATUSES,
    Complexity,
    Pathway,
    Sex,
    SupervisionStatus,
)
from providers.domain.catalogue import Service


@dataclass(frozen=True)
class EligibilityQuery:
    """What routing knows of a person and one need, as they were on the submission day."""

    area: str
    pathway: Pathway
    complexity: Complexity
    sex: Sex
    age: int
    supervision_status: SupervisionStatus
    flags: frozenset[str] = frozenset()
    iom_member: bool = False


@dataclass(frozen=True)
class Criterion:
    """One eligibility criterion: its name, and a check giving a reason when it fails."""

    name: str
    check: Callable[[Service, EligibilityQuery], str | None]


def _listing(values: Iterable[str]) -> str:
    items = sorted(str(v) for v in values)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


def _area_name(code: str) -> str:
    return f"{AREAS[code]} ({code})" if code in AREAS else code


def _active(service: Service, query: EligibilityQuery) -> str | None:
    return None if service.active else "the service is not active"


def _pathway(service: Service, query: EligibilityQuery) -> str | None:
    if service.pathway == query.pathway:
        return None
    return f"the service delivers {service.pathway}, not {query.pathway}"


def _area(service: Service, query: EligibilityQuery) -> str | None:
    if service.covers(query.area):
        return None
    return f"the service does not cover {_area_name(query.area)}"


def _sex(service: Service, query: EligibilityQuery) -> str | None:
    sexes = service.eligibility.sexes
    if sexes is None or query.sex in sexes:
        return None
    return f"the service is for {_listing(sexes)} people only, not {query.sex}"


def _min_age(service: Service, query: EligibilityQuery) -> str | None:
    minimum = service.eligibility.min_age
    if query.age >= minimum:
        return None
    return f"the service takes people aged {minimum} or over; the person is {query.age}"


def _max_age(service: Service, query: EligibilityQuery) -> str | None:
    maximum = service.eligibility.max_age
    if maximum is None or query.age <= maximum:
        return None
    return f"the service takes people aged {maximum} or under; the person is {query.age}"


def _supervision(service: Service, query: EligibilityQuery) -> str | None:
    statuses = service.eligibility.supervision_statuses
    if statuses is None or query.supervision_status in statuses:
        return None
    if frozenset(statuses) == STATUTORY_STATUSES:
        accepted = "statutory supervision only"
    else:
        accepted = f"supervision status {_listing(statuses)} only"
    return f"the service takes {accepted}, not {query.supervision_status}"


def _complexity(service: Service, query: EligibilityQuery) -> str | None:
    complexities = service.eligibility.complexities
    if complexities is None or query.complexity in complexities:
        return None
    return f"the service takes needs of {_listing(complexities)} complexity, not {query.complexity}"


def _required_flags(service: Service, query: EligibilityQuery) -> str | None:
    missing = [f for f in service.eligibility.required_flags if f not in query.flags]
    if not missing:
        return None
    return f"the service needs the need flag {_listing(missing)}"


def _iom_membership(service: Service, query: EligibilityQuery) -> str | None:
    if not service.eligibility.requires_iom_membership or query.iom_member:
        return None
    return "the service takes members of an IOM cohort only"


CRITERIA: tuple[Criterion, ...] = (
    Criterion("active", _active),
    Criterion("pathway", _pathway),
    Criterion("area", _area),
    Criterion("sex", _sex),
    Criterion("min_age", _min_age),
    Criterion("max_age", _max_age),
    Criterion("supervision_status", _supervision),
    Criterion("complexity", _complexity),
    Criterion("required_flags", _required_flags),
    Criterion("iom_membership", _iom_membership),
)

PREVIOUSLY_DECLINED = "previously_declined"


@dataclass(frozen=True)
class Assessment:
    """One service judged for one need. `criterion` names the first failing check."""

    service_code: str
    eligible: bool
    criterion: str | None = None
    reason: str | None = None


def assess(service: Service, query: EligibilityQuery) -> Assessment:
    for criterion in CRITERIA:
        reason = criterion.check(service, query)
        if reason is not None:
            return Assessment(service.code, False, criterion.name, reason)
    return Assessment(service.code, True)


@dataclass(frozen=True)
class RoutingDecision:
    """The chosen service (or none, with the reason) and every service's assessment."""

    chosen: Service | None
    assessments: tuple[Assessment, ...]
    unallocated_reason: str | None = None

    @property
    def allocated(self) -> bool:
        return self.chosen is not None


def route(
    services: Iterable[Service],
    query: EligibilityQuery,
    declined_by: Iterable[str] = (),
) -> RoutingDecision:
    """Choose a service for one need by the routing rule."""
    declined = frozenset(declined_by)
    candidates = sorted(
        (s for s in services if s.pathway == query.pathway), key=lambda s: (s.priority, s.code)
    )
    assessments = []
    chosen: Service | None = None
    for service in candidates:
        assessment = assess(service, query)
        if assessment.eligible and service.code in declined:
            assessment = Assessment(
                service.code, False, PREVIOUSLY_DECLINED, "the service already declined this need"
            )
        if assessment.eligible and chosen is None:
            chosen = service
        assessments.append(assessment)
    if chosen is not None:
        return RoutingDecision(chosen, tuple(assessments))
    return RoutingDecision(None, tuple(assessments), _unallocated_reason(query, assessments))


def _unallocated_reason(query: EligibilityQuery, assessments: list[Assessment]) -> str:
    if not assessments:
        return f"no service in the catalogue delivers {query.pathway}"
    if all(a.criterion == PREVIOUSLY_DECLINED for a in assessments):
        return "every eligible service has declined this need: " + ", ".join(
            a.service_code for a in assessments
        )
    return "no eligible service: " + "; ".join(f"{a.service_code}: {a.reason}" for a in assessments)
