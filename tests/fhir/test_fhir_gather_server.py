"""``gather`` against a real HTTP server on 127.0.0.1: concurrency, deadlines, paging, pooling.

Timing assertions use the injected latency and the configured deadline with a margin for a busy
2-CPU machine; they measure behaviour (parallel or not, cut at the deadline or not), where the
alternative would be several times over the bound.
"""

from __future__ import annotations

import copy
import functools
import time
from typing import Any

import pytest

from cds_service.demo.search import build_prefetch
from cds_service.errors import DataUnavailable
from cds_service.fhir.client import FhirClient
from cds_service.fhir.gather import gather
from cds_service.services import LOINC
from cds_service.settings import Settings
from tests.fhir.conftest import declared_service, reset_when_idle
from tests.support.fhir_server import FhirTestServer

PATIENT_ID = "srv-1"


STATIN = declared_service("statin-order-check", "order-sign")
REVIEW = declared_service("myopathy-review", "patient-view")
TOKEN = "tok-abc"
# Margin for thread start-up and a loaded CI machine; far below what a sequential or uncut fetch
# would take in each test.
MARGIN = 0.35


def _obs(n: int) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": f"ck{n}",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "2157-6"}]},
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
        "effectiveDateTime": f"2025-0{n % 9 + 1}-15",
        "valueQuantity": {"value": 100 + n, "unit": "U/L"},
    }


RECORD: dict[str, Any] = {
    "resourceType": "Bundle",
    "type": "collection",
    "entry": [
        {"resource": {"resourceType": "Patient", "id": PATIENT_ID, "gender": "female"}},
        *({"resource": _obs(n)} for n in range(6)),
        {
            "resource": {
                "resourceType": "MedicationRequest",
                "id": "mr1",
                "status": "active",
                "intent": "order",
                "subject": {"reference": f"Patient/{PATIENT_ID}"},
                "medicationReference": {"reference": "Medication/med-1"},
            }
        },
        {"resource": {"resourceType": "Medication", "id": "med-1", "code": {"text": "Zocor"}}},
    ],
}
CONTEXT = {"patientId": PATIENT_ID, "userId": "Practitioner/u"}


@pytest.fixture
def fetch(fhir_client: FhirClient) -> Any:
    """``gather`` with one FHIR client for the whole test, as the application holds one."""
    return functools.partial(gather, client=fhir_client)


@pytest.fixture
def server(fhir_server: FhirTestServer) -> FhirTestServer:
    fhir_server.record = copy.deepcopy(RECORD)
    return fhir_server


def _body(server: FhirTestServer, prefetch: dict[str, Any] | None = None, **extra: Any) -> dict:
    body = {
        "hook": "patient-view",
        "hookInstance": "h-1",
        "fhirServer": server.base_url,
        "context": dict(CONTEXT),
        **extra,
    }
    if prefetch is not None:
        body["prefetch"] = prefetch
    return body


def _timed(fn: Any, *args: Any) -> tuple[Any, float]:
    started = time.monotonic()
    try:
        return fn(*args), time.monotonic() - started
    except DataUnavailable as exc:
        return exc, time.monotonic() - started


def test_four_missing_keys_are_fetched_in_parallel(
    server: FhirTestServer, fhir_settings: Settings, fetch: Any
) -> None:
    fetch(STATIN, _body(server), fhir_settings)  # warm the pool, threads and model classes
    reset_when_idle(server)
    server.latency = 0.2
    prefetch = build_prefetch(STATIN, CONTEXT, RECORD)
    del prefetch["patient"], prefetch["observations"], prefetch["medicationRequests"]
    del prefetch["conditions"]
    data, elapsed = _timed(fetch, STATIN, _body(server, prefetch), fhir_settings)
    assert not isinstance(data, Exception), data
    # four queries of 200 ms each; the Medication the MedicationRequest refers to comes with it
    # (_include=MedicationRequest:medication), so it is not read on its own
    assert sorted(server.paths()) == sorted(
        [f"Patient/{PATIENT_ID}", "Observation", "MedicationRequest", "Condition"]
    )
    assert server.max_in_flight >= 4
    assert elapsed < 0.2 + 0.2 + MARGIN  # 4 sequential queries alone would be 0.8 s
    assert {r["id"] for r in data.of_type("Observation")} == {f"ck{n}" for n in range(6)}
    assert data.medications["Medication/med-1"]["code"] == {"text": "Zocor"}
    assert data.stats.fetches == 4 and data.stats.medications_unresolved == 0


