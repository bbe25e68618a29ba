"""FHIR R4 resources behind card suggestions, built and checked with ``fhir.resources`` (R4B).

A suggestion a clinician accepts is written to the EHR as it stands, so every resource is parsed
by the R4B models (identical to R4 for ServiceRequest and MedicationRequest) before it goes out,
then serialised back to plain JSON with no empty members.
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from fhir.resources.R4B.medicationrequest import MedicationRequest
from fhir.resources.R4B.medicationstatement import MedicationStatement
from fhir.resources.R4B.servicerequest import ServiceRequest
from pydantic.v1 import ValidationError

from cds_service.advice.model import Suggestion
from cds_service.codes import FHIR_ID, LOINC, SNOMED, UCUM
from cds_service.record.model import ACTIVE_ORDER_STATUSES, MedicationUse, format_number

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LabTest:
    text: str  # what the clinician reads on the order
    display: str | None  # LOINC long common name; None where not verified


# The lab orders a card may suggest (rules.md rules STAT-03, HMG-01/02, IGA-01, SAFE-01, CONT-01/02;
# codes and displays from clinical-evidence.md 5.1).
LAB_TESTS: Mapping[str, LabTest] = {
    "2157-6": LabTest(
        "Creatine kinase (CK)", "Creatine kinase [Enzymatic activity/volume] in Serum or Plasma"
    ),
    "3016-3": LabTest("TSH", "Thyrotropin [Units/volume] in Serum or Plasma"),
    "2458-8": LabTest("Serum IgA", "IgA [Mass/volume] in Serum or Plasma"),
    # clinical-evidence.md 5.1: 93493-5 is ARUP's "HMGCR Antibody, IgG"; the LOINC long name is
    # UNVERIFIED, so the coding carries no display rather than a possibly wrong one.
    "93493-5": LabTest("HMGCR antibody, IgG (anti-HMGCR)", None),
    "2160-0": LabTest("Creatinine", "Creatinine [Mass/volume] in Serum or Plasma"),
}

def _lab_category() -> dict[str, Any]:
    """SNOMED CT 108252007 "Laboratory procedure": the ServiceRequest category example value set
    (built once per lab test, in ``lab_request``)."""
    return {"coding": [{"system": SNOMED, "code": "108252007", "display": "Laboratory procedure"}]}


# FHIR R4 "id" datatype: what may follow "Patient/" or "MedicationRequest/" in a reference.
_FHIR_ID = re.compile(rf"^{FHIR_ID}$")


class SuggestionError(ValueError):
    """The advice asks for a suggestion that cannot be made from what it carries."""


class UnbuildableResource(Exception):
    """The resource (usually the client's own draft) does not validate as FHIR R4 once updated;
    the suggestion is left out rather than sent broken."""


def label_key(suggestion: Suggestion) -> str:
    """The template ``suggestions`` key of this suggestion ("order-lab:2157-6", "delete-draft")."""
    if suggestion.kind == "order-lab":
        return f"order-lab:{suggestion.loinc}"
    return suggestion.kind


def label_values(suggestion: Suggestion) -> dict[str, str]:
    """Values a suggestion label may use besides Advice.values: {medication}, {dose_g}, {days},
    {lab}."""
    values: dict[str, str] = {}
    if suggestion.target is not None:
        values["medication"] = suggestion.target.medication.display
    if suggestion.dose_g is not None:
        values["dose_g"] = format_number(suggestion.dose_g)
    if suggestion.days is not None:
        values["days"] = str(suggestion.days)
    if suggestion.loinc is not None and suggestion.loinc in LAB_TESTS:
        values["lab"] = LAB_TESTS[suggestion.loinc].text
    return values


def build_actions(suggestion: Suggestion, patient_id: str, reason: str) -> list[dict[str, Any]]:
    """The CDS Hooks actions of one suggestion; ``reason`` says why (the rule's display)."""
    if suggestion.kind == "order-lab":
        return [_order_lab(suggestion, patient_id, reason)]
    if suggestion.kind == "delete-draft":
        return [_delete_draft(suggestion)]
    if suggestion.kind == "update-draft":
        return [_update_draft(suggestion)]
    if suggestion.kind == "stop-active":
        return [_stop_active(suggestion, reason)]
    raise SuggestionError(f"unknown suggestion kind {suggestion.kind!r}")


def _order_lab(suggestion: Suggestion, patient_id: str, reason: str) -> dict[str, Any]:
    test = LAB_TESTS.get(suggestion.loinc or "")
    if test is None:
        raise SuggestionError(f"order-lab for LOINC {suggestion.loinc!r}, not a known lab test")
    if not patient_id:
        raise SuggestionError("order-lab needs the patient id for ServiceRequest.subject")
    if not _FHIR_ID.match(patient_id):
        raise UnbuildableResource("the patient id is not a FHIR id: no valid subject reference")
    # The request is the same for every patient but its subject: built and validated once per
    # lab test and reason (``lab_request``), each card getting its own copy with the subject set.
    resource = dict(copy.deepcopy(lab_request(test, suggestion.loinc, reason)))
    resource["subject"] = {"reference": f"Patient/{patient_id}"}
    return {
        "type": "create",
        "description": f"Order {test.text} (LOINC {suggestion.loinc}) as a draft lab request",
        "resource": resource,
    }


# Stands for the patient while the request is validated once: a FHIR id like any real one, which
# ``_order_lab`` then replaces (an id that passes ``_FHIR_ID`` validates the same way).
_ANY_PATIENT_ID = "any-patient"


@functools.lru_cache(maxsize=64)  # a few lab tests × the rules that order them
def lab_request(test: LabTest, loinc: str, reason: str) -> Mapping[str, Any]:
    """The draft ServiceRequest ordering ``test`` (LOINC ``loinc``) because of ``reason`` (the
    rule's display), validated and serialised as ``validated`` does, for a stand-in patient.

    Shared between calls: callers copy it before setting the subject."""
    coding: dict[str, Any] = {"system": LOINC, "code": loinc}
    if test.display:
        coding["display"] = test.display
    resource = {
        "resourceType": "ServiceRequest",
        "status": "draft",
        "intent": "order",
        "category": [_lab_category()],
        "code": {"coding": [coding], "text": test.text},
        "subject": {"reference": f"Patient/{_ANY_PATIENT_ID}"},
        "reasonCode": [{"text": reason}],
    }
    return validated(ServiceRequest, resource)


def _draft_target(suggestion: Suggestion) -> MedicationUse:
    target = suggestion.target
    if target is None:
        raise SuggestionError(f"{suggestion.kind} needs a target order")
    if not target.resource_id:
        # The client drafted the order without an id: nothing to point the action at.
        raise UnbuildableResource("the drafted order has no id")
    if not target.drafted:
        # Deleting or rewriting an order that is not this hook's draft would touch a signed order.
        raise SuggestionError(f"{suggestion.kind} targets an order that is not drafted")
    if target.resource_type != "MedicationRequest":
        raise SuggestionError(f"{suggestion.kind} targets a {target.resource_type}")
    if not _FHIR_ID.match(target.resource_id):
        raise UnbuildableResource("the drafted order's id is not a FHIR id")
    return target


def _delete_draft(suggestion: Suggestion) -> dict[str, Any]:
    target = _draft_target(suggestion)
    return {
        "type": "delete",
        "description": f"Remove the drafted order for {target.medication.display}",
        "resourceId": f"{target.resource_type}/{target.resource_id}",
    }


def _update_draft(suggestion: Suggestion) -> dict[str, Any]:
    target = _draft_target(suggestion)
    if suggestion.dose_g is None or suggestion.days is None:
        raise SuggestionError("update-draft needs dose_g and days")
    if suggestion.dose_g <= 0 or suggestion.days < 1:
        raise SuggestionError("update-draft needs a positive dose and at least one day")
    resource = _own_copy(target)
    dose_text = format_number(suggestion.dose_g)
    day_word = "day" if suggestion.days == 1 else "days"
    dosages = resource.get("dosageInstruction") or [{}]
    resource["dosageInstruction"] = dosages
    dosage = dosages[0]
    rates = dosage.get("doseAndRate") or [{}]
    dosage["doseAndRate"] = rates
    rate = rates[0]
    rate.pop("doseRange", None)  # dose[x]: one of doseRange / doseQuantity
    rate["doseQuantity"] = {
        "value": _json_number(suggestion.dose_g),
        "unit": "g",
        "system": UCUM,
        "code": "g",
    }
    # rules.md "Ordered IVIG dose": the dose is per day, repeated timing.repeat.count days.
    timing = dosage.get("timing") or {}
    dosage["timing"] = timing
    repeat = timing.get("repeat") or {}
    timing["repeat"] = repeat
    repeat.update({"count": suggestion.days, "frequency": 1, "period": 1, "periodUnit": "d"})
    repeat.pop("countMax", None)
    if "boundsDuration" in repeat:
        repeat["boundsDuration"] = {
            "value": suggestion.days,
            "unit": day_word,
            "system": UCUM,
            "code": "d",
        }
    if "text" in dosage:
        # The old free text would contradict the corrected dose.
        dosage["text"] = f"{dose_text} g once daily for {suggestion.days} {day_word}"
    return {
        "type": "update",
        "description": (
            f"Change the drafted {target.medication.display} to {dose_text} g daily for "
            f"{suggestion.days} {day_word}"
        ),
        "resource": validated(MedicationRequest, resource),
    }


def _stop_active(suggestion: Suggestion, reason: str) -> dict[str, Any]:
    target = suggestion.target
    if target is None:
        raise SuggestionError("stop-active needs a target order")
    if not target.resource_id:
        raise UnbuildableResource("the active order has no id")
    if target.drafted or target.status not in ACTIVE_ORDER_STATUSES:
        raise SuggestionError("stop-active targets an order that is not active or on-hold")
    resource = _own_copy(target)
    resource["status"] = "stopped"
    status_reason = {"text": f"Stopped on clinical decision support advice: {reason}"}
    model: type[MedicationRequest] | type[MedicationStatement]
    if target.resource_type == "MedicationRequest":
        resource["statusReason"] = status_reason
        model = MedicationRequest
    elif target.resource_type == "MedicationStatement":
        resource["statusReason"] = [status_reason]  # 0..* on MedicationStatement
        model = MedicationStatement
    else:
        raise SuggestionError(f"stop-active targets a {target.resource_type}")
    return {
        "type": "update",
        "description": f"Set the active order for {target.medication.display} to stopped",
        "resource": validated(model, resource),
    }


def _own_copy(target: MedicationUse) -> dict[str, Any]:
    """A deep copy of the target's resource as received, checked to be valid R4 before it is
    changed (an update is only as good as the resource it starts from)."""
    resource = copy.deepcopy(dict(target.raw))
    if (
        resource.get("resourceType") != target.resource_type
        or resource.get("id") != target.resource_id
    ):
        raise SuggestionError("the target order's resource is missing or does not match its id")
    model = (
        MedicationStatement if target.resource_type == "MedicationStatement" else MedicationRequest
    )
    _checked(model, resource)  # the check only: the resource is serialised once, when changed
    return resource


def validated(model: type[Any], resource: Mapping[str, Any]) -> dict[str, Any]:
    """``resource`` parsed by its R4B model and serialised back: valid FHIR JSON, no empties.

    Raises ``UnbuildableResource`` when the model rejects it.
    """
    parsed = _checked(model, resource)
    pruned = prune_empty(json.loads(parsed.json()))
    if not isinstance(pruned, dict):
        raise UnbuildableResource(f"{resource.get('resourceType')} serialised to nothing")
    return pruned


def _checked(model: type[Any], resource: Mapping[str, Any]) -> Any:
    """``resource`` parsed by its R4B model, its extensions checked too (``extension_problem``);
    ``UnbuildableResource`` when either rejects it."""
    try:
        parsed = model.parse_obj(resource)
    except (ValidationError, ValueError, TypeError) as exc:
        raise UnbuildableResource(
            f"{resource.get('resourceType')} does not validate as FHIR R4 ({_error_locations(exc)})"
        ) from exc
    broken = extension_problem(resource)
    if broken:
        raise UnbuildableResource(
            f"{resource.get('resourceType')} does not validate as FHIR R4 ({broken})"
        )
    return parsed


_EXTENSION_KEYS = ("extension", "modifierExtension")


def extension_problem(value: Any, path: str = "") -> str | None:
    """Where an extension breaks R4 in a way the ``fhir.resources`` models let through (they treat
    ``Extension.url``, 1..1 in R4, as optional, and do not check ext-1: a value or nested
    extensions, not both, not neither); None when every extension is sound. Paths only."""
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = extension_problem(item, f"{path}[{index}]")
            if found:
                return found
        return None
    if not isinstance(value, dict):
        return None
    for key, item in value.items():
        where = f"{path}.{key}" if path else key
        if key in _EXTENSION_KEYS and isinstance(item, list):
            for index, extension in enumerate(item):
                problem = _one_extension_problem(extension)
                if problem:
                    return f"{where}[{index}] {problem}"
        found = extension_problem(item, where)
        if found:
            return found
    return None


def _one_extension_problem(extension: Any) -> str | None:
    if not isinstance(extension, dict):
        return "is not an object"
    url = extension.get("url")
    if not isinstance(url, str) or not url.strip():
        return "has no url"
    has_value = any(k.startswith("value") for k in extension)
    has_nested = bool(extension.get("extension"))
    if has_value == has_nested:
        return "needs either a value or nested extensions (ext-1)"
    return None


def _error_locations(exc: Exception) -> str:
    # Only the failing element paths: the values may be patient data and must not be logged.
    if isinstance(exc, ValidationError):
        return ", ".join(".".join(str(p) for p in error["loc"]) for error in exc.errors())
    return type(exc).__name__


def prune_empty(value: Any) -> Any:
    """``value`` without null, empty-string, empty-array or empty-object members (CDS Hooks: "SHALL
    NOT be null ... SHALL NOT be empty"; in FHIR an empty element means absent)."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            item = prune_empty(item)
            if item is not None:
                out[key] = item
        return out or None
    if isinstance(value, list):
        items = [pruned for pruned in (prune_empty(item) for item in value) if pruned is not None]
        return items or None
    if value is None or value == "":
        return None
    return value


def _json_number(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)
