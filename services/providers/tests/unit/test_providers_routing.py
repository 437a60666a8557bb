"""Eligibility and the routing rule, over the seed catalogue and small fakes."""

from __future__ import annotations

import dataclasses
from datetime import date
from typing import Any

import pytest

from pathways_shared.vocabulary import Complexity, Pathway, Sex, SupervisionStatus
from providers.domain.catalogue import Service, load_seed_catalogue
from providers.domain.routing import (
    CRITERIA,
    PREVIOUSLY_DECLINED,
    EligibilityQuery,
    age_on,
    assess,
    route,
)

CATALOGUE = load_seed_catalogue()
SERVICES = CATALOGUE.services
SOLIHULL = "E08000029"
BIRMINGHAM = "E08000025"


def query(**changes: Any) -> EligibilityQuery:
    base = EligibilityQuery(
        area=SOLIHULL,
        pathway=Pathway.ACCOMMODATION,
        complexity=Complexity.MEDIUM,
        sex=Sex.MALE,
        age=30,
        supervision_status=SupervisionStatus.LICENCE,
        flags=frozenset(),
        iom_member=False,
    )
    return dataclasses.replace(base, **changes)


def service(**changes: Any) -> Service:
    data: dict[str, Any] = {
        "code": "T-1",
        "name": "Test",
        "provider_code": "NACRO",
        "programme": "Test",
        "pathway": "accommodation",
        "areas": ["west-midlands"],
        "priority": 10,
    }
    data.update(changes)
    return Service.parse(data)


# Every catalogue row: a person and need it is chosen for.
@pytest.mark.parametrize(
    ("changes", "chosen"),
    [
        ({"pathway": Pathway.ACCOMMODATION, "sex": Sex.MALE}, "CRS-ACC-M"),
        ({"pathway": Pathway.ACCOMMODATION, "sex": Sex.FEMALE, "area": BIRMINGHAM}, "CRS-ACC-F"),
        (
            {
                "pathway": Pathway.FINANCE_BENEFIT_DEBT,
                "sex": Sex.MALE,
                "complexity": Complexity.HIGH,
            },
            "CRS-FBD-M",
        ),
        ({"pathway": Pathway.FINANCE_BENEFIT_DEBT, "sex": Sex.FEMALE}, "CRS-FBD-F"),
        ({"pathway": Pathway.FINANCE_BENEFIT_DEBT, "complexity": Complexity.LOW}, "COMM-FBD"),
        (
            {
                "pathway": Pathway.FINANCE_BENEFIT_DEBT,
                "supervision_status": SupervisionStatus.NON_STATUTORY,
            },
            "COMM-FBD",
        ),
        ({"pathway": Pathway.EDUCATION_TRAINING_EMPLOYMENT, "sex": Sex.MALE}, "CRS-ETE-M"),
        (
            {
                "pathway": Pathway.EDUCATION_TRAINING_EMPLOYMENT,
                "sex": Sex.FEMALE,
                "complexity": Complexity.HIGH,
            },
            "CRS-ETE-F",
        ),
        (
            {"pathway": Pathway.EDUCATION_TRAINING_EMPLOYMENT, "complexity": Complexity.LOW},
            "CFO3-ETE",
        ),
        (
            {
                "pathway": Pathway.CHILDREN_FAMILIES,
                "flags": frozenset({"parental_substance_misuse"}),
            },
            "HH-SIAS",
        ),
        ({"pathway": Pathway.CHILDREN_FAMILIES}, "EH-SMBC"),
        (
            {"pathway": Pathway.CHILDREN_FAMILIES, "flags": frozenset({"children_in_household"})},
            "EH-SMBC",
        ),
        (
            {
                "pathway": Pathway.DRUGS_ALCOHOL,
                "supervision_status": SupervisionStatus.NON_STATUTORY,
            },
            "DA-SIAS",
        ),
        ({"pathway": Pathway.HEALTH, "iom_member": True}, "ND-IOM"),
        ({"pathway": Pathway.ATTITUDES_THINKING_BEHAVIOUR, "area": "E08000031"}, "ATB-PS"),
        (
            {
                "pathway": Pathway.ACCOMMODATION,
                "supervision_status": SupervisionStatus.CUSTODY_PRE_RELEASE,
            },
            "CRS-ACC-M",
        ),
        ({"pathway": Pathway.ACCOMMODATION, "age": 18}, "CRS-ACC-M"),
        ({"pathway": Pathway.ACCOMMODATION, "age": 90}, "CRS-ACC-M"),
    ],
)
def test_routing_chooses_the_service_for_each_catalogue_row(
    changes: dict[str, Any], chosen: str
) -> None:
    decision = route(SERVICES, query(**changes))
    assert decision.chosen is not None and decision.chosen.code == chosen
    assert decision.allocated and decision.unallocated_reason is None


