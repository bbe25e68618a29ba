"""R4 parsing at the boundary: tolerate what real clients send, then validate resource by resource.

Tolerance first (clients.md §1.1, §1.5 items 6-7), because a strict R4 parser would reject what
the CDS Hooks Sandbox actually sends:

- a DSTU2 ``MedicationOrder`` (the Sandbox's default server is DSTU2) becomes an R4
  ``MedicationRequest``: ``patient`` -> ``subject``, ``prescriber`` -> ``requester``,
  ``dateWritten`` -> ``authoredOn``, dose and rate moved into ``doseAndRate``, DSTU2 timing unit
  names renamed;
- an STU3-shaped dosage (``doseQuantity`` directly on the dosage) is moved into ``doseAndRate``;
- a single ``category`` object where R4 has an array is wrapped into an array;
- a drafted order without ``intent`` gets ``intent: "order"`` (it is being ordered).

Validation uses the ``fhir.resources.R4B`` models (``parse_obj`` on the dict: fhir.resources 7.1
builds its R4B models on the pydantic v1 API, so ``model_validate`` does not exist there). The
dicts, not the models, are passed on: the record reads plain R4 JSON.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from fhir.resources.R4B import get_fhir_model_class

from cds_service.fhir.fastcheck import proves_valid

Resource = dict[str, Any]


class InvalidResource(ValueError):
    """A resource the R4 model rejects. The message names fields, never their values."""


@cache
def _model(resource_type: str) -> Any:
    try:
        return get_fhir_model_class(resource_type)
    except KeyError:
        return None


def validate(resource: Any, *, fast: bool = True) -> None:
    """Raise ``InvalidResource`` unless ``resource`` is a valid R4 resource (R4B model).

    ``fast``: first try ``fastcheck.proves_valid``, a sound shortcut (True only where the model
    accepts); drafted orders pass ``fast=False`` and always meet the model.
    """
    if not isinstance(resource, dict):
        raise InvalidResource("not a JSON object")
    resource_type = resource.get("resourceType")
    model = _model(resource_type) if isinstance(resource_type, str) else None
    if model is None:
        raise InvalidResource("unknown resourceType")
    if fast and proves_valid(resource):
        return
    digest = _digest(resource)
    if digest is not None:
        known = _verdicts.get(digest)
        if known is not None:
            if known:
                raise InvalidResource(known)
            return
    try:
        model.parse_obj(resource)
    except Exception as exc:  # pydantic v1 ValidationError, TypeError on odd shapes
        message = f"{resource_type}: {_fields_at_fault(exc)}"
        if digest is not None:
            _verdicts.put(digest, message)
        raise InvalidResource(message) from None
    if digest is not None:
        _verdicts.put(digest, "")


def _digest(resource: dict[str, Any]) -> bytes | None:
    """A content digest of the resource, or None when it cannot be serialized canonically."""
    try:
        text = json.dumps(resource, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError):
        return None  # not plain JSON (e.g. a NaN): validate every time
    return hashlib.blake2b(text.encode("utf-8"), digest_size=20).digest()


class _Verdicts:
    """Validation results by content digest: "" (valid) or the rejection message.

    Model validation costs about 0.3 ms a resource (pydantic v1 under fhir.resources 7.1), and a
    client sends the same record again and again (order-select fires on every change of the
    draft). Only digests and field-name messages are kept -- no patient data -- in a bounded LRU.
    """

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._items: OrderedDict[bytes, str] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, digest: bytes) -> str | None:
        with self._lock:
            verdict = self._items.get(digest)
            if verdict is not None:
                self._items.move_to_end(digest)
            return verdict

    def put(self, digest: bytes, verdict: str) -> None:
        with self._lock:
            self._items[digest] = verdict
            self._items.move_to_end(digest)
            while len(self._items) > self._capacity:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


# ~100 bytes an entry: 50,000 verdicts stay under 10 MB per worker.
_verdicts = _Verdicts(capacity=50_000)


def _fields_at_fault(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return "invalid"
    try:
        locations = [
            ".".join(str(p) for p in e.get("loc", ()) if p != "__root__") for e in errors()
        ]
    except Exception:  # errors() itself failing must not hide the rejection
        return "invalid"
    named = sorted({loc for loc in locations if loc})
    if not named:
        return "invalid"
    shown = ", ".join(named[:3]) + (f" and {len(named) - 3} more" if len(named) > 3 else "")
    return f"invalid {shown}"


def parse_resource(resource: Any, *, draft: bool = False) -> Resource:
    """Tolerate, then validate; returns the R4 dict (a new dict when anything was converted)."""
    if not isinstance(resource, dict):
        raise InvalidResource("not a JSON object")
    if not isinstance(resource.get("resourceType"), str):
        raise InvalidResource("unknown resourceType")  # tolerate() looks the type up in sets
    converted = tolerate(resource, draft=draft)
    validate(converted, fast=not draft)
    return converted


# ---------------------------------------------------------------------------------------------
# Bundles


@dataclass
class Unpacked:
    """The entries of a Bundle after one-by-one parsing."""

    entries: list[tuple[str | None, Resource]] = field(default_factory=list)  # (fullUrl, resource)
    skipped: dict[str, int] = field(default_factory=dict)
    outcomes: int = 0  # OperationOutcome entries (search warnings or errors)


def unpack_bundle(bundle: Resource) -> Unpacked:
    """Parse each entry of a Bundle; a malformed resource is skipped and counted, not fatal.

    Raises ``InvalidResource`` when the Bundle itself is not a Bundle of entries.
    """
    if bundle.get("resourceType") != "Bundle":
        raise InvalidResource("not a Bundle")
    raw_entries = bundle.get("entry", [])
    if raw_entries is None:
        raw_entries = []
    if not isinstance(raw_entries, list):
        raise InvalidResource("Bundle.entry is not an array")
    unpacked = Unpacked()
    for entry in raw_entries:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if resource is None:
            continue  # an entry without a resource (e.g. a deleted one) carries no data
        resource_type = resource.get("resourceType") if isinstance(resource, dict) else None
        if resource_type == "OperationOutcome":
            unpacked.outcomes += 1
            continue
        try:
            parsed = parse_resource(resource)
        except InvalidResource:
            label = resource_type if isinstance(resource_type, str) else "unknown"
            unpacked.skipped[label] = unpacked.skipped.get(label, 0) + 1
            continue
        full_url = entry.get("fullUrl")
        unpacked.entries.append((full_url if isinstance(full_url, str) else None, parsed))
    return unpacked


# ---------------------------------------------------------------------------------------------
# Tolerance

# R4 resources whose ``category`` is 0..* CodeableConcept (the Sandbox sends one object).
_CATEGORY_ARRAY_TYPES = frozenset(
    {"MedicationRequest", "Observation", "Condition", "ServiceRequest"}
)
# Request resources whose ``intent`` is required in R4.
_INTENT_TYPES = frozenset({"MedicationRequest", "ServiceRequest"})
# DSTU2 Timing.repeat names -> R4 names.
_TIMING_RENAMES = {"periodUnits": "periodUnit", "durationUnits": "durationUnit"}
_DOSE_KEYS = ("doseQuantity", "doseRange")
_RATE_KEYS = ("rateQuantity", "rateRatio", "rateRange")


def tolerate(resource: Resource, *, draft: bool = False) -> Resource:
    """Convert the known client deviations to R4; returns ``resource`` itself when none apply."""
    out = resource
    if out.get("resourceType") == "MedicationOrder":
        out = _medication_order_to_request(out)
    resource_type = out.get("resourceType")
    if resource_type in _CATEGORY_ARRAY_TYPES and isinstance(out.get("category"), dict):
        out = {**out, "category": [out["category"]]}
    if resource_type in ("MedicationRequest", "MedicationStatement"):
        dosage_key = "dosageInstruction" if resource_type == "MedicationRequest" else "dosage"
        dosages = out.get(dosage_key)
        if isinstance(dosages, list) and any(_needs_dosage_fix(d) for d in dosages):
            out = {**out, dosage_key: [_r4_dosage(d) for d in dosages]}
    if draft and resource_type in _INTENT_TYPES and "intent" not in out:
        out = {**out, "intent": "order"}
    return out


def _medication_order_to_request(order: Resource) -> Resource:
    """DSTU2 MedicationOrder -> R4 MedicationRequest (the elements with an R4 home)."""
    out: Resource = {"resourceType": "MedicationRequest"}
    for key, value in order.items():
        if key == "resourceType":
            continue
        if key == "patient":
            out["subject"] = value
        elif key == "prescriber":
            out["requester"] = value
        elif key == "dateWritten":
            out["authoredOn"] = value
        elif key == "reasonCodeableConcept":
            out["reasonCode"] = value if isinstance(value, list) else [value]
        elif key == "reasonReference":
            out["reasonReference"] = value if isinstance(value, list) else [value]
        elif key == "reasonEnded":
            out["statusReason"] = value
        elif key == "note":
            out["note"] = [{"text": value}] if isinstance(value, str) else value
        elif key == "dosageInstruction" and isinstance(value, list):
            out[key] = [_r4_dosage(d) for d in value]
        elif key == "dispenseRequest" and isinstance(value, dict):
            # DSTU2 could name a different medication to dispense; R4 has no such element.
            out[key] = {
                k: v
                for k, v in value.items()
                if k not in ("medicationCodeableConcept", "medicationReference")
            }
        elif key in ("dateEnded", "substitution"):
            # No R4 counterpart (substitution needs R4's allowed[x], which DSTU2 does not say).
            continue
        else:
            out[key] = value
    out.setdefault("intent", "order")
    return out


def _needs_dosage_fix(dosage: Any) -> bool:
    if not isinstance(dosage, dict):
        return False
    if any(k in dosage for k in _DOSE_KEYS + _RATE_KEYS):
        return True
    if isinstance(dosage.get("additionalInstructions"), dict) or "siteCodeableConcept" in dosage:
        return True
    timing = dosage.get("timing")
    repeat = timing.get("repeat") if isinstance(timing, dict) else None
    if not isinstance(repeat, dict):
        return False
    return (
        any(k in repeat for k in _TIMING_RENAMES)
        or isinstance(repeat.get("when"), str)
        or "boundsQuantity" in repeat
    )


def _r4_dosage(dosage: Any) -> Any:
    """A DSTU2/STU3 dosage in R4 shape: dose and rate under ``doseAndRate[0]``."""
    if not isinstance(dosage, dict):
        return dosage
    out: Resource = {}
    dose_and_rate: Resource = {}
    for key, value in dosage.items():
        if key in _DOSE_KEYS or key in _RATE_KEYS:
            dose_and_rate[key] = value
        elif key == "additionalInstructions":
            out["additionalInstruction"] = value if isinstance(value, list) else [value]
        elif key == "siteCodeableConcept":
            out["site"] = value
        elif key == "siteReference":
            continue  # DSTU2 body-site reference: R4 Dosage has only a CodeableConcept site
        elif key == "timing" and isinstance(value, dict):
            out[key] = _r4_timing(value)
        else:
            out[key] = value
    if dose_and_rate:
        existing = out.get("doseAndRate")
        if isinstance(existing, list) and existing and isinstance(existing[0], dict):
            out["doseAndRate"] = [{**dose_and_rate, **existing[0]}, *existing[1:]]
        else:
            out["doseAndRate"] = [dose_and_rate]
    return out


def _r4_timing(timing: Resource) -> Resource:
    repeat = timing.get("repeat")
    if not isinstance(repeat, dict):
        return timing
    fixed: Resource = {}
    for key, value in repeat.items():
        if key in _TIMING_RENAMES:
            fixed.setdefault(_TIMING_RENAMES[key], value)
        elif key == "when" and isinstance(value, str):
            fixed["when"] = [value]
        elif key == "boundsQuantity":
            fixed["boundsDuration"] = value
        else:
            fixed[key] = value
    return {**timing, "repeat": fixed}
