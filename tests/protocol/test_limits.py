"""Limits on what one call may carry: body size, JSON nesting, number of FHIR resources.

The 20,000-resource prefetch of the issue: compact resources (under the body limit) are answered
within the hook deadline with bounded memory; 20,001 are refused (413) before any parsing; the
same 20,000 as full CK Observations exceed the body limit and are refused (413) before reading.
"""

from __future__ import annotations

import json
import time
import tracemalloc
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask

from cds_service.protocol.schemas import errors as schema_errors
from cds_service.settings import Settings

CALL = "/cds-services/myopathy-review"
PATIENT_ID = "limits-pt"


def _observation(i: int, full: bool) -> dict[str, Any]:
    if not full:
        return {
            "resourceType": "Observation",
            "id": f"o{i}",
            "status": "final",
            "code": {"text": "x"},
        }
    return {
        "resourceType": "Observation",
        "id": f"ck-{i}",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "2157-6"}]},
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
        "effectiveDateTime": "2025-12-01",
        "valueQuantity": {
            "value": 250,
            "unit": "U/L",
            "system": "http://unitsofmeasure.org",
            "code": "U/L",
        },
    }


def call_with(resources: int, full: bool = False) -> bytes:
    """A patient-view call whose prefetch holds ``resources`` FHIR resources in total."""
    observations = [{"resource": _observation(i, full)} for i in range(resources - 1)]
    body = {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid4()),
        "context": {"patientId": PATIENT_ID},
        "prefetch": {
            "patient": {"resourceType": "Patient", "id": PATIENT_ID, "gender": "male"},
            "observations": {"resourceType": "Bundle", "type": "searchset", "entry": observations},
            "medicationRequests": None,
            "medicationAdministrations": None,
            "medicationStatements": None,
            "conditions": None,
        },
    }
    return json.dumps(body).encode()


@pytest.fixture
def limits_app(settings: Settings, make_app: Callable[[Settings], Flask]) -> Flask:
    return make_app(settings)


def post(app: Flask, raw: bytes) -> Any:
    return app.test_client().post(CALL, data=raw, content_type="application/json")


def outcome_text(response: Any) -> str:
    document = response.get_json()
    assert document["resourceType"] == "OperationOutcome"
    return " ".join(issue.get("diagnostics", "") for issue in document["issue"])


def test_more_resources_than_the_limit_is_413_with_a_clear_message(
    settings: Settings, make_app: Callable[[Settings], Flask]
) -> None:
    app = make_app(settings.with_overrides(max_resources=50))
    response = post(app, call_with(51))
    assert response.status_code == 413
    text = outcome_text(response)
    assert "51 FHIR resources" in text and "limit is 50" in text
    assert post(app, call_with(50)).status_code == 200


def test_20001_resources_are_refused_before_any_parsing(limits_app: Flask) -> None:
    raw = call_with(20001)
    started = time.perf_counter()
    response = post(limits_app, raw)
    elapsed = time.perf_counter() - started
    assert response.status_code == 413
    assert "20001 FHIR resources" in outcome_text(response)
    # Counting is a walk over the parsed JSON; validating 20,001 resources would take seconds.
    assert elapsed < 1.0, elapsed


def test_20000_full_observations_exceed_the_body_limit(limits_app: Flask) -> None:
    raw = call_with(20000, full=True)
    assert len(raw) > Settings().max_body_bytes
    response = post(limits_app, raw)
    assert response.status_code == 413
    assert "larger than the limit" in outcome_text(response)


def test_20000_resource_prefetch_is_answered_within_the_deadline(
    limits_app: Flask, settings: Settings
) -> None:
    raw = call_with(20000)
    assert len(raw) < settings.max_body_bytes
    started = time.perf_counter()
    response = post(limits_app, raw)
    elapsed = time.perf_counter() - started
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    assert schema_errors("response", response.get_json()) == []
    assert elapsed < settings.hook_deadline_seconds, f"{elapsed:.2f} s"


def test_20000_resource_prefetch_memory_stays_bounded(limits_app: Flask) -> None:
    raw = call_with(20000)
    client = limits_app.test_client()
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        response = client.post(CALL, data=raw, content_type="application/json")
        peak = tracemalloc.get_traced_memory()[1] - baseline
    finally:
        tracemalloc.stop()
    assert response.status_code == 200
    print(
        f"\n20,000-resource prefetch: body {len(raw) / 1e6:.1f} MB, peak growth {peak / 1e6:.1f} MB"
    )
    # About 11x the body (parsed JSON + one validated model at a time + the record); a leak or a
    # copy per resource kept alive would be far more.
    assert peak < 30 * len(raw), f"peak growth {peak / 1e6:.1f} MB for {len(raw) / 1e6:.1f} MB"


@pytest.mark.parametrize("depth", [65, 5000])
def test_json_nested_deeper_than_the_limit_is_400(limits_app: Flask, depth: int) -> None:
    raw = b'{"hook": "patient-view", "extension": ' + b"[" * depth + b"]" * depth + b"}"
    response = post(limits_app, raw)
    assert response.status_code == 400
    assert "nested deeper" in outcome_text(response)


def test_body_over_the_size_limit_is_413(
    settings: Settings, make_app: Callable[[Settings], Flask]
) -> None:
    app = make_app(settings.with_overrides(max_body_bytes=4096))
    raw = json.dumps({"hook": "patient-view", "pad": "x" * 5000}).encode()
    response = post(app, raw)
    assert response.status_code == 413
    assert "larger than the limit of 4096 bytes" in outcome_text(response)
