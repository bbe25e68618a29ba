"""Faults of the EHR's FHIR server (the local test server on 127.0.0.1) during fallback fetch.

No prefetch is sent, so every call fetches. Each fault (timeout, 401, 500, malformed JSON, wrong
resourceType, a body that trickles) ends in 412 with an OperationOutcome, or in the correct
cards, within the hook deadline: never a hang, never a 500.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import date
from typing import Any

import pytest
from flask import Flask

from cds_service.protocol.openapi import OPERATION_OUTCOME_SCHEMA
from cds_service.protocol.schemas import errors as schema_errors
from cds_service.settings import Settings
from tests.support.fhir_server import FhirTestServer
from tests.support.records import SERVICE_ID, call_body, load_record, topics

DEADLINE = 2.0
# Time the answer may take beyond the deadline: finishing the response, CPU contention.
SLACK = 1.5


@pytest.fixture
def case() -> dict[str, Any]:
    return load_record()[0]


@pytest.fixture
def fhir(case: dict[str, Any]) -> Iterator[FhirTestServer]:
    server = FhirTestServer(record=case["record"]).start()
    yield server
    server.stop()


@pytest.fixture
def fault_app(
    settings: Settings, make_app: Callable[[Settings], Flask], fhir: FhirTestServer, case: dict
) -> Flask:
    return make_app(
        settings.with_overrides(
            today=date.fromisoformat(case["today"]),
            fhir_allow=(fhir.base_url,),
            fhir_timeout_seconds=1.0,
            hook_deadline_seconds=DEADLINE,
        )
    )


def call(app: Flask, fhir: FhirTestServer, case: dict, **extra: Any) -> tuple[Any, float]:
    body = call_body(case, prefetch=False) | {"fhirServer": fhir.base_url} | extra
    started = time.perf_counter()
    response = app.test_client().post(f"/cds-services/{SERVICE_ID}", json=body)
    return response, time.perf_counter() - started


def expected_topics(app: Flask, case: dict) -> list[str]:
    """The cards of the same call with the record sent as prefetch (no fetch at all)."""
    response = app.test_client().post(
        f"/cds-services/{SERVICE_ID}", json=call_body(case, prefetch=True)
    )
    assert response.status_code == 200
    return topics(response.get_json())


def assert_412_or_correct(response: Any, elapsed: float, expected: list[str]) -> None:
    assert elapsed < DEADLINE + SLACK, f"answered after {elapsed:.2f} s"
    document = response.get_json()
    if response.status_code == 200:
        assert schema_errors("response", document) == []
        assert topics(document) == expected
        return
    assert response.status_code == 412, (response.status_code, document)
    import jsonschema

    jsonschema.validate(document, OPERATION_OUTCOME_SCHEMA)


def test_without_faults_the_fetch_gives_the_prefetch_cards(
    fault_app: Flask, fhir: FhirTestServer, case: dict
) -> None:
    expected = expected_topics(fault_app, case)
    assert expected, "the case must produce cards for this test to mean anything"
    response, elapsed = call(fault_app, fhir, case)
    assert response.status_code == 200
    assert topics(response.get_json()) == expected
    assert fhir.request_count > 0
    assert elapsed < DEADLINE + SLACK


@pytest.mark.parametrize(
    "kind,options",
    [
        ("hang", {}),  # timeout: the server never answers
        ("status", {"status": 500}),
        ("status", {"status": 503}),
        ("status", {"status": 404}),
        ("malformed", {}),
        ("wrong-type", {}),
        ("trickle", {"trickle_bytes": 4, "trickle_interval": 0.2}),
    ],
)
@pytest.mark.parametrize("match", [None, "Observation"])
def test_fault_ends_in_412_or_the_correct_cards_within_the_deadline(
    fault_app: Flask,
    fhir: FhirTestServer,
    case: dict,
    kind: str,
    options: dict,
    match: str | None,
) -> None:
    expected = expected_topics(fault_app, case)
    fhir.add_fault(kind, match, **options)
    response, elapsed = call(fault_app, fhir, case)
    assert_412_or_correct(response, elapsed, expected)
    if match is None:
        # Nothing could be fetched: cards from nothing would be silently wrong.
        assert response.status_code == 412


def test_fault_on_the_first_request_only(
    fault_app: Flask, fhir: FhirTestServer, case: dict
) -> None:
    expected = expected_topics(fault_app, case)
    fhir.add_fault("status", "Observation", status=500, times=1)
    response, elapsed = call(fault_app, fhir, case)
    assert_412_or_correct(response, elapsed, expected)


def test_401_from_the_fhir_server_is_412_and_the_token_was_sent_only_there(
    fault_app: Flask, fhir: FhirTestServer, case: dict
) -> None:
    fhir.require_token = "the-right-token"
    authorization = {
        "access_token": "a-wrong-token",
        "token_type": "Bearer",
        "expires_in": 300,
        "scope": "patient/*.read",
        "subject": "myocds",
    }
    response, elapsed = call(fault_app, fhir, case, fhirAuthorization=authorization)
    assert_412_or_correct(response, elapsed, [])
    assert response.status_code == 412
    assert fhir.requests and all(r.authorization == "Bearer a-wrong-token" for r in fhir.requests)


def test_right_token_gives_the_cards(fault_app: Flask, fhir: FhirTestServer, case: dict) -> None:
    expected = expected_topics(fault_app, case)
    fhir.require_token = "the-right-token"
    authorization = {"access_token": "the-right-token", "token_type": "Bearer"}
    response, _ = call(fault_app, fhir, case, fhirAuthorization=authorization)
    assert response.status_code == 200
    assert topics(response.get_json()) == expected


def test_slow_server_beyond_the_deadline_is_412_not_a_hang(
    fault_app: Flask, fhir: FhirTestServer, case: dict
) -> None:
    fhir.latency = DEADLINE + 3
    response, elapsed = call(fault_app, fhir, case)
    assert response.status_code == 412
    assert elapsed < DEADLINE + SLACK


def test_fhir_server_not_allowed_is_412_and_never_contacted(
    settings: Settings, make_app: Callable[[Settings], Flask], fhir: FhirTestServer, case: dict
) -> None:
    # Same server, but not in MYOCDS_FHIR_ALLOW: plain http on loopback is refused.
    app = make_app(settings.with_overrides(today=date.fromisoformat(case["today"])))
    response, _ = call(app, fhir, case)
    assert response.status_code == 412
    (issue,) = response.get_json()["issue"]
    assert "https" in issue["diagnostics"]
    assert fhir.request_count == 0
