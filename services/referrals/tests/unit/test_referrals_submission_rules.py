"""Each submission rule beyond field types, with its edges, reported at its dotted field path."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest

from pathways_shared.clock import age_on, london_day
from pathways_shared.errors import FieldError
from pathways_shared.vocabulary import Complexity, Pathway, Rosh, SupervisionStatus
from referrals.domain.referral import Consent, NeedFlag, Practitioner, Risk, Supervision
from referrals.domain.submission import (
    InvalidSubmission,
    NeedRequest,
    submission_errors,
    validate_submission,
)

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


def need(pathway: Pathway, *flags: NeedFlag) -> NeedRequest:
    return NeedRequest(pathway=pathway, complexity=Complexity.LOW, flags=flags)


ALL_PATHWAYS = tuple(need(pathway) for pathway in Pathway)


def fields(errors: list[FieldError]) -> list[str]:
    return [error.field for error in errors]


def test_the_example_referral_is_valid(build):
    assert submission_errors(build.submission(), NOW) == []
    validate_submission(build.submission(), NOW)


# ----------------------------------------------------------------------------- age


@pytest.mark.parametrize(
    ("date_of_birth", "day", "age"),
    [
        (date(2008, 11, 24), date(2026, 11, 24), 18),  # 18th birthday
        (date(2008, 11, 25), date(2026, 11, 24), 17),  # the day before
        (date(2008, 2, 29), date(2026, 2, 28), 17),  # leap-day birthday, non-leap year
        (date(2008, 2, 29), date(2026, 3, 1), 18),
        (date(2008, 2, 29), date(2028, 2, 29), 20),
        (date(1990, 12, 31), date(2026, 1, 1), 35),
    ],
)
def test_age_on_counts_whole_years(date_of_birth, day, age):
    assert age_on(date_of_birth, day) == age


@pytest.mark.parametrize(
    ("instant", "day"),
    [
        (datetime(2026, 6, 30, 23, 30, tzinfo=UTC), date(2026, 7, 1)),  # BST: London is ahead
        (datetime(2026, 6, 30, 22, 59, tzinfo=UTC), date(2026, 6, 30)),
        (datetime(2026, 12, 31, 23, 30, tzinfo=UTC), date(2026, 12, 31)),  # GMT: same day
    ],
)
def test_london_day_is_the_calendar_day_in_london(instant, day):
    assert london_day(instant) == day


def test_london_day_refuses_a_naive_time():
    with pytest.raises(ValueError):
        london_day(datetime(2026, 1, 1, 12, 0))


@pytest.mark.parametrize(
    ("date_of_birth", "now", "valid"),
    [
        (date(2008, 11, 24), NOW, True),  # 18 today
        (date(2008, 11, 25), NOW, False),  # 18 tomorrow
        # 23:30 UTC on 30 June is 1 July in London: the London day decides.
        (date(2008, 7, 1), datetime(2026, 6, 30, 23, 30, tzinfo=UTC), True),
        (date(2008, 7, 1), datetime(2026, 6, 30, 22, 30, tzinfo=UTC), False),
        (date(2008, 2, 29), datetime(2026, 2, 28, 12, 0, tzinfo=UTC), False),
        (date(2008, 2, 29), datetime(2026, 3, 1, 12, 0, tzinfo=UTC), True),
        (date(1906, 11, 25), NOW, True),  # 119
        (date(1906, 11, 24), NOW, True),  # 120
        (date(1905, 11, 24), NOW, False),  # 121: not plausible
        (date(2026, 11, 25), NOW, False),  # born tomorrow
        # on a leap day: someone born on 1 March is not 18 until 1 March
        (date(2010, 2, 28), datetime(2028, 2, 29, 12, 0, tzinfo=UTC), True),
        (date(2010, 3, 1), datetime(2028, 2, 29, 23, 59, tzinfo=UTC), False),  # GMT: still 29th
        (date(2010, 3, 1), datetime(2028, 3, 1, 0, 0, tzinfo=UTC), True),
        (date(2010, 2, 28), datetime(2028, 2, 27, 23, 59, tzinfo=UTC), False),  # month end, GMT
        # the night the clocks go forward (28 March 2027, 01:00 UTC): 23:00 UTC is midnight BST
        (date(2009, 3, 29), datetime(2027, 3, 28, 22, 59, tzinfo=UTC), False),
        (date(2009, 3, 29), datetime(2027, 3, 28, 23, 0, tzinfo=UTC), True),
        (date(2009, 3, 28), datetime(2027, 3, 28, 1, 30, tzinfo=UTC), True),  # 02:30 BST
        # the night the clocks go back (31 October 2027): midnight is 00:00 UTC again
        (date(2009, 11, 1), datetime(2027, 10, 31, 23, 30, tzinfo=UTC), False),
        (date(2009, 11, 1), datetime(2027, 11, 1, 0, 0, tzinfo=UTC), True),
        (date(2009, 10, 31), datetime(2027, 10, 30, 23, 30, tzinfo=UTC), True),  # BST: the 31st
    ],
)
def test_the_person_must_be_18_on_the_submission_day_in_london(build, date_of_birth, now, valid):
    sub = build.submission(person=build.person(date_of_birth=date_of_birth))
    errors = submission_errors(sub, now)
    assert fields(errors) == ([] if valid else ["person.date_of_birth"])


def test_the_under_18_message_points_to_youth_justice(build):
    sub = build.submission(person=build.person(date_of_birth=date(2010, 1, 1)))
    [error] = submission_errors(sub, NOW)
    assert "16" in error.message and "Youth Justice" in error.message


# ----------------------------------------------------------------------------- identifiers


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"crn": "x123456"}, "person.crn"),
        ({"crn": "X12345"}, "person.crn"),
        ({"crn": "X1234567"}, "person.crn"),
        ({"crn": "XX23456"}, "person.crn"),
        ({"crn": " X123456"}, "person.crn"),
        ({"crn": ""}, "person.crn"),
        ({"noms_number": "A1234B"}, "person.noms_number"),
        ({"noms_number": "a1234bc"}, "person.noms_number"),
        ({"noms_number": "A12345C"}, "person.noms_number"),
        ({"pnc_number": "2010/1234567"}, "person.pnc_number"),
        ({"pnc_number": "10/1234567A"}, "person.pnc_number"),
        ({"given_name": "  "}, "person.given_name"),
        ({"family_name": ""}, "person.family_name"),
    ],
)
def test_identifier_and_name_rules(build, overrides, field):
    sub = build.submission(person=build.person(**overrides))
    assert fields(submission_errors(sub, NOW)) == [field]


@pytest.mark.parametrize(
    "overrides",
    [
        {"noms_number": None},
        {"pnc_number": "2010/1234567A"},
        {"crn": "A000000"},
    ],
)
def test_valid_identifiers_pass(build, overrides):
    sub = build.submission(person=build.person(**overrides))
    assert submission_errors(sub, NOW) == []


# ----------------------------------------------------------------------------- interpreter


@pytest.mark.parametrize(
    ("needs_interpreter", "language", "valid"),
    [
        (True, "Polish", True),
        (True, None, False),
        (True, "   ", False),
        (False, None, True),
        (False, "Polish", False),
    ],
)
def test_interpreter_language_goes_with_needs_interpreter(
    build, needs_interpreter, language, valid
):
    sub = build.submission(
        person=build.person(needs_interpreter=needs_interpreter, interpreter_language=language)
    )
    assert fields(submission_errors(sub, NOW)) == ([] if valid else ["person.interpreter_language"])


# ----------------------------------------------------------------------------- release date


@pytest.mark.parametrize(
    ("status", "release", "valid"),
    [
        (SupervisionStatus.CUSTODY_PRE_RELEASE, date(2026, 12, 1), True),
        (SupervisionStatus.CUSTODY_PRE_RELEASE, date(2026, 11, 24), True),  # released today
        (SupervisionStatus.CUSTODY_PRE_RELEASE, date(2026, 11, 23), False),  # yesterday
        (SupervisionStatus.CUSTODY_PRE_RELEASE, None, False),
        (SupervisionStatus.LICENCE, None, True),
        (SupervisionStatus.LICENCE, date(2026, 12, 1), False),
        (SupervisionStatus.LICENCE, date(2026, 1, 1), False),
        (SupervisionStatus.COMMUNITY_ORDER, date(2026, 12, 1), False),
        (SupervisionStatus.NON_STATUTORY, None, True),
        (SupervisionStatus.NON_STATUTORY, date(2026, 12, 1), False),
    ],
)
def test_expected_release_date_rules(build, status, release, valid):
    sub = build.submission(supervision=Supervision(status=status, expected_release_date=release))
    expected = [] if valid else ["supervision.expected_release_date"]
    assert fields(submission_errors(sub, NOW)) == expected


def test_release_date_is_compared_with_the_london_day(build):
    # 23:30 UTC on 30 June is already 1 July in London: a release on 30 June is past.
    sub = build.submission(
        supervision=Supervision(
            status=SupervisionStatus.CUSTODY_PRE_RELEASE, expected_release_date=date(2026, 6, 30)
        )
    )
    late_evening = datetime(2026, 6, 30, 23, 30, tzinfo=UTC)
    assert fields(submission_errors(sub, late_evening)) == ["supervision.expected_release_date"]
    assert submission_errors(sub, late_evening - timedelta(hours=1)) == []


# ----------------------------------------------------------------------------- consent, risk, area


@pytest.mark.parametrize(
    ("consent", "field"),
    [
        (Consent(given=False, recorded_at=NOW), "consent.given"),
        (Consent(given=True, recorded_at=NOW + timedelta(minutes=6)), "consent.recorded_at"),
        (Consent(given=True, recorded_at=NOW + timedelta(minutes=5)), None),  # clock skew
        (Consent(given=True, recorded_at=None), None),
    ],
)
def test_consent_rules(build, consent, field):
    errors = submission_errors(build.submission(consent=consent), NOW)
    assert fields(errors) == ([field] if field else [])


@pytest.mark.parametrize(
    ("mappa_level", "valid"), [(None, True), (1, True), (3, True), (0, False), (4, False)]
)
def test_mappa_level_is_null_or_1_to_3(build, mappa_level, valid):
    sub = build.submission(risk=Risk(rosh=Rosh.HIGH, mappa_level=mappa_level))
    assert fields(submission_errors(sub, NOW)) == ([] if valid else ["risk.mappa_level"])


@pytest.mark.parametrize(
    ("area", "valid"),
    [("E08000029", True), ("E08000025", True), ("E08000032", False), ("west-midlands", False)],
)
def test_area_is_one_of_the_gss_codes(build, area, valid):
    assert fields(submission_errors(build.submission(area=area), NOW)) == (
        [] if valid else ["area"]
    )


@pytest.mark.parametrize(
    ("practitioner", "field"),
    [
        (Practitioner(name="", email="a@b.example"), "practitioner.name"),
        (Practitioner(name="Alex", email="not-an-email"), "practitioner.email"),
        (Practitioner(name="Alex", email="a@b"), "practitioner.email"),
        (Practitioner(name="Alex", email="a b@c.example"), "practitioner.email"),
        (Practitioner(name="Alex", email="a@b.example", team=None), None),
    ],
)
def test_practitioner_rules(build, practitioner, field):
    errors = submission_errors(build.submission(practitioner=practitioner), NOW)
    assert fields(errors) == ([field] if field else [])


def test_source_reference_must_not_be_blank(build):
    assert fields(submission_errors(build.submission(source_reference=" "), NOW)) == [
        "source_reference"
    ]


# ----------------------------------------------------------------------------- needs


@pytest.mark.parametrize(
    ("needs", "expected"),
    [
        ((), ["needs"]),
        (ALL_PATHWAYS[:1], []),
        (ALL_PATHWAYS, []),  # seven
        (ALL_PATHWAYS + (need(Pathway.HEALTH),), ["needs"]),  # eight
        (
            (need(Pathway.HEALTH), need(Pathway.ACCOMMODATION), need(Pathway.HEALTH)),
            ["needs.2.pathway"],
        ),
        (
            (
                need(Pathway.HEALTH),
                need(Pathway.HEALTH),
                need(Pathway.DRUGS_ALCOHOL),
                need(Pathway.DRUGS_ALCOHOL),
            ),
            ["needs.1.pathway", "needs.3.pathway"],
        ),
        (
            (
                need(Pathway.CHILDREN_FAMILIES, NeedFlag.CHILDREN_IN_HOUSEHOLD),
                need(
                    Pathway.ACCOMMODATION,
                    NeedFlag.AT_RISK_OF_HOMELESSNESS,
                    NeedFlag.AT_RISK_OF_HOMELESSNESS,
                ),
            ),
            ["needs.1.flags"],
        ),
    ],
)
def test_one_to_seven_needs_one_per_pathway(build, needs, expected):
    assert fields(submission_errors(build.submission(needs=needs), NOW)) == expected


def test_a_duplicate_names_the_first_occurrence(build):
    sub = build.submission(needs=(need(Pathway.HEALTH), need(Pathway.HEALTH)))
    [error] = submission_errors(sub, NOW)
    assert "health" in error.message and "needs.0" in error.message


# ----------------------------------------------------------------------------- all together


def test_every_failure_is_reported_in_body_order(build):
    sub = build.submission(
        area="nowhere",
        person=build.person(crn="bad", date_of_birth=date(2015, 1, 1), needs_interpreter=True),
        supervision=Supervision(status=SupervisionStatus.CUSTODY_PRE_RELEASE),
        consent=Consent(given=False),
        needs=(),
    )
    with pytest.raises(InvalidSubmission) as raised:
        validate_submission(sub, NOW)
    error = raised.value
    assert (error.status, error.code) == (422, "invalid-referral")
    assert error.errors == [{"field": e.field, "message": e.message} for e in error.field_errors]
    assert fields(list(error.field_errors)) == [
        "area",
        "person.crn",
        "person.date_of_birth",
        "person.interpreter_language",
        "supervision.expected_release_date",
        "consent.given",
        "needs",
    ]


def test_validation_refuses_a_naive_now(build):
    with pytest.raises(ValueError):
        submission_errors(build.submission(), datetime(2026, 11, 24, 10, 0))


def test_needs_may_carry_every_flag(build):
    flags = tuple(NeedFlag)
    sub = build.submission(needs=(replace(need(Pathway.ACCOMMODATION), flags=flags),))
    assert submission_errors(sub, NOW) == []
