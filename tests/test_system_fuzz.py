"""Fuzzing: schemathesis against every running service's `/openapi.json`, with a token that
holds every role, on a system of its own (the fuzzer creates services, policies and members
that would disturb other tests). Every answer must be a non-5xx that the document describes
(status, content type, headers, body).

Bounded: a few positive and a few negative examples per operation, derandomised, no
shrinking. PATHWAYS_FUZZ_EXAMPLES raises the number of examples for a longer run.
"""

from __future__ import annotations

import os
import time

import hypothesis
import hypothesis.errors
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from pathways_shared.testing import auth

pytestmark = pytest.mark.timeout(int(os.environ.get("PATHWAYS_FUZZ_TIMEOUT", "360")))

EXAMPLES = int(os.environ.get("PATHWAYS_FUZZ_EXAMPLES", "6"))
EVERY_ROLE = auth(["probation", "provider", "police", "iom_panel", "admin", "service"],
                  provider="NACRO", sub="fuzzer")
# What the documents promise: no 5xx, every status, content type and header documented, every
# body within its schema. Left out: positive_data_acceptance (schema-valid input may break a
# rule JSON Schema cannot say, such as an age on the day or an unknown record, and is rightly
# refused) and negative_data_rejection (the token every call carries undoes a case that drops
# `Authorization`, and unknown query parameters are ignored, as HTTP APIs do: the contract
# refuses unknown fields of a body, which the body schemas say).
CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance,
          content_type_conformance, response_headers_conformance]
SETTINGS = hypothesis.settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.generate],
    suppress_health_check=list(HealthCheck),
    print_blob=False,
)


def fuzz_operation(operation, base_url: str, session: requests.Session, mode: GenerationMode) -> int:
    calls = 0

    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    @SETTINGS
    def run(case) -> None:
        nonlocal calls
        calls += 1
        response = case.call(base_url=base_url, session=session, headers=EVERY_ROLE, timeout=20)
        case.validate_response(response, checks=CHECKS)

    run()
    return calls


def test_every_operation_of_every_service_answers_within_its_schema(system_factory):
    failures: list[str] = []
    summary: list[str] = []
    began = time.monotonic()
    with system_factory() as system, requests.Session() as session:
        for service in system.ports:
            base_url = system.url(service)
            schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
            calls = operations = 0
            for result in schema.get_all_operations():
                operation = result.ok()
                operations += 1
                for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                    try:
                        calls += fuzz_operation(operation, base_url, session, mode)
                    except hypothesis.errors.Unsatisfiable:
                        # nothing in this operation can be made invalid (no parameters, no body)
                        assert mode is GenerationMode.NEGATIVE, operation.label
                    except (Exception, FailureGroup) as exc:  # noqa: BLE001  (all are reported)
                        failures.append(f"{service} {operation.label} [{mode.value}]:\n{str(exc)[:1500]}")
            summary.append(f"{service}: {operations} operations, {calls} calls")
    print(f"\nfuzz: {'; '.join(summary)}; {time.monotonic() - began:.1f}s")
    assert failures == [], f"{len(failures)} failing operations:\n\n" + "\n\n".join(failures)
