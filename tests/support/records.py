"""Scenario calls as an EHR builds them, and a scenario record made recognisable.

``scenario_body`` is the call an EHR holding a scenario's record sends to a service. The
recognisable record has a distinctive patient id, name and identifiers: the PHI and fault tests
serve it from the local FHIR server or send it as prefetch, then look for these values where they
must never be (logs). The scenario is one of the project's own (``tests/scenarios``: simvastatin,
CK over 40×ULN, creatinine rising).
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cds_service.demo.search import build_prefetch
from cds_service.protocol.store import IssuedCard
from cds_service.services import ServiceDeclaration, find_service

SCENARIO = Path(__file__).resolve().parents[1] / "scenarios" / "stat02-creatinine-rise.json"
SERVICE_ID = "myopathy-review"

PATIENT_ID = "phi-Zq7Kx2-pt"
FAMILY = "Quagmirevski"
GIVEN = "Zebulonius"
BIRTH_DATE = "1931-02-03"
MRN = "MRN-558812-ZQ"
PHONE = "+1-555-0199-7781"


def load_record() -> tuple[dict[str, Any], dict[str, Any]]:
    """(scenario, hook context) with the patient renamed to the distinctive values above."""
    if not SCENARIO.is_file():
        pytest.skip(f"scenario {SCENARIO} not found")
    scenario = json.loads(SCENARIO.read_text(encoding="utf-8"))
    old_id = scenario["context"]["patientId"]
    scenario = json.loads(json.dumps(scenario).replace(f'"{old_id}"', f'"{PATIENT_ID}"')
                          .replace(f"Patient/{old_id}", f"Patient/{PATIENT_ID}"))  # fmt: skip
    for entry in scenario["record"]["entry"]:
        resource = entry["resource"]
        if resource["resourceType"] == "Patient":
            resource["name"] = [{"family": FAMILY, "given": [GIVEN]}]
            resource["birthDate"] = BIRTH_DATE
            resource["identifier"] = [{"system": "urn:oid:1.2.3.4", "value": MRN}]
            resource["telecom"] = [{"system": "phone", "value": PHONE}]
    return scenario, scenario["context"]


def scenario_body(
    service: ServiceDeclaration, scenario: dict[str, Any], *, with_prefetch: bool = True
) -> dict[str, Any]:
    """The call an EHR holding the scenario's record sends to ``service``."""
    body: dict[str, Any] = {
        "hook": scenario["hook"],
        "hookInstance": str(uuid.uuid4()),
        "context": scenario["context"],
    }
    if with_prefetch:
        body["prefetch"] = build_prefetch(service, scenario["context"], scenario["record"])
    return body


def call_body(scenario: dict[str, Any], *, prefetch: bool) -> dict[str, Any]:
    """The scenario's call to ``SERVICE_ID``."""
    service = find_service(SERVICE_ID, scenario["hook"])
    assert service is not None
    return scenario_body(service, scenario, with_prefetch=prefetch)


def topics(response_json: dict[str, Any]) -> list[str]:
    return sorted(card["source"]["topic"]["code"] for card in response_json["cards"])


def issued_card() -> IssuedCard:
    """A card the service issued (a new uuid each time), for the store's tests."""
    return IssuedCard(str(uuid.uuid4()), "myopathy-review", "patient-view", "CONT-02", "warning",
                      datetime(2025, 7, 1, tzinfo=UTC))