# Each criterion failing, on the seed catalogue: the first failing criterion is the reason.
@pytest.mark.parametrize(
    ("changes", "code", "criterion", "reason_part"),
    [
        ({"sex": Sex.MALE}, "CRS-ACC-F", "sex", "female people only, not male"),
        ({"sex": Sex.FEMALE}, "CRS-ACC-M", "sex", "male people only, not female"),
        (
            {"pathway": Pathway.FINANCE_BENEFIT_DEBT, "area": BIRMINGHAM},
            "COMM-FBD",
            "area",
            "Birmingham (E08000025)",
        ),
        ({"age": 17}, "CRS-ACC-M", "min_age", "aged 18 or over; the person is 17"),
        (
            {"supervision_status": SupervisionStatus.NON_STATUTORY},
            "CRS-ACC-M",
            "supervision_status",
            "statutory supervision only",
        ),
        (
            {"pathway": Pathway.FINANCE_BENEFIT_DEBT, "complexity": Complexity.LOW},
            "CRS-FBD-M",
            "complexity",
            "high or medium complexity, not low",
        ),
        (
            {"pathway": Pathway.EDUCATION_TRAINING_EMPLOYMENT, "complexity": Complexity.LOW},
            "CRS-ETE-M",
            "complexity",
            "not low",
        ),
        (
            {"pathway": Pathway.CHILDREN_FAMILIES},
            "HH-SIAS",
            "required_flags",
            "parental_substance_misuse",
        ),
        ({"pathway": Pathway.HEALTH}, "ND-IOM", "iom_membership", "members of an IOM cohort only"),
        ({"pathway": Pathway.DRUGS_ALCOHOL, "area": "E08000026"}, "DA-SIAS", "area", "Coventry"),
        (
            {
                "pathway": Pathway.EDUCATION_TRAINING_EMPLOYMENT,
                "supervision_status": SupervisionStatus.NON_STATUTORY,
            },
            "CFO3-ETE",
            "supervision_status",
            "not non_statutory",
        ),
        # sex is checked before complexity and supervision
        (
            {
                "pathway": Pathway.FINANCE_BENEFIT_DEBT,
                "sex": Sex.FEMALE,
                "complexity": Complexity.LOW,
                "supervision_status": SupervisionStatus.NON_STATUTORY,
            },
            "CRS-FBD-M",
            "sex",
            "male people only",
        ),
        # supervision is checked before complexity
        (
            {
                "pathway": Pathway.FINANCE_BENEFIT_DEBT,
                "complexity": Complexity.LOW,
                "supervision_status": SupervisionStatus.NON_STATUTORY,
            },
            "CRS-FBD-M",
            "supervision_status",
            "statutory",
        ),
        # area is checked before IOM membership
        ({"pathway": Pathway.HEALTH, "area": BIRMINGHAM}, "ND-IOM", "area", "Birmingham"),
    ],
)
def test_first_failing_criterion_is_the_reason(
    changes: dict[str, Any], code: str, criterion: str, reason_part: str
) -> None:
    decision = route(SERVICES, query(**changes))
    assessment = next(a for a in decision.assessments if a.service_code == code)
    assert not assessment.eligible
    assert assessment.criterion == criterion
    assert assessment.reason is not None and reason_part in assessment.reason


