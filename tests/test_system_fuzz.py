"""Fuzzing: schemathesis against every running service's `/openapi.json`, on a system of its
own (the fuzzer creates services, policies and members that would disturb other tests), with
every check schemathesis has: no 5xx; every status, content type, header and body the document
describes; schema-valid requests accepted (`positive_data_acceptance`) and schema-violating
ones refused (`negative_data_rejection`).

Every call carries a token holding every role (national, provider NACRO) wherever the case
carries an `Authorization` header in the form the document states (`Bearer ...`); a case that
leaves the header out, or breaks its form, is sent so, and must be refused (401).

Where a check cannot hold for one operation (the server enforces something JSON Schema cannot
say, such as a person's age on the day), it is left out for that operation only, with the
reason, in EXCEPTIONS below; nowhere globally.

Bounded: a few positive and a few negative examples per operation, derandomised, no
shrinking; then schemathesis' coverage phase (every boundary, missing and unexpected value of
every parameter and body, about 3,200 calls: the phase where `missing_required_header` and
`unsupported_method` find something to check). About 80 s in all.
PATHWAYS_FUZZ_EXAMPLES raises the number of examples for a longer run; PATHWAYS_FUZZ_COVERAGE=0
leaves the coverage phase out.
"""

from __future__ import annotations

import collections
import os
import time

import hypothesis
import hypothesis.errors
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase
from schemathesis.core.failures import FailureGroup
from schemathesis.generation import GenerationMode
from schemathesis.generation.meta import CoveragePhaseData
from schemathesis.specs.openapi import checks as openapi_checks

from pathways_shared.testing import auth

pytestmark = pytest.mark.timeout(int(os.environ.get("PATHWAYS_FUZZ_TIMEOUT", "360")))

COVERAGE = os.environ.get("PATHWAYS_FUZZ_COVERAGE", "1") != "0"
EXAMPLES = int(os.environ.get("PATHWAYS_FUZZ_EXAMPLES", "10"))
EVERY_ROLE = auth(["probation", "provider", "police", "iom_panel", "admin", "service"],
                  provider="NACRO", sub="fuzzer")["Authorization"]

# (service, "METHOD /path") -> {check: why it cannot hold for this operation}. Only what the
# server rightly enforces and JSON Schema cannot say; each entry is one operation.
_TODAY = "a date relative to today (not in the future, an age on the day)"
_FIGURES = ("`from` and `to` between 2000-01-01 and 2100-12-31, `from` on or before `to`, at "
            "most ten years apart, a dimension of `by` named once: rules across parameters")
EXCEPTIONS: dict[tuple[str, str], dict[str, str]] = {
    ("referrals", "POST /referrals"): {"positive_data_acceptance": (
        f"{_TODAY}: 18 or over on the day, release date and consent time against today; needs "
        "of distinct pathways; interpreter language when one is needed")},
    ("providers", "POST /eligibility"): {"positive_data_acceptance": f"date_of_birth: {_TODAY}"},
    ("providers", "PUT /services/{code}"): {"positive_data_acceptance": (
        "a `code` in the body must be the path's; max_age at least min_age; respond_days at "
        "least acknowledge_days: rules across fields")},
    ("cohorts", "PUT /nominals/{crn}"): {"positive_data_acceptance": f"date_of_birth: {_TODAY}"},
    ("cohorts", "POST /nominals/{crn}/offences"): {"positive_data_acceptance": (
        f"offence_date: {_TODAY}")},
    ("cohorts", "GET /nominals/{crn}/assessment"): {"positive_data_acceptance": f"as_of: {_TODAY}"},
    ("cohorts", "POST /selection-runs"): {"positive_data_acceptance": f"as_of: {_TODAY}"},
    ("cohorts", "POST /cohorts/{area}/members"): {"positive_data_acceptance": (
        "`crn` must name a nominal already recorded (PUT /nominals/{crn}): a record, not a form")},
    ("cohorts", "PUT /policies/{area}"): {"positive_data_acceptance": (
        "an `area` in the body must be the path's; bands in order: rules across fields")},
    ("cohorts", "POST /offences:import"): {
        "positive_data_acceptance": (
            "the body is a CSV (`text/csv`, a string in the schema) whose header and rows the "
            "server checks line by line"),
        "negative_data_rejection": (
            "a body negated to a non-string (`true`, a number) is sent as its text, a string "
            "the schema allows; with wait=false it is checked after the 202"),
    },
    ("notifications", "POST /subscriptions"): {"positive_data_acceptance": (
        "the URL's host must resolve (in production to public addresses only): a DNS lookup")},
    **{("insights", f"GET /figures/{kind}"): {"positive_data_acceptance": _FIGURES}
       for kind in ("needs", "unmet-need", "service-levels", "cohorts", "duty-to-refer")},
}
# A page's `cursor` is opaque: only a value the server gave as `next_cursor` is one. A positive
# case leaves it out (a made-up one is rightly refused, 422); a negative case keeps it.
OPAQUE_QUERY = ("cursor",)

