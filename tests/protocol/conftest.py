"""Request bodies for the protocol tests: minimal, valid CDS Hooks 2.0 calls."""

from __future__ import annotations

import uuid
from typing import Any


def patient_view(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": "Practitioner/example", "patientId": "pat-1"},
        "prefetch": {
            "patient": {"resourceType": "Patient", "id": "pat-1", "gender": "female",
                        "birthDate": "1960-04-02"},
            "observations": _empty_bundle(),
            "medicationRequests": _empty_bundle(),
            "medicationAdministrations": _empty_bundle(),
            "medicationStatements": _empty_bundle(),
            "conditions": _empty_bundle(),
        },
    }
    body.update(changes)
    return body


def statin_order_sign(**changes: Any) -> dict[str, Any]:
    body = patient_view(hook="order-sign")
    body["context"]["draftOrders"] = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": {
            "resourceType": "MedicationRequest", "id": "draft-1", "status": "draft",
            "intent": "order", "subject": {"reference": "Patient/pat-1"},
            "medicationCodeableConcept": {"coding": [{
                "system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "617310",
                "display": "atorvastatin 20 MG Oral Tablet"}]},
        }}],
    }
    del body["prefetch"]["medicationAdministrations"]
    body.update(changes)
    return body


def _empty_bundle() -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "searchset", "total": 0}


def searchset(*resources: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "searchset", "total": len(resources),
            "entry": [{"fullUrl": f"https://ehr.example.org/fhir/{r['resourceType']}/{r['id']}",
                       "resource": r} for r in resources]}


def ck_observation(obs_id: str, value: float, day: str, patient: str = "pat-1") -> dict[str, Any]:
    return {
        "resourceType": "Observation", "id": obs_id, "status": "final",
        "category": [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": "laboratory"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "2157-6",
                             "display": "Creatine kinase [Enzymatic activity/volume] in Serum"}]},
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": day,
        "valueQuantity": {"value": value, "unit": "U/L", "system": "http://unitsofmeasure.org",
                          "code": "U/L"},
    }