# Each criterion failing on a fake service, one at a time, in the fixed order.
@pytest.mark.parametrize(
    ("service_changes", "query_changes", "criterion"),
    [
        ({"active": False}, {}, "active"),
        ({"pathway": "health"}, {}, "pathway"),
        ({"areas": [BIRMINGHAM]}, {}, "area"),
        ({"eligibility": {"sexes": ["female"]}}, {}, "sex"),
        ({"eligibility": {"min_age": 31}}, {}, "min_age"),
        ({"eligibility": {"max_age": 29}}, {}, "max_age"),
        ({"eligibility": {"supervision_statuses": ["community_order"]}}, {}, "supervision_status"),
        ({"eligibility": {"complexities": ["high"]}}, {}, "complexity"),
        ({"eligibility": {"required_flags": ["women_specific"]}}, {}, "required_flags"),
        ({"eligibility": {"requires_iom_membership": True}}, {}, "iom_membership"),
        # every criterion failing at once: the first in the fixed order is reported
        (
            {
                "active": False,
                "pathway": "health",
                "areas": [BIRMINGHAM],
                "eligibility": {
                    "sexes": ["female"],
                    "min_age": 31,
                    "requires_iom_membership": True,
                },
            },
            {},
            "active",
        ),
        ({"areas": [BIRMINGHAM], "eligibility": {"sexes": ["female"]}}, {}, "area"),
        ({"eligibility": {"min_age": 40, "complexities": ["high"]}}, {}, "min_age"),
        (
            {"eligibility": {"complexities": ["high"], "required_flags": ["women_specific"]}},
            {},
            "complexity",
        ),
    ],
)
def test_each_criterion_fails_alone_and_in_order(
    service_changes: dict[str, Any], query_changes: dict[str, Any], criterion: str
) -> None:
    assessment = assess(service(**service_changes), query(**query_changes))
    assert (assessment.eligible, assessment.criterion) == (False, criterion)
    assert assessment.reason


@pytest.mark.parametrize(
    ("eligibility", "changes"),
    [
        ({"min_age": 30}, {"age": 30}),
        ({"max_age": 30}, {"age": 30}),
        ({"min_age": 25, "max_age": 25}, {"age": 25}),
        ({"sexes": ["male", "female"]}, {"sex": Sex.FEMALE}),
        ({"complexities": ["low", "medium"]}, {"complexity": Complexity.MEDIUM}),
        (
            {"required_flags": ["women_specific", "children_in_household"]},
            {
                "flags": frozenset(
                    {"women_specific", "children_in_household", "at_risk_of_homelessness"}
                )
            },
        ),
        ({"requires_iom_membership": True}, {"iom_member": True}),
        ({}, {"iom_member": True}),
    ],
)
def test_criteria_at_their_edges_pass(eligibility: dict[str, Any], changes: dict[str, Any]) -> None:
    assessment = assess(service(eligibility=eligibility), query(**changes))
    assert assessment.eligible and assessment.criterion is None and assessment.reason is None


def test_criteria_are_checked_in_the_fixed_order() -> None:
    assert [c.name for c in CRITERIA] == [
        "active",
        "pathway",
        "area",
        "sex",
        "min_age",
        "max_age",
        "supervision_status",
        "complexity",
        "required_flags",
        "iom_membership",
    ]


def test_all_required_flags_are_needed() -> None:
    fake = service(eligibility={"required_flags": ["women_specific", "children_in_household"]})
    assessment = assess(fake, query(flags=frozenset({"women_specific"})))
    assert assessment.criterion == "required_flags"
    assert assessment.reason is not None and "children_in_household" in assessment.reason


