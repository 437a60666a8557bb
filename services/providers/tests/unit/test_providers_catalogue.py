"""The catalogue model, its validation and the seed data of DOMAIN.md."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from pathways_shared.vocabulary import AREAS, PROVIDER_CODES, STATUTORY_STATUSES
from providers.domain.catalogue import Catalogue, Service, load_seed_catalogue
from providers.errors import InvalidService

STATUTORY = sorted(STATUTORY_STATUSES)


def valid_service(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "code": "TEST-SVC",
        "name": "A test service",
        "provider_code": "NACRO",
        "programme": "CRS",
        "pathway": "accommodation",
        "areas": ["west-midlands"],
        "priority": 10,
        "eligibility": {
            "sexes": ["male"],
            "min_age": 18,
            "max_age": None,
            "supervision_statuses": STATUTORY,
            "complexities": None,
            "required_flags": [],
            "requires_iom_membership": False,
        },
        "acknowledge_days": 2,
        "respond_days": 5,
        "active": True,
    }
    for path, value in changes.items():
        target = data
        *parents, leaf = path.split("__")
        for parent in parents:
            target = target[parent]
        target[leaf] = value
    return data


# code, provider, programme, pathway, sexes, statutory only, complexities, flags, iom, areas, priority
SEED_ROWS = [
    (
        "CRS-ACC-M",
        "NACRO",
        "CRS",
        "accommodation",
        ["male"],
        True,
        None,
        [],
        False,
        ["west-midlands"],
        10,
    ),
    (
        "CRS-ACC-F",
        "CHANGING_LIVES",
        "CRS",
        "accommodation",
        ["female"],
        True,
        None,
        [],
        False,
        ["west-midlands"],
        10,
    ),
    (
        "CRS-FBD-M",
        "INGEUS",
        "CRS",
        "finance_benefit_debt",
        ["male"],
        True,
        ["medium", "high"],
        [],
        False,
        ["west-midlands"],
        10,
    ),
    (
        "CRS-FBD-F",
        "CHANGING_LIVES",
        "CRS",
        "finance_benefit_debt",
        ["female"],
        True,
        ["medium", "high"],
        [],
        False,
        ["west-midlands"],
        10,
    ),
    (
        "COMM-FBD",
        "CWH",
        "Community",
        "finance_benefit_debt",
        None,
        False,
        None,
        [],
        False,
        ["E08000029"],
        50,
    ),
    (
        "CRS-ETE-M",
        "MAXIMUS",
        "CRS",
        "education_training_employment",
        ["male"],
        True,
        ["medium", "high"],
        [],
        False,
        ["west-midlands"],
        10,
    ),
    (
        "CRS-ETE-F",
        "CHANGING_LIVES",
        "CRS",
        "education_training_employment",
        ["female"],
        True,
        ["medium", "high"],
        [],
        False,
        ["west-midlands"],
        10,
    ),
    (
        "CFO3-ETE",
        "IXION",
        "CFO3",
        "education_training_employment",
        None,
        True,
        None,
        [],
        False,
        ["west-midlands"],
        20,
    ),
    (
        "HH-SIAS",
        "SIAS",
        "Hidden Harm",
        "children_families",
        None,
        False,
        None,
        ["parental_substance_misuse"],
        False,
        ["E08000029"],
        10,
    ),
    (
        "EH-SMBC",
        "SMBC_EARLY_HELP",
        "Community",
        "children_families",
        None,
        False,
        None,
        [],
        False,
        ["E08000029"],
        50,
    ),
    (
        "DA-SIAS",
        "SIAS",
        "Community",
        "drugs_alcohol",
        None,
        False,
        None,
        [],
        False,
        ["E08000029"],
        10,
    ),
    (
        "ND-IOM",
        "ND_SERVICE",
        "Commissioned",
        "health",
        None,
        False,
        None,
        [],
        True,
        ["E08000029"],
        10,
    ),
    (
        "ATB-PS",
        "PROBATION",
        "Probation",
        "attitudes_thinking_behaviour",
        None,
        True,
        None,
        [],
        False,
        ["west-midlands"],
        10,
    ),
]


def test_seed_catalogue_has_exactly_the_services_of_the_domain() -> None:
    catalogue = load_seed_catalogue()
    assert [s.code for s in catalogue.services] == [row[0] for row in SEED_ROWS]


def test_seed_catalogue_lists_every_provider_once() -> None:
    catalogue = load_seed_catalogue()
    assert sorted(p.code for p in catalogue.providers) == sorted(PROVIDER_CODES)
    assert {p.code: p.name for p in catalogue.providers}["CWH"] == "Community Wellbeing Hub"


@pytest.mark.parametrize(
    (
        "code",
        "provider",
        "programme",
        "pathway",
        "sexes",
        "statutory",
        "complexities",
        "flags",
        "iom",
        "areas",
        "priority",
    ),
    SEED_ROWS,
)
def test_seed_service_matches_its_row(
    code: str,
    provider: str,
    programme: str,
    pathway: str,
    sexes: list[str] | None,
    statutory: bool,
    complexities: list[str] | None,
    flags: list[str],
    iom: bool,
    areas: list[str],
    priority: int,
) -> None:
    service = load_seed_catalogue().service(code)
    assert service is not None
    assert (service.provider_code, service.programme, service.pathway) == (
        provider,
        programme,
        pathway,
    )
    eligibility = service.eligibility
    assert (list(eligibility.sexes) if eligibility.sexes else None) == sexes
    assert eligibility.min_age == 18 and eligibility.max_age is None
    statuses = eligibility.supervision_statuses
    assert (frozenset(statuses) == STATUTORY_STATUSES) if statutory else statuses is None
    assert (list(eligibility.complexities) if eligibility.complexities else None) == complexities
    assert list(eligibility.required_flags) == flags
    assert eligibility.requires_iom_membership is iom
    assert list(service.areas) == areas and service.priority == priority
    assert (service.acknowledge_days, service.respond_days, service.active) == (2, 5, True)


@pytest.mark.parametrize(
    ("areas", "covered"),
    [
        (["west-midlands"], set(AREAS)),
        (["E08000029"], {"E08000029"}),
        (["E08000029", "E08000025"], {"E08000029", "E08000025"}),
    ],
)
def test_service_covers_its_areas_with_regions_expanded(
    areas: list[str], covered: set[str]
) -> None:
    service = Service.parse(valid_service(areas=areas))
    assert service.covered_areas == covered
    assert all(service.covers(a) == (a in covered) for a in AREAS)


def test_a_valid_service_round_trips_through_its_json_form() -> None:
    service = Service.parse(valid_service())
    assert Service.parse(service.model_dump(mode="json")) == service


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"code": "x"}, "code"),
        ({"code": "lower-case"}, "code"),
        ({"code": "BAD--CODE"}, "code"),
        ({"code": "A" * 33}, "code"),
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({"provider_code": "ACME"}, "provider_code"),
        ({"programme": ""}, "programme"),
        ({"pathway": "housing"}, "pathway"),
        ({"areas": []}, "areas"),
        ({"areas": ["E09000001"]}, "areas"),
        ({"areas": ["E08000029", "E08000029"]}, "areas"),
        ({"priority": -1}, "priority"),
        ({"priority": "10"}, "priority"),
        ({"priority": 1001}, "priority"),
        ({"acknowledge_days": 0}, "acknowledge_days"),
        ({"respond_days": 61}, "respond_days"),
        ({"acknowledge_days": 5, "respond_days": 2}, "respond_days"),
        ({"active": "yes"}, "active"),
        ({"unknown": 1}, "unknown"),
        ({"eligibility__sexes": []}, "eligibility.sexes"),
        ({"eligibility__sexes": ["male", "male"]}, "eligibility.sexes"),
        ({"eligibility__sexes": ["other"]}, "eligibility.sexes.0"),
        ({"eligibility__min_age": 17}, "eligibility.min_age"),
        ({"eligibility__min_age": 121}, "eligibility.min_age"),
        ({"eligibility__min_age": 18.5}, "eligibility.min_age"),
        ({"eligibility__max_age": 17}, "eligibility.max_age"),
        ({"eligibility__min_age": 30, "eligibility__max_age": 25}, "eligibility.max_age"),
        ({"eligibility__supervision_statuses": ["on_bail"]}, "eligibility.supervision_statuses.0"),
        ({"eligibility__supervision_statuses": []}, "eligibility.supervision_statuses"),
        ({"eligibility__complexities": ["extreme"]}, "eligibility.complexities.0"),
        ({"eligibility__complexities": ["low", "low"]}, "eligibility.complexities"),
        ({"eligibility__required_flags": ["homeless"]}, "eligibility.required_flags.0"),
        (
            {"eligibility__required_flags": ["women_specific", "women_specific"]},
            "eligibility.required_flags",
        ),
        ({"eligibility__requires_iom_membership": "no"}, "eligibility.requires_iom_membership"),
        ({"eligibility__pathway": "health"}, "eligibility.pathway"),
    ],
)
def test_invalid_service_names_the_field_at_fault(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidService) as caught:
        Service.parse(valid_service(**changes))
    assert caught.value.status == 422
    assert [e.field for e in caught.value.field_errors] == [field]
    assert all(e.message for e in caught.value.field_errors)


@pytest.mark.parametrize(
    "missing", ["code", "name", "provider_code", "programme", "pathway", "areas", "priority"]
)
def test_required_fields_of_a_service(missing: str) -> None:
    data = valid_service()
    del data[missing]
    with pytest.raises(InvalidService) as caught:
        Service.parse(data)
    assert [e.field for e in caught.value.field_errors] == [missing]


def test_defaults_of_a_service_are_the_domain_service_levels() -> None:
    data = valid_service()
    for optional in ("eligibility", "acknowledge_days", "respond_days", "active"):
        del data[optional]
    service = Service.parse(data)
    assert (service.acknowledge_days, service.respond_days, service.active) == (2, 5, True)
    assert service.eligibility.min_age == 18
    assert service.eligibility.sexes is None and service.eligibility.required_flags == ()


def test_errors_can_be_prefixed_with_the_body_path() -> None:
    with pytest.raises(InvalidService) as caught:
        Service.parse(valid_service(priority=-1), prefix="service")
    assert [e.field for e in caught.value.field_errors] == ["service.priority"]


def _seed_data() -> dict[str, Any]:
    catalogue = load_seed_catalogue()
    return copy.deepcopy(catalogue.model_dump(mode="json"))


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d["services"].append(d["services"][0]), "services.13.code"),
        (lambda d: d["providers"].append(d["providers"][0]), "providers.10.code"),
        (
            lambda d: d.update(providers=[p for p in d["providers"] if p["code"] != "NACRO"]),
            "services.0.provider_code",
        ),
        (lambda d: d["services"][2].update(priority=-5), "services.2.priority"),
        (lambda d: d["providers"][0].update(code="ACME"), "providers.0.code"),
    ],
)
def test_invalid_catalogue_names_the_field_at_fault(mutate: Any, field: str) -> None:
    data = _seed_data()
    mutate(data)
    with pytest.raises(InvalidService) as caught:
        Catalogue.parse(data)
    assert field in [e.field for e in caught.value.field_errors]


@pytest.mark.parametrize(
    ("pathway", "codes"),
    [
        ("accommodation", ["CRS-ACC-M", "CRS-ACC-F"]),
        ("finance_benefit_debt", ["CRS-FBD-M", "CRS-FBD-F", "COMM-FBD"]),
        ("education_training_employment", ["CRS-ETE-M", "CRS-ETE-F", "CFO3-ETE"]),
        ("children_families", ["HH-SIAS", "EH-SMBC"]),
        ("drugs_alcohol", ["DA-SIAS"]),
        ("health", ["ND-IOM"]),
        ("attitudes_thinking_behaviour", ["ATB-PS"]),
    ],
)
def test_services_for_a_pathway(pathway: str, codes: list[str]) -> None:
    assert [s.code for s in load_seed_catalogue().for_pathway(pathway)] == codes


def test_unknown_service_code_is_none() -> None:
    assert load_seed_catalogue().service("NOPE") is None