def test_four_missing_keys_finish_within_two_latencies(
    server: FhirTestServer, fhir_settings: Settings, fetch: Any
) -> None:
    """The issue's bound: 4 missing keys at 200 ms each complete in under 2 x 200 ms."""
    fetch(STATIN, _body(server), fhir_settings)
    reset_when_idle(server)
    server.latency = 0.2
    prefetch = build_prefetch(STATIN, CONTEXT, RECORD)
    keep = {"medicationStatements": prefetch["medicationStatements"]}
    # No medication reference to resolve, so the 4 parallel keys are the whole cost.
    server.record["entry"][7]["resource"]["medicationCodeableConcept"] = {"text": "Zocor"}
    del server.record["entry"][7]["resource"]["medicationReference"]
    data, elapsed = _timed(fetch, STATIN, _body(server, keep), fhir_settings)
    assert not isinstance(data, Exception), data
    assert server.request_count == 4 and server.max_in_flight == 4
    assert elapsed < 0.4, f"{elapsed:.3f} s"
    assert 200 <= data.stats.fetch_ms <= elapsed * 1000
    assert data.stats.fetches == 4


def test_a_server_that_never_answers_gives_412_within_the_deadline(
    server: FhirTestServer, fhir_settings: Settings, fetch: Any
) -> None:
    server.add_fault("hang")
    settings = fhir_settings.with_overrides(hook_deadline_seconds=0.8, fhir_timeout_seconds=5.0)
    error, elapsed = _timed(fetch, REVIEW, _body(server), settings)
    assert isinstance(error, DataUnavailable)
    assert error.status == 412
    assert "deadline" in error.message or "in time" in error.message
    assert elapsed < 0.8 + MARGIN, f"{elapsed:.3f} s"


def test_the_per_request_timeout_applies_before_the_deadline(
    server: FhirTestServer, fhir_settings: Settings, fetch: Any
) -> None:
    server.add_fault("hang", match="Condition")
    settings = fhir_settings.with_overrides(hook_deadline_seconds=5.0, fhir_timeout_seconds=0.4)
    error, elapsed = _timed(fetch, REVIEW, _body(server), settings)
    assert isinstance(error, DataUnavailable)
    assert "prefetch key 'conditions'" in error.message and "in time" in error.message
    assert elapsed < 0.4 + MARGIN, f"{elapsed:.3f} s"


def test_a_trickling_body_is_cut_at_the_deadline(
    server: FhirTestServer, fhir_settings: Settings, fetch: Any
) -> None:
    # 8 bytes every 50 ms: the 4 KB body would take 25 s; each read returns well within the
    # per-request timeout, so only the deadline check while reading can stop it.
    server.add_fault("trickle", match="Observation", trickle_bytes=8, trickle_interval=0.05)
    settings = fhir_settings.with_overrides(hook_deadline_seconds=0.8, fhir_timeout_seconds=2.0)
    error, elapsed = _timed(fetch, REVIEW, _body(server), settings)
    assert isinstance(error, DataUnavailable)
    assert "'observations'" in error.message and "deadline" in error.message
    assert elapsed < 0.8 + MARGIN, f"{elapsed:.3f} s"
    # The worker stopped reading too: the server sees the connection closed soon after.
    assert server.wait_until_idle(timeout=1.0)


def test_paging_across_three_pages_returns_every_resource(
    server: FhirTestServer, fhir_settings: Settings, fetch: Any
) -> None:
    server.page_size = 2
    prefetch = build_prefetch(REVIEW, CONTEXT, RECORD)
    del prefetch["observations"]
    data = fetch(REVIEW, _body(server, prefetch), fhir_settings)
    observation_requests = [p for p in server.paths() if p == "Observation"]
    assert len(observation_requests) == 3
    # newest first across pages (_sort=-date), each once
    got = [r["id"] for r in data.of_type("Observation")]
    expected = [r["resource"]["id"] for r in RECORD["entry"][1:7]]
    assert sorted(got) == sorted(expected) and len(got) == 6
    dates = [r["effectiveDateTime"] for r in data.of_type("Observation")]
    assert dates == sorted(dates, reverse=True)
    assert data.stats.truncated == ()


