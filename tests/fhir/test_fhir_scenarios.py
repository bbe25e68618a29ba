"""Every scenario gathered both ways gives the same data (issue 3, "What it must show").

(a) the request carries the prefetch an EHR would build by running the service's own templates
against the scenario's record; (b) the request carries no prefetch and the record is served by the
local FHIR server (with a small page size, so paging is part of the path). The end-to-end card
equality through HTTP is the conformance test's; here the FhirData must already be equal.
"""

from __future__ import annotations

from typing import Any

import pytest

from cds_service.demo.search import build_prefetch
from cds_service.fhir.data import FhirData
from cds_service.fhir.gather import gather
from cds_service.services import LOINC, OBSERVATION_CODES, services_for_hook
from cds_service.settings import Settings
from tests.fhir.conftest import reset_when_idle
from tests.support.fhir_server import FhirTestServer

# Resource types each prefetch key brings (services.PREFETCH_TEMPLATES).
_KEY_TYPES = {
    "patient": "Patient",
    "observations": "Observation",
    "medicationRequests": "MedicationRequest",
    "medicationAdministrations": "MedicationAdministration",
    "medicationStatements": "MedicationStatement",
    "conditions": "Condition",
}
_RULE_CODES = {code for codes in OBSERVATION_CODES.values() for code in codes}


def _body(scenario: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "hook": scenario["hook"],
        "hookInstance": "00000000-0000-4000-8000-000000000000",
        "context": scenario["context"],
        **extra,
    }


def _expected_identities(scenario: dict[str, Any], prefetch_keys: tuple[str, ...]) -> set[tuple]:
    """What the templates should find in the record, computed independently of the search."""
    wanted_types = {_KEY_TYPES[k] for k in prefetch_keys}
    out = set()
    for entry in scenario["record"]["entry"]:
        resource = entry["resource"]
        if resource["resourceType"] not in wanted_types:
            continue
        if resource["resourceType"] == "Observation":
            codings = resource.get("code", {}).get("coding", [])
            if not any(c.get("system") == LOINC and c.get("code") in _RULE_CODES for c in codings):
                continue
        out.add((resource["resourceType"], resource["id"]))
    return out


def _comparable(data: FhirData) -> dict[str, Any]:
    return {
        "resources": list(data.resources),
        "drafts": list(data.drafts),
        "selections": data.selections,
        "medications": {k: v for k, v in data.medications.items() if k.startswith("Medication/")},
        "skipped": dict(data.skipped),
    }


def test_scenario_gathers_the_same_data_both_ways(
    scenario: dict[str, Any], fhir_server: FhirTestServer, fhir_settings: Settings
) -> None:
    fhir_server.record = scenario["record"]
    fhir_server.page_size = 3
    services = services_for_hook(scenario["hook"])
    assert services, scenario["hook"]
    for service in services:
        prefetch = build_prefetch(service, scenario["context"], scenario["record"])
        assert set(prefetch) == set(service.prefetch)  # every template renders from the context
        with_prefetch = gather(service, _body(scenario, prefetch=prefetch), fhir_settings)
        assert with_prefetch.stats.fetches == 0

        reset_when_idle(fhir_server)
        fetched = gather(service, _body(scenario, fhirServer=fhir_server.base_url), fhir_settings)
        assert fetched.stats.keys_fetched == tuple(service.prefetch)
        assert fhir_server.request_count >= len(service.prefetch)

        assert _comparable(fetched) == _comparable(with_prefetch), service.id
        identities = {(r["resourceType"], r["id"]) for r in with_prefetch.resources}
        assert identities == _expected_identities(scenario, service.prefetch_keys), service.id
        assert with_prefetch.skipped == {}


@pytest.mark.parametrize("page_size", [1, 2])
def test_small_pages_keep_the_order_of_a_single_bundle(
    scenarios: dict[str, dict[str, Any]],
    fhir_server: FhirTestServer,
    fhir_settings: Settings,
    page_size: int,
) -> None:
    """The largest record paged one or two resources at a time still arrives whole and in order."""
    if not scenarios:
        pytest.skip("no scenarios")
    scenario = max(scenarios.values(), key=lambda s: len(s["record"]["entry"]))
    service = services_for_hook(scenario["hook"])[-1]
    fhir_server.record = scenario["record"]
    fhir_server.page_size = page_size
    settings = fhir_settings.with_overrides(fhir_page_cap=100)
    prefetch = build_prefetch(service, scenario["context"], scenario["record"])
    fetched = gather(service, _body(scenario, fhirServer=fhir_server.base_url), settings)
    with_prefetch = gather(service, _body(scenario, prefetch=prefetch), settings)
    assert fetched.resources == with_prefetch.resources
    assert len(fetched.resources) > 20