def test_a_named_status_list_is_described_by_its_statuses() -> None:
    fake = service(eligibility={"supervision_statuses": ["community_order", "licence"]})
    assessment = assess(fake, query(supervision_status=SupervisionStatus.NON_STATUTORY))
    assert assessment.reason == (
        "the service takes supervision status community_order or licence only, not non_statutory"
    )


@pytest.mark.parametrize(
    ("services", "chosen"),
    [
        # the lowest priority wins whatever the order given
        ([service(code="B", priority=20), service(code="A", priority=30)], "B"),
        ([service(code="A", priority=30), service(code="B", priority=20)], "B"),
        # ties broken by service code
        ([service(code="ZED", priority=10), service(code="ALPHA", priority=10)], "ALPHA"),
        ([service(code="CRS-B", priority=10), service(code="CRS-A", priority=10)], "CRS-A"),
        # an ineligible lower priority is passed over
        ([service(code="A", priority=1, active=False), service(code="B", priority=5)], "B"),
        # priority 0 beats everything
        ([service(code="Z", priority=0), service(code="A", priority=1)], "Z"),
    ],
)
def test_lowest_priority_then_code(services: list[Service], chosen: str) -> None:
    decision = route(services, query())
    assert decision.chosen is not None and decision.chosen.code == chosen


def test_assessments_cover_every_service_of_the_pathway_in_routing_order() -> None:
    decision = route(SERVICES, query(pathway=Pathway.FINANCE_BENEFIT_DEBT))
    assert [a.service_code for a in decision.assessments] == ["CRS-FBD-F", "CRS-FBD-M", "COMM-FBD"]
    assert [a.eligible for a in decision.assessments] == [False, True, True]
    eligible_but_not_chosen = decision.assessments[2]
    assert eligible_but_not_chosen.reason is None


@pytest.mark.parametrize(
    ("changes", "declined", "chosen"),
    [
        # CRS ETE declined goes to CFO3
        (
            {"pathway": Pathway.EDUCATION_TRAINING_EMPLOYMENT, "sex": Sex.MALE},
            {"CRS-ETE-M"},
            "CFO3-ETE",
        ),
        (
            {"pathway": Pathway.EDUCATION_TRAINING_EMPLOYMENT, "sex": Sex.FEMALE},
            {"CRS-ETE-F"},
            "CFO3-ETE",
        ),
        # CRS FBD declined in Solihull goes to the community service
        ({"pathway": Pathway.FINANCE_BENEFIT_DEBT}, {"CRS-FBD-M"}, "COMM-FBD"),
        # Hidden Harm declined goes to Early Help
        (
            {
                "pathway": Pathway.CHILDREN_FAMILIES,
                "flags": frozenset({"parental_substance_misuse"}),
            },
            {"HH-SIAS"},
            "EH-SMBC",
        ),
        # a decline by a service that was never eligible changes nothing
        ({"pathway": Pathway.ACCOMMODATION}, {"CRS-ACC-F"}, "CRS-ACC-M"),
    ],
)
def test_rerouting_skips_services_that_declined(
    changes: dict[str, Any], declined: set[str], chosen: str
) -> None:
    decision = route(SERVICES, query(**changes), declined_by=declined)
    assert decision.chosen is not None and decision.chosen.code == chosen
    for code in declined:
        skipped = next(a for a in decision.assessments if a.service_code == code)
        assert not skipped.eligible


def test_a_declined_service_is_recorded_as_declined() -> None:
    decision = route(
        SERVICES, query(pathway=Pathway.EDUCATION_TRAINING_EMPLOYMENT), declined_by={"CRS-ETE-M"}
    )
    first = decision.assessments[1]
    assert (first.service_code, first.criterion) == ("CRS-ETE-M", PREVIOUSLY_DECLINED)
    assert first.reason == "the service already declined this need"