def test_bearer_token_is_sent_to_a_server_that_requires_it(
    server: FhirTestServer, fhir_settings: Settings, fetch: Any
) -> None:
    server.require_token = TOKEN
    body = _body(server, fhirAuthorization={"access_token": TOKEN, "token_type": "Bearer"})
    data = fetch(REVIEW, body, fhir_settings)
    assert {r.authorization for r in server.requests} == {f"Bearer {TOKEN}"}
    assert data.medications["Medication/med-1"]["code"]["text"] == "Zocor"


def test_without_the_token_the_server_answers_401_and_we_say_412(
    server: FhirTestServer, fhir_settings: Settings, fetch: Any
) -> None:
    server.require_token = TOKEN
    with pytest.raises(DataUnavailable, match="refused access \\(HTTP 401\\)"):
        fetch(REVIEW, _body(server), fhir_settings)
    assert all(r.authorization is None for r in server.requests)


@pytest.mark.parametrize(
    ("kind", "options", "reason"),
    [
        ("status", {"status": 500}, "HTTP 500"),
        ("status", {"status": 403}, "HTTP 403"),
        ("malformed", {}, "not JSON"),
        ("wrong-type", {}, "a Basic where a search Bundle was expected"),
    ],
)
def test_server_faults_are_412_naming_the_key(
    server: FhirTestServer,
    fhir_settings: Settings,
    fetch: Any,
    kind: str,
    options: dict[str, Any],
    reason: str,
) -> None:
    server.add_fault(kind, match="MedicationRequest", **options)
    with pytest.raises(DataUnavailable, match=f"'medicationRequests'.*{reason}"):
        fetch(REVIEW, _body(server), fhir_settings)


def test_connection_refused_is_412(fhir_settings: Settings, fetch: Any) -> None:
    closed = FhirTestServer().start()
    base = closed.base_url
    closed.stop()  # nothing listens on that port any more
    settings = fhir_settings.with_overrides(fhir_allow=(base,))
    body = {"hook": "patient-view", "fhirServer": base, "context": dict(CONTEXT)}
    with pytest.raises(DataUnavailable, match="could not be reached"):
        fetch(REVIEW, body, settings)


def test_the_session_reuses_pooled_connections_across_calls(
    server: FhirTestServer, fhir_settings: Settings, fetch: Any
) -> None:
    prefetch = build_prefetch(REVIEW, CONTEXT, RECORD)
    del prefetch["conditions"]
    for _ in range(3):
        fetch(REVIEW, _body(server, prefetch), fhir_settings)
    ports = [r.client_port for r in server.requests]
    assert server.paths() == ["Condition"] * 3  # the Medication came with medicationRequests
    assert len(set(ports)) == 1  # one kept-alive connection served all three calls


def test_post_search_is_answered_like_get(server: FhirTestServer) -> None:
    import requests

    response = requests.post(
        f"{server.base_url}/Observation/_search",
        data={"patient": PATIENT_ID, "_count": "2"},
        timeout=2,
    )
    bundle = response.json()
    assert response.status_code == 200 and bundle["total"] == 6 and len(bundle["entry"]) == 2
    assert server.requests[0].method == "POST"


def test_after_one_key_fails_the_others_stop_paging(
    server: FhirTestServer, fhir_settings: Settings, fetch: Any
) -> None:
    server.page_size = 1  # 6 Observation pages, 100 ms each if they were all fetched
    server.latency = 0.1
    server.add_fault("status", match="Condition", status=500)
    error, elapsed = _timed(fetch, REVIEW, _body(server), fhir_settings)
    assert isinstance(error, DataUnavailable) and "'conditions'" in error.message
    assert server.wait_until_idle(timeout=2.0)
    observation_pages = [p for p in server.paths() if p == "Observation"]
    assert 1 <= len(observation_pages) <= 2, observation_pages
    assert elapsed < 0.1 + MARGIN
