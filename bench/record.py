"""A realistic patient record for the benchmark (issue 6): 1 Patient, 100 CK over 5 years,
5 IgA, 20 weights, 1 height, 20 creatinine, 30 MedicationRequests, 40 administrations.

Deterministic (seeded), so every run measures the same work. ``variant`` gives the same record
under other resource ids: the same clinical work, but content no cache has seen (the service
remembers validation verdicts by content digest, so repeating one body would measure the cache).
"""

from __future__ import annotations

import random
import uuid
from datetime import date, timedelta
from typing import Any

TODAY = date(2026, 6, 1)
PATIENT_ID = "bench-1"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
NDC = "http://hl7.org/fhir/sid/ndc"


def _observation(i: int, code: str, display: str, day: date, value: float, unit: str) -> dict:
    return {
        "resourceType": "Observation",
        "id": f"obs-{code}-{i}",
        "status": "final",
        "category": [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": "laboratory"}]}],
        "code": {"coding": [{"system": LOINC, "code": code, "display": display}], "text": display},
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
        "effectiveDateTime": day.isoformat(),
        "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit},
    }


def _statin_request(i: int, day: date, status: str) -> dict:
    return {
        "resourceType": "MedicationRequest",
        "id": f"mr-statin-{i}",
        "status": status,
        "intent": "order",
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
        "medicationCodeableConcept": {
            "coding": [{"system": RXNORM, "code": "617311",
                        "display": "atorvastatin 40 MG Oral Tablet"}],
            "text": "atorvastatin 40 MG Oral Tablet"},
        "authoredOn": day.isoformat(),
        "dispenseRequest": {"validityPeriod": {
            "start": day.isoformat(), "end": (day + timedelta(days=60)).isoformat()}},
    }


def _ivig_concept() -> dict:
    return {"coding": [{"system": NDC, "code": "13533-800-20",
                        "display": "Gamunex-C 10% 20 g/200 mL"}],
            "text": "Immune globulin IV (Gamunex-C) 10%"}


def _ivig_request(i: int, day: date, status: str) -> dict:
    return {
        "resourceType": "MedicationRequest",
        "id": f"mr-ivig-{i}",
        "status": status,
        "intent": "order",
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
        "medicationCodeableConcept": _ivig_concept(),
        "authoredOn": day.isoformat(),
        "dosageInstruction": [{
            "timing": {"repeat": {"count": 2, "frequency": 1, "period": 1, "periodUnit": "d"}},
            "route": {"coding": [{"system": "http://snomed.info/sct", "code": "47625008",
                                  "display": "Intravenous route"}]},
            "doseAndRate": [{"doseQuantity": {"value": 35, "unit": "g", "system": UCUM,
                                              "code": "g"}}]}],
    }


def _administration(i: int, day: date) -> dict:
    return {
        "resourceType": "MedicationAdministration",
        "id": f"ma-ivig-{i}",
        "status": "completed",
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
        "medicationCodeableConcept": _ivig_concept(),
        "effectiveDateTime": day.isoformat(),
        "dosage": {"dose": {"value": 35, "unit": "g", "system": UCUM, "code": "g"}},
    }


def record_resources() -> list[dict]:
    rng = random.Random(20260601)
    resources: list[dict] = [{
        "resourceType": "Patient", "id": PATIENT_ID,
        "name": [{"family": "Benchpatient", "given": ["Ada"]}],
        "gender": "female", "birthDate": "1961-04-12",
    }]
    start = TODAY - timedelta(days=5 * 365)
    for i in range(100):  # CK every ~18 days over 5 years
        day = start + timedelta(days=int(i * 18.2))
        if i == 99:
            # The last CK 37 days after the one before: CK in remission on IVIG for 18 months,
            # so the patient-view gives a card (CONT-01) and the benchmark measures rendering too.
            day = TODAY - timedelta(days=5)
        value = rng.uniform(90, 180) if i > 30 else rng.uniform(800, 9000)
        resources.append(_observation(i, "2157-6", "Creatine kinase", day, round(value), "U/L"))
    for i in range(5):
        day = start + timedelta(days=200 + i * 300)
        resources.append(_observation(i, "2458-8", "IgA", day, round(rng.uniform(120, 250)),
                                      "mg/dL"))
    for i in range(20):
        day = TODAY - timedelta(days=i * 80)
        resources.append(_observation(i, "29463-7", "Body weight", day,
                                      round(rng.uniform(78, 84), 1), "kg"))
        resources.append(_observation(i, "2160-0", "Creatinine", day,
                                      round(rng.uniform(0.7, 1.0), 2), "mg/dL"))
    resources.append(_observation(0, "8302-2", "Body height", start, 165.0, "cm"))
    for i in range(18):
        resources.append(_statin_request(i, start + timedelta(days=i * 20), "completed"))
    for i in range(12):
        resources.append(_ivig_request(i, TODAY - timedelta(days=30 * (12 - i)),
                                       "active" if i == 11 else "completed"))
    for i in range(40):
        resources.append(_administration(i, TODAY - timedelta(days=(40 - i) * 14 + 1)))
    return resources


def _searchset(resources: list[dict]) -> dict:
    return {"resourceType": "Bundle", "type": "searchset", "total": len(resources),
            "entry": [{"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": r} for r in resources]}


def prefetch(resources: list[dict]) -> dict[str, Any]:
    by_type: dict[str, list[dict]] = {}
    for resource in resources:
        by_type.setdefault(resource["resourceType"], []).append(resource)
    return {
        "patient": by_type["Patient"][0],
        "observations": _searchset(by_type.get("Observation", [])),
        "medicationRequests": _searchset(by_type.get("MedicationRequest", [])),
        "medicationAdministrations": _searchset(by_type.get("MedicationAdministration", [])),
        "medicationStatements": None,
        "conditions": None,
    }


def ivig_draft(variant: int = 0) -> dict:
    draft = _ivig_request(99, TODAY, "draft")
    draft["id"] = f"draft-ivig-{variant + 1}"
    return draft


def with_variant(resources: list[dict], variant: int) -> list[dict]:
    """The same resources under ids suffixed ``-v<variant>`` (the Patient keeps its id)."""
    if variant == 0:
        return resources
    renamed = []
    for resource in resources:
        if resource["resourceType"] != "Patient":
            resource = {**resource, "id": f"{resource['id']}-v{variant}"}
        renamed.append(resource)
    return renamed


def hook_body(hook: str, with_prefetch: bool = True, variant: int = 0) -> dict[str, Any]:
    resources = with_variant(record_resources(), variant)
    context: dict[str, Any] = {"userId": "Practitioner/bench", "patientId": PATIENT_ID}
    if hook != "patient-view":
        context["draftOrders"] = {"resourceType": "Bundle", "type": "collection",
                                  "entry": [{"resource": ivig_draft(variant)}]}
    body: dict[str, Any] = {"hookInstance": str(uuid.uuid4()), "hook": hook, "context": context}
    if with_prefetch:
        body["prefetch"] = prefetch(resources)
    return body
