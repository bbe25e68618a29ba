"""The FHIR client is the application's: made by ``create_app``, shared by every call's fallback
fetches (its kept-alive connections serve the next call), closed with the application."""

from __future__ import annotations

import gc
import uuid
from collections.abc import Callable
from typing import Any

from flask import Flask

from cds_service import create_app
from cds_service.fhir import FhirClient
from cds_service.services import LOINC
from cds_service.settings import Settings
from tests.support.fhir_server import FhirTestServer

PATIENT_ID = "app-1"
RECORD: dict[str, Any] = {
    "resourceType": "Bundle",
    "type": "collection",
    "entry": [
        {"resource": {"resourceType": "Patient", "id": PATIENT_ID, "gender": "female"}},
        {
            "resource": {
                "resourceType": "Observation",
                "id": "ck1",
                "status": "final",
                "code": {"coding": [{"system": LOINC, "code": "2157-6"}]},
                "subject": {"reference": f"Patient/{PATIENT_ID}"},
                "effectiveDateTime": "2025-05-01",
                "valueQuantity": {"value": 180, "unit": "U/L"},
            }
        },
    ],
}


def _call(app: Flask, fhir_server: FhirTestServer) -> None:
    body = {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid4()),
        "fhirServer": fhir_server.base_url,
        "context": {"patientId": PATIENT_ID, "userId": "Practitioner/u"},
    }  # no prefetch: every key is fetched
    response = app.test_client().post("/cds-services/myopathy-review", json=body)
    assert response.status_code == 200, response.get_json()
    assert fhir_server.wait_until_idle(timeout=2.0)


def test_calls_share_the_apps_fhir_client_and_its_connections(
    make_app: Callable[[Settings], Flask], settings: Settings, fhir_server: FhirTestServer
) -> None:
    fhir_server.record = RECORD
    app = make_app(settings.with_overrides(fhir_allow=(fhir_server.base_url,)))
    assert isinstance(app.extensions["myocds"].fhir, FhirClient)
    _call(app, fhir_server)
    first = {r.client_port for r in fhir_server.requests}
    count = len(fhir_server.requests)
    _call(app, fhir_server)
    second = {r.client_port for r in fhir_server.requests[count:]}
    assert count >= 5 and len(fhir_server.requests) == 2 * count  # every key fetched, twice
    # The second call's requests went (partly: its fetches run in parallel) over connections the
    # first call opened; a client made per call would have dialled only new ones.
    assert second & first


def test_the_fhir_client_is_closed_with_the_app(settings: Settings) -> None:
    app = create_app(settings)
    state = app.extensions["myocds"]
    fhir: FhirClient = state.fhir
    assert fhir.http is not None and not fhir.closed
    state.store.dispose()
    del app, state
    gc.collect()
    assert fhir.closed
