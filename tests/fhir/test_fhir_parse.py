"""Reading FHIR at the boundary: the tolerance for what real clients send (clients.md), liberal
reading (rules.md r2 "Reading a resource") and the flaw count; what the whole R4B model says of
the same resources, beside it (the service asks it only of what it emits)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class

from bench.record import record_resources
from cds_service.fhir.parse import (
    InvalidResource,
    count_flawed,
    has_flaws,
    read_resource,
    tolerate,
    type_label,
    unpack_bundle,
)

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"


def r4_model_accepts(resource: dict[str, Any]) -> bool:
    """What the fhir.resources R4B model says of ``resource`` (as a suggestion asks it)."""
    try:
        get_fhir_model_class(resource["resourceType"]).parse_obj(resource)
    except Exception:  # pydantic ValidationError, TypeError on odd shapes
        return False
    return True

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
    converted = read_resource(SANDBOX_DSTU2_DRAFT, draft=True)
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
    converted = read_resource(order)
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
    # What a strict R4 parser says about the Sandbox's Rx Sign draft:
    assert not r4_model_accepts(draft)
    converted = read_resource(draft, draft=True)
    assert converted["category"] == [{"coding": [{"code": "outpatient"}]}]
    assert converted["intent"] == "order"
    assert r4_model_accepts(converted)


def test_missing_intent_is_not_invented_outside_drafts() -> None:
    request = {
        "resourceType": "MedicationRequest",
        "status": "active",
        "subject": {"reference": "Patient/1"},
        "medicationCodeableConcept": {"text": "atorvastatin"},
    }
    converted = read_resource(request)
    assert "intent" not in converted
    assert not r4_model_accepts(converted) and has_flaws(converted)  # read past, and counted


def test_stu3_dosage_dose_is_moved_into_dose_and_rate() -> None:
    request = {
        "resourceType": "MedicationRequest",
        "status": "draft",
        "intent": "order",
        "subject": {"reference": "Patient/1"},
        "medicationCodeableConcept": {"text": "x"},
        "dosageInstruction": [{"doseQuantity": {"value": 35, "unit": "g"}, "text": "35 g"}],
    }
    converted = read_resource(request)
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
    assert read_resource(resource) is resource
    assert not has_flaws(resource) and r4_model_accepts(resource)


CK = {
    "resourceType": "Observation",
    "id": "ck",
    "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "2157-6"}]},
    "effectiveDateTime": "2025-06-28",
    "valueQuantity": {"value": 6500, "unit": "U/L", "comparator": ">"},
    "extension": [{"url": "http://example.org/x", "valueString": "y"}],
}


@pytest.mark.parametrize(
    "change",
    [
        {"fooBar": 1},  # an element R4 does not define
        {"note": "drawn late"},  # a string where R4 has an array of Annotation
        {"note": ["drawn late"]},  # an array of strings where R4 has Annotations
        {"interpretation": {"text": "H"}},  # an object where R4 has an array
        {"status": "FINAL"},  # a compared code outside its value set as written
        {"status": " final"},
        {"status": 1},
        {"extension": [{"valueString": "no url"}]},
        {"code": None},  # null is not FHIR JSON, and code is required
        {"valueQuantity": {"value": 6500, "comparator": "more than"}},
        {"_status": "x"},  # a primitive's extension element must be an object
        {"effectiveDateTime": 20250628},
    ],
    ids=lambda change: next(iter(change)),
)
def test_flaws_are_read_past_and_counted(change: dict[str, Any]) -> None:
    flawed = {**CK, **change}
    assert read_resource(flawed) is flawed  # never refused, never rewritten
    assert has_flaws(flawed)
    assert not has_flaws(CK)
    assert count_flawed([CK, flawed, flawed]) == {"Observation": 2}


@pytest.mark.parametrize(
    "resource",
    [
        {"resourceType": "Observation", "code": {"text": "CK"}},  # no status (required)
        {"resourceType": "MedicationRequest", "status": "active", "intent": "order",
         "subject": {"reference": "Patient/1"}},  # no medication[x] (a required choice)
        {"resourceType": "Patient", "gender": "Female"},
        {"resourceType": "MedicationStatement", "status": "taking",
         "subject": {"reference": "Patient/1"}, "medicationCodeableConcept": {"text": "x"}},
    ],
)
def test_missing_required_elements_and_codes_outside_r4_are_flaws(resource: dict) -> None:
    # (the fhir.resources model itself checks a code's pattern, not its value set)
    assert has_flaws(resource)
    assert read_resource(resource) is resource


@pytest.mark.parametrize("comparator", [["<"], {"code": "<"}, None, 5])
def test_a_comparator_that_is_not_a_string_is_a_flaw_not_a_crash(comparator: object) -> None:
    """Found by the HTTP fuzzer (a 500): an array is unhashable, so it is never looked up."""
    flawed = {**CK, "valueQuantity": {**CK["valueQuantity"], "comparator": comparator}}
    assert has_flaws(flawed)
    assert count_flawed([flawed]) == {"Observation": 1}


def test_flaws_deeper_than_the_top_level_are_not_walked() -> None:
    """Cheap on purpose: the model would reject this, the flaw count does not look so deep."""
    deep = {**CK, "performer": [{"reference": 7}], "code": {"coding": {"code": "2157-6"}}}
    assert read_resource(deep) is deep
    assert not has_flaws(deep)
    assert not r4_model_accepts(deep)


def test_an_unknown_resource_type_is_read_and_labelled_unknown() -> None:
    odd = {"resourceType": "Patient Name Here", "id": "x"}
    assert read_resource(odd) is odd
    assert has_flaws(odd)
    assert count_flawed([odd]) == {"unknown": 1}
    assert type_label({"resourceType": "CodeableConcept"}) == "unknown"  # a type, not a resource
    assert type_label({"resourceType": "Observation"}) == "Observation"


@pytest.mark.parametrize(
    ("resource", "message"),
    [({"status": "final"}, "resourceType"), ("Observation", "not a JSON object")],
)
def test_only_what_cannot_be_read_at_all_is_refused(resource: Any, message: str) -> None:
    with pytest.raises(InvalidResource, match=message):
        read_resource(resource)


def test_bundle_entries_are_read_one_by_one() -> None:
    good = {"resourceType": "Observation", "id": "1", "status": "final", "code": {"text": "CK"}}
    flawed = {"resourceType": "Observation", "id": "2", "status": "FINAL", "note": "x"}
    odd = {"resourceType": "Nonsense"}
    bundle = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [
            {"fullUrl": "http://x/Observation/1", "resource": good},
            {"resource": flawed},
            {"resource": odd},
            {"resource": "not an object"},
            {"resource": {"resourceType": ["Observation"]}},
            {"fullUrl": "http://x/deleted"},  # an entry without resource carries nothing
            {"resource": {"resourceType": "OperationOutcome", "issue": []}},
        ],
    }
    unpacked = unpack_bundle(bundle)
    assert unpacked.entries == [("http://x/Observation/1", good), (None, flawed), (None, odd)]
    assert unpacked.skipped == {"unknown": 2}
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


def test_resources_that_are_not_plain_json_are_not_valid_r4_to_the_model() -> None:
    odd = {"resourceType": "Observation", "status": "final", "code": {"text": "CK"}}
    odd["valueQuantity"] = {"value": float("nan")}
    assert not r4_model_accepts(odd)


@pytest.mark.parametrize("resource_type", [["Observation"], {"x": 1}, 7, None])
def test_a_resource_type_that_is_not_a_string_is_unreadable_not_a_crash(resource_type: Any) -> None:
    with pytest.raises(InvalidResource):
        read_resource({"resourceType": resource_type, "category": {"text": "x"}}, draft=True)
    bundle = {"resourceType": "Bundle", "entry": [{"resource": {"resourceType": resource_type}}]}
    assert unpack_bundle(bundle).entries == []


def test_the_flaw_count_agrees_with_the_model_on_every_scenario_and_the_bench_record(
    scenarios: dict[str, dict[str, Any]],
) -> None:
    """No false alarm: a resource the R4B model accepts has no flaw, unless a code the rules
    compare is written off its value set (which the model does not check); and what the model
    rejects in the scenarios is flagged too."""
    assert count_flawed(record_resources()) == {}
    checked = 0
    for scenario in scenarios.values():
        drafts = (scenario["context"].get("draftOrders") or {}).get("entry", [])
        for entry in [*scenario["record"]["entry"], *drafts]:
            resource = read_resource(entry["resource"])
            checked += 1
            if not r4_model_accepts(resource):
                assert has_flaws(resource), resource.get("id")
            elif has_flaws(resource):
                normalized = {
                    k: v.strip().lower() if k in ("status", "intent", "gender") else v
                    for k, v in resource.items()
                }
                assert not has_flaws(normalized), resource.get("id")
    assert checked > 100


class _Codes(dict):  # a JSON object that is not exactly a ``dict`` (an app's own mapping)
    pass


@pytest.mark.parametrize(
    ("change", "flawed"),
    [
        ({"valueInteger": 5}, False),  # a number: int and float both, checked the long way
        ({"valueInteger": 5.5}, False),
        ({"valueInteger": True}, True),  # a boolean is not a JSON number
        ({"code": _Codes(text="CK")}, False),  # a dict subclass is still an object
        ({"category": [_Codes(text="lab")]}, False),
        ({"category": [[]]}, True),  # an array item of the wrong kind
        ({"status": ["final"]}, True),
        ({"_status": {"extension": []}}, False),  # a primitive's extension element
        ({"extension": [{"url": "http://x", "valueString": "y"}]}, False),
        ({"extension": [{"valueString": "y"}]}, True),  # an extension without url
    ],
)
def test_each_element_is_judged_by_its_json_kind(change: dict[str, Any], flawed: bool) -> None:
    """The quick exact-type check and the full kind check give one verdict."""
    resource = {**CK, **change}
    assert has_flaws(resource) is flawed
    assert count_flawed([resource]) == ({"Observation": 1} if flawed else {})


class _TypeName(str):  # a resourceType that is not exactly a ``str``
    pass


def test_the_flaw_count_looks_each_type_up_once_and_agrees_with_has_flaws() -> None:
    """``count_flawed`` keeps each resourceType's shape for the call; its counts are still
    ``has_flaws`` resource by resource, whatever the order and mix of types."""
    resources: list[dict[str, Any]] = []
    for resource in record_resources():
        resources.append(resource)
        resources.append({**resource, "fooBar": 1})  # the same type, flawed, right after
    resources += [
        {**CK, "resourceType": _TypeName("Observation")},
        {**CK, "resourceType": _TypeName("Observation"), "status": "FINAL"},
        {"resourceType": "Nonsense", "id": "x"},
        {"resourceType": "CodeableConcept"},
        {**CK, "status": "FINAL"},
    ]
    expected: dict[str, int] = {}
    for resource in resources:
        if has_flaws(resource):
            label = type_label(resource)
            expected[label] = expected.get(label, 0) + 1
    assert count_flawed(resources) == expected
    assert list(count_flawed(resources)) == list(expected)  # first flawed type first, as logged
    assert expected["Observation"] > len(resources) // 4 and expected["unknown"] == 2
