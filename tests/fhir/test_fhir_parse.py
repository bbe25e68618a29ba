"""R4 validation at the boundary and the tolerance for what real clients send (clients.md)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from cds_service.fhir.parse import (
    InvalidResource,
    parse_resource,
    tolerate,
    unpack_bundle,
    validate,
)

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"

# The draft the CDS Hooks Sandbox builds with its default DSTU2 server
# (src/reducers/medication-reducers.js createFhirResource).
SANDBOX_DSTU2_DRAFT: dict[str, Any] = {
    "resourceType": "MedicationOrder",
    "dateWritten": "2025-07-01",
    "status": "draft",
    "patient": {"reference": "Patient/smart-1288992"},
    "dosageInstruction": [
        {
            "doseQuantity": {"value": 1, "system": "http://unitsofmeasure.org", "code": "{pill}"},
            "timing": {
                "repeat": {
                    "frequency": 1,
                    "period": 1,
                    "periodUnits": "d",
                    "boundsPeriod": {"start": "2025-07-01", "end": "2025-08-01"},
                }
            },
        }
    ],
    "medicationCodeableConcept": {
        "text": "atorvastatin 20 MG Oral Tablet",
        "coding": [
            {"display": "atorvastatin 20 MG Oral Tablet", "system": RXNORM, "code": "617310"}
        ],
    },
    "reasonCodeableConcept": {"text": "Hyperlipidemia"},
}


def test_sandbox_dstu2_medication_order_becomes_an_r4_medication_request() -> None:
    original = copy.deepcopy(SANDBOX_DSTU2_DRAFT)
    converted = parse_resource(SANDBOX_DSTU2_DRAFT, draft=True)
    assert SANDBOX_DSTU2_DRAFT == original  # the client's JSON is not mutated
    assert converted["resourceType"] == "MedicationRequest"
    assert converted["subject"] == {"reference": "Patient/smart-1288992"}
    assert converted["authoredOn"] == "2025-07-01"
    assert converted["intent"] == "order"
    assert converted["status"] == "draft"
    assert converted["reasonCode"] == [{"text": "Hyperlipidemia"}]
    dosage = converted["dosageInstruction"][0]
    assert dosage["doseAndRate"] == [
        {"doseQuantity": {"value": 1, "system": "http://unitsofmeasure.org", "code": "{pill}"}}
    ]
    assert "doseQuantity" not in dosage
    assert dosage["timing"]["repeat"]["periodUnit"] == "d"
    assert "periodUnits" not in dosage["timing"]["repeat"]
    assert "patient" not in converted and "dateWritten" not in converted


def test_dstu2_order_fields_without_r4_home_are_dropped_and_others_renamed() -> None:
    order = {
        "resourceType": "MedicationOrder",
        "id": "o1",
        "status": "stopped",
        "patient": {"reference": "Patient/1"},
        "prescriber": {"reference": "Practitioner/2"},
        "dateEnded": "2024-01-01",
        "reasonEnded": {"text": "myalgia"},
        "note": "take with food",
        "medicationCodeableConcept": {"text": "simvastatin"},
        "dispenseRequest": {
            "medicationCodeableConcept": {"text": "other"},
            "numberOfRepeatsAllowed": 2,
        },
        "substitution": {"type": {"text": "G"}},
        "dosageInstruction": [
            {
                "additionalInstructions": {"text": "with food"},
                "siteCodeableConcept": {"text": "arm"},
                "rateRatio": {"numerator": {"value": 1}, "denominator": {"value": 2}},
                "timing": {"repeat": {"when": "HS", "durationUnits": "h", "duration": 1}},
            }
        ],
    }
    converted = parse_resource(order)
    assert converted["requester"] == {"reference": "Practitioner/2"}
    assert converted["statusReason"] == {"text": "myalgia"}
    assert converted["note"] == [{"text": "take with food"}]
    assert converted["dispenseRequest"] == {"numberOfRepeatsAllowed": 2}
    assert "substitution" not in converted and "dateEnded" not in converted
    dosage = converted["dosageInstruction"][0]
    assert dosage["additionalInstruction"] == [{"text": "with food"}]
    assert dosage["site"] == {"text": "arm"}
    assert dosage["doseAndRate"][0]["rateRatio"]["denominator"] == {"value": 2}
    assert dosage["timing"]["repeat"] == {"when": ["HS"], "durationUnit": "h", "duration": 1}


def test_sandbox_rx_sign_category_object_is_wrapped_and_intent_defaulted_on_drafts() -> None:
    draft = {
        "resourceType": "MedicationRequest",
        "status": "draft",
        "subject": {"reference": "Patient/1"},
        "category": {"coding": [{"code": "outpatient"}]},
        "medicationCodeableConcept": {"text": "atorvastatin"},
    }
    with pytest.raises(InvalidResource):
        validate(draft)  # what a strict R4 parser says about the Sandbox's Rx Sign draft
    converted = parse_resource(draft, draft=True)
    assert converted["category"] == [{"coding": [{"code": "outpatient"}]}]
    assert converted["intent"] == "order"


def test_missing_intent_is_not_invented_outside_drafts() -> None:
    request = {
        "resourceType": "MedicationRequest",
        "status": "active",
        "subject": {"reference": "Patient/1"},
        "medicationCodeableConcept": {"text": "atorvastatin"},
    }
    with pytest.raises(InvalidResource, match="intent"):
        parse_resource(request)


def test_stu3_dosage_dose_is_moved_into_dose_and_rate() -> None:
    request = {
        "resourceType": "MedicationRequest",
        "status": "draft",
        "intent": "order",
        "subject": {"reference": "Patient/1"},
        "medicationCodeableConcept": {"text": "x"},
        "dosageInstruction": [{"doseQuantity": {"value": 35, "unit": "g"}, "text": "35 g"}],
    }
    converted = parse_resource(request)
    assert converted["dosageInstruction"] == [
        {"text": "35 g", "doseAndRate": [{"doseQuantity": {"value": 35, "unit": "g"}}]}
    ]


def test_conformant_resources_are_passed_through_unchanged() -> None:
    resource = {
        "resourceType": "Observation",
        "id": "o",
        "status": "final",
        "code": {"text": "CK"},
        "valueQuantity": {"value": 120, "unit": "U/L"},
    }
    assert tolerate(resource) is resource
    assert parse_resource(resource) is resource


@pytest.mark.parametrize(
    ("resource", "message"),
    [
        ({"resourceType": "Observation", "status": "final"}, "code"),
        (
            {
                "resourceType": "Observation",
                "status": "final",
                "code": {},
                "valueQuantity": {"value": "x"},
            },
            "valueQuantity.value",
        ),
        ({"resourceType": "NoSuchType"}, "unknown resourceType"),
        ({"status": "final"}, "resourceType"),
        ("Observation", "not a JSON object"),
    ],
)
def test_invalid_resources_are_rejected_naming_fields_not_values(
    resource: Any, message: str
) -> None:
    with pytest.raises(InvalidResource, match=message) as caught:
        parse_resource(resource)
    assert "'x'" not in str(caught.value)


def test_bundle_entries_are_validated_one_by_one() -> None:
    good = {"resourceType": "Observation", "id": "1", "status": "final", "code": {"text": "CK"}}
    bad = {"resourceType": "Observation", "id": "2", "status": "final"}  # no code
    bundle = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [
            {"fullUrl": "http://x/Observation/1", "resource": good},
            {"resource": bad},
            {"resource": {"resourceType": "Nonsense"}},
            {"resource": "not an object"},
            {"fullUrl": "http://x/deleted"},  # an entry without resource carries nothing
            {"resource": {"resourceType": "OperationOutcome", "issue": []}},
        ],
    }
    unpacked = unpack_bundle(bundle)
    assert unpacked.entries == [("http://x/Observation/1", good)]
    assert unpacked.skipped == {"Observation": 1, "Nonsense": 1, "unknown": 1}
    assert unpacked.outcomes == 1


@pytest.mark.parametrize(
    "bundle",
    [
        {"resourceType": "Patient"},
        {"resourceType": "Bundle", "entry": {"resource": {}}},
    ],
)
def test_a_non_bundle_is_rejected_as_a_whole(bundle: dict) -> None:
    with pytest.raises(InvalidResource):
        unpack_bundle(bundle)


def test_empty_bundle_has_no_entries() -> None:
    assert unpack_bundle({"resourceType": "Bundle", "type": "searchset"}).entries == []
    assert unpack_bundle({"resourceType": "Bundle", "entry": None}).entries == []


def test_validation_verdicts_are_remembered_by_content_not_by_identity() -> None:
    resource = {
        "resourceType": "Observation",
        "id": "v1",
        "status": "final",
        "code": {"text": "CK"},
    }
    validate(resource)
    validate(copy.deepcopy(resource))  # same content: the remembered verdict
    broken = {**resource, "valueQuantity": {"value": "lots"}}
    for _ in range(2):  # a remembered rejection is still a rejection, with the same message
        with pytest.raises(InvalidResource, match="Observation: invalid valueQuantity.value"):
            validate(broken)
    resource["effectiveDateTime"] = "not a date"  # changed content is validated afresh
    with pytest.raises(InvalidResource, match="effectiveDateTime"):
        validate(resource)


def test_resources_that_are_not_plain_json_are_still_validated() -> None:
    odd = {"resourceType": "Observation", "status": "final", "code": {"text": "CK"}}
    odd["valueQuantity"] = {"value": float("nan")}
    with pytest.raises(InvalidResource):
        validate(odd)


@pytest.mark.parametrize("resource_type", [["Observation"], {"x": 1}, 7, None])
def test_a_resource_type_that_is_not_a_string_is_invalid_not_a_crash(resource_type: Any) -> None:
    with pytest.raises(InvalidResource):
        parse_resource({"resourceType": resource_type, "category": {"text": "x"}}, draft=True)
    bundle = {"resourceType": "Bundle", "entry": [{"resource": {"resourceType": resource_type}}]}
    assert unpack_bundle(bundle).entries == []