@pytest.mark.parametrize(
    ("changes", "declined", "reason"),
    [
        # every eligible service declined
        (
            {"pathway": Pathway.EDUCATION_TRAINING_EMPLOYMENT},
            {"CRS-ETE-M", "CFO3-ETE"},
            (
                "no eligible service: CRS-ETE-F: the service is for female people only, not male; "
                "CRS-ETE-M: the service already declined this need; "
                "CFO3-ETE: the service already declined this need"
            ),
        ),
        (
            {"pathway": Pathway.DRUGS_ALCOHOL},
            {"DA-SIAS"},
            "every eligible service has declined this need: DA-SIAS",
        ),
        # the IOM-only service without membership
        (
            {"pathway": Pathway.HEALTH},
            set(),
            "no eligible service: ND-IOM: the service takes members of an IOM cohort only",
        ),
        # outside Solihull nobody delivers drugs and alcohol
        (
            {"pathway": Pathway.DRUGS_ALCOHOL, "area": BIRMINGHAM},
            set(),
            "no eligible service: DA-SIAS: the service does not cover Birmingham (E08000025)",
        ),
        # non-statutory ETE: neither CRS nor CFO3
        (
            {
                "pathway": Pathway.EDUCATION_TRAINING_EMPLOYMENT,
                "supervision_status": SupervisionStatus.NON_STATUTORY,
                "complexity": Complexity.LOW,
            },
            set(),
            (
                "no eligible service: CRS-ETE-F: the service is for female people only, not male; "
                "CRS-ETE-M: the service takes statutory supervision only, not non_statutory; "
                "CFO3-ETE: the service takes statutory supervision only, not non_statutory"
            ),
        ),
    ],
)
def test_unallocated_with_the_reason(
    changes: dict[str, Any], declined: set[str], reason: str
) -> None:
    decision = route(SERVICES, query(**changes), declined_by=declined)
    assert decision.chosen is None and not decision.allocated
    assert decision.unallocated_reason == reason


def test_unallocated_when_no_service_delivers_the_pathway() -> None:
    only_accommodation = [s for s in SERVICES if s.pathway == Pathway.ACCOMMODATION]
    decision = route(only_accommodation, query(pathway=Pathway.HEALTH))
    assert decision.chosen is None and decision.assessments == ()
    assert decision.unallocated_reason == "no service in the catalogue delivers health"


@pytest.mark.parametrize(("member", "chosen"), [(True, "ND-IOM"), (False, None)])
def test_the_iom_only_service_with_and_without_membership(member: bool, chosen: str | None) -> None:
    decision = route(SERVICES, query(pathway=Pathway.HEALTH, iom_member=member))
    assert (decision.chosen.code if decision.chosen else None) == chosen


def test_an_inactive_catalogue_service_is_not_chosen() -> None:
    services = [
        s if s.code != "CRS-ACC-M" else s.model_copy(update={"active": False}) for s in SERVICES
    ]
    decision = route(services, query())
    assert decision.chosen is None
    assert decision.assessments[1].criterion == "active"


@pytest.mark.parametrize(
    ("born", "on", "age"),
    [
        (date(2000, 6, 15), date(2018, 6, 14), 17),
        (date(2000, 6, 15), date(2018, 6, 15), 18),
        (date(2000, 6, 15), date(2018, 6, 16), 18),
        (date(2000, 6, 15), date(2019, 1, 1), 18),
        (date(1990, 4, 1), date(2026, 11, 24), 36),
        # born on 29 February: a year older on 1 March in common years
        (date(2008, 2, 29), date(2026, 2, 28), 17),
        (date(2008, 2, 29), date(2026, 3, 1), 18),
        (date(2008, 2, 29), date(2028, 2, 29), 20),
        (date(2026, 11, 24), date(2026, 11, 24), 0),
    ],
)
def test_age_on_the_day(born: date, on: date, age: int) -> None:
    assert age_on(born, on) == age
