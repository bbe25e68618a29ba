"""Helpers of the production tests: scenario requests as an EHR builds them, metric reading."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from cds_service.demo.search import build_prefetch
from cds_service.services import ServiceDeclaration


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


def samples(exposition: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a Prometheus text exposition: (name, labels) -> value."""
    found: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(exposition: str, name: str, **labels: str) -> float:
    """One sample's value; 0 when the series does not exist (a counter never incremented)."""
    return samples(exposition).get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
def pv_body() -> dict[str, Any]:
    """A minimal valid patient-view call with a complete (empty) prefetch: no FHIR fetch."""
    empty = {"resourceType": "Bundle", "type": "searchset", "total": 0}
    return {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": "Practitioner/example", "patientId": "pat-1"},
        "prefetch": {
            "patient": {"resourceType": "Patient", "id": "pat-1", "gender": "female",
                        "birthDate": "1960-04-02"},
            "observations": empty,
            "medicationRequests": empty,
            "medicationAdministrations": empty,
            "medicationStatements": empty,
            "conditions": empty,
        },
    }