SETTINGS = hypothesis.settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.generate],
    suppress_health_check=list(HealthCheck),
    print_blob=False,
)


def _with_token(case) -> dict[str, str] | None:
    """The case's headers with the real token where the case has a well-formed one."""
    headers = dict(case.headers or {})
    given = headers.get("Authorization")
    if isinstance(given, str) and given.startswith("Bearer "):
        headers["Authorization"] = EVERY_ROLE
    return headers


def _negates_opaque(case, mode: GenerationMode) -> bool:
    """Whether the case may be breaking the cursor itself: a negative case, and in the
    coverage phase (which names what it breaks) only one whose broken parameter is it."""
    if mode is GenerationMode.POSITIVE:
        return False
    data = case.meta.phase.data
    if isinstance(data, CoveragePhaseData):
        return data.parameter in OPAQUE_QUERY
    return True


def check_case(service: str, case, mode: GenerationMode, base_url: str,
               session: requests.Session, failed: collections.Counter) -> None:
    operation = case.operation
    excused = EXCEPTIONS.get((service, f"{operation.method.upper()} {operation.path}"), {})
    case.headers = _with_token(case)
    if case.query and not _negates_opaque(case, mode):
        case.query = {k: v for k, v in case.query.items() if k not in OPAQUE_QUERY}
    response = case.call(base_url=base_url, session=session, timeout=20)
    try:
        case.validate_response(
            response, excluded_checks=[getattr(openapi_checks, name) for name in excused]
        )
    except FailureGroup as group:
        for failure in group.exceptions:
            failed[type(failure).__name__] += 1
        raise AssertionError(f"{group}\n-- answered {response.status_code}: {response.text[:400]}") from None


def fuzz_operation(service: str, operation, base_url: str, session: requests.Session,
                   mode: GenerationMode, failed: collections.Counter) -> int:
    calls = 0

    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    @SETTINGS
    def run(case) -> None:
        nonlocal calls
        calls += 1
        check_case(service, case, mode, base_url, session, failed)

    run()
    return calls


def cover_operation(service: str, schema, operation, base_url: str, session: requests.Session,
                    failed: collections.Counter) -> tuple[int, list[str]]:
    """The coverage phase: each case schemathesis derives from the schema's boundaries."""
    from schemathesis.generation.drivers import CoverageGenerator
    from schemathesis.generation.feedback import FeedbackSources
    from schemathesis.generation.overrides import Override

    generator = CoverageGenerator(
        operation=operation, generation_modes=list(GenerationMode),
        generation_config=schema.config.generation_for(operation=operation, phase="coverage"),
        auth_storage=None, override=Override(query={}, headers={}, cookies={}, path_parameters={}, body={}),
        feedback=FeedbackSources(),
    )
    calls, problems = 0, []
    for case in generator:
        calls += 1
        try:
            check_case(service, case, case.meta.generation.mode, base_url, session, failed)
        except AssertionError as exc:
            problems.append(f"{service} {operation.label} [coverage]:\n{str(exc)[:2500]}")
    return calls, problems


def test_every_operation_of_every_service_answers_within_its_schema(system_factory):
    failures: list[str] = []
    failed: collections.Counter = collections.Counter()
    summary: list[str] = []
    seen: set[tuple[str, str]] = set()
    began = time.monotonic()
    with system_factory() as system, requests.Session() as session:
        for service in system.ports:
            base_url = system.url(service)
            schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
            calls = operations = 0
            for result in schema.get_all_operations():
                operation = result.ok()
                operations += 1
                seen.add((service, f"{operation.method.upper()} {operation.path}"))
                for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                    try:
                        calls += fuzz_operation(service, operation, base_url, session, mode, failed)
                    except hypothesis.errors.Unsatisfiable:
                        # nothing in this operation can be made invalid (no parameters, no body)
                        assert mode is GenerationMode.NEGATIVE, operation.label
                    except (Exception, FailureGroup) as exc:  # noqa: BLE001  (all are reported)
                        failures.append(f"{service} {operation.label} [{mode.value}]:\n{str(exc)[:2500]}")
                if COVERAGE:
                    covered, problems = cover_operation(service, schema, operation, base_url, session, failed)
                    calls += covered
                    failures += problems
            summary.append(f"{service}: {operations} operations, {calls} calls")
    print(f"\nfuzz: {'; '.join(summary)}; {time.monotonic() - began:.1f}s; failures by check: {dict(failed)}")
    assert set(EXCEPTIONS) <= seen, f"exceptions for no operation: {set(EXCEPTIONS) - seen}"
    assert failures == [], f"{len(failures)} failing operations:\n\n" + "\n\n".join(failures)
