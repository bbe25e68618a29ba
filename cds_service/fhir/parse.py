"""Reading FHIR at the boundary: tolerate what real clients send, then read every resource.

Tolerance first (clients.md §1.1, §1.5 items 6-7), because the CDS Hooks Sandbox sends:

- a DSTU2 ``MedicationOrder`` (the Sandbox's default server is DSTU2), which becomes an R4
  ``MedicationRequest``: ``patient`` -> ``subject``, ``prescriber`` -> ``requester``,
  ``dateWritten`` -> ``authoredOn``, dose and rate moved into ``doseAndRate``, DSTU2 timing unit
  names renamed;
- an STU3-shaped dosage (``doseQuantity`` directly on the dosage), moved into ``doseAndRate``;
- a single ``category`` object where R4 has an array, wrapped into an array;
- a drafted order without ``intent``, which gets ``intent: "order"`` (it is being ordered).

Then every resource is read liberally (rules.md r2 "Reading a resource"): an element no rule reads
never hides the resource, so a resource is refused only when it cannot be read at all (not a JSON
object, no ``resourceType`` string). The record reads the dicts defensively (``fhir.elements``).
What a resource got wrong is still counted, cheaply, for the call's log line (``flawed``): a
top-level element the R4 model of its type does not define, one (or an array item) of the wrong
JSON kind, a required element missing, an extension without ``url``, or a code the rules compare
outside its R4 value set as written (``has_flaws``); drafted orders are counted apart. The whole
``fhir.resources`` R4B model checks only what the service emits (``cards_render.suggestions``),
a draft that an update suggestion would re-emit included.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.resource import Resource as _ModelResource

Resource = dict[str, Any]


class InvalidResource(ValueError):
    """A value that cannot be read as a resource at all. The message never quotes a value."""


@lru_cache(maxsize=256)  # bounded: resourceType is the client's word
def _model(resource_type: str) -> Any:
    """The fhir.resources R4B model class of a resource type, None for anything else."""
    try:
        model = get_fhir_model_class(resource_type)
    except KeyError:
        return None
    return model if isinstance(model, type) and issubclass(model, _ModelResource) else None


def read_resource(resource: Any, *, draft: bool = False) -> Resource:
    """The resource in R4 shape (``tolerate``); ``InvalidResource`` only when unreadable."""
    if not isinstance(resource, dict):
        raise InvalidResource("not a JSON object")
    if not isinstance(resource.get("resourceType"), str):
        raise InvalidResource("no resourceType")
    return tolerate(resource, draft=draft)


def type_label(resource: Mapping[str, Any]) -> str:
    """The resourceType for counts and logs: an R4 resource type name, else "unknown" (a client's
    word never reaches a log line)."""
    return _label_and_shape(resource)[0]


# ---------------------------------------------------------------------------------------------
# Flaws


# The Python type ``json.loads`` makes for a JSON kind; "number" has two (int, float) and "any"
# none, so their values always take the full check (``_element_flawed``).
_PARSED_TYPE: dict[str, type] = {"array": list, "object": dict, "string": str, "boolean": bool}


@dataclass(frozen=True)
class _Shape:
    """The top-level elements of one R4 resource type, from its fhir.resources model, in the
    forms ``has_flaws`` reads them (it runs once per resource of every call)."""

    # element name (and "_name") -> (its JSON kind, the kind of its items when an array)
    elements: Mapping[str, tuple[str, str | None]]
    # every element name and "resourceType" -> the exact type of a parsed value of its kind:
    # ``type(value) is`` this answers "of the right kind" in one step for nearly every value;
    # None for a number or an "any" (always the full check); a name not here is not R4
    parsed_types: Mapping[str, type | None]
    # array element name -> (the exact type of its parsed items or None, their kind, whether
    # each item is an extension and so needs a ``url``)
    items: Mapping[str, tuple[type | None, str, bool]]
    required: frozenset[str]  # elements that must be present
    choices: tuple[frozenset[str], ...]  # required choice groups: one of each must be present
    codes: tuple[tuple[str, frozenset[str]], ...]  # compared codes and their R4 value sets


_SCHEMA_KINDS = {"array": "array", "string": "string", "boolean": "boolean",
                 "integer": "number", "number": "number"}


@lru_cache(maxsize=256)
def _shape(resource_type: str) -> _Shape | None:
    model = _model(resource_type)
    if model is None:
        return None
    schema = model.schema()  # pydantic v1 public API; fhir.resources keeps its types by name
    elements: dict[str, tuple[str, str | None]] = {}
    required = set(schema.get("required") or ())
    groups: dict[str, set[str]] = {}
    for name, spec in schema.get("properties", {}).items():
        if not (spec.get("element_property") or name.startswith("_")):
            continue  # fhir.resources' own fields (fhir_comments) are not R4 elements
        kind = spec.get("type")
        item_kind = (spec.get("items") or {}).get("type") if kind == "array" else None
        elements[name] = (
            _SCHEMA_KINDS.get(kind, "object") if isinstance(kind, str) else "any",
            _SCHEMA_KINDS.get(item_kind, "object") if isinstance(item_kind, str) else None,
        )
        if spec.get("element_required"):
            required.add(name)
        if spec.get("one_of_many_required"):
            groups.setdefault(str(spec.get("one_of_many")), set()).add(name)
    return _Shape(
        elements,
        {**{n: _PARSED_TYPE.get(k) for n, (k, _) in elements.items()}, "resourceType": str},
        {
            name: (_PARSED_TYPE.get(item_kind), item_kind, name in _EXTENSIONS)
            for name, (_, item_kind) in elements.items()
            if item_kind is not None
        },
        frozenset(required),
        tuple(frozenset(g) for g in groups.values()),
        tuple(_CODES.get(resource_type, {}).items()),
    )


# The JSON kind of a parsed value, by its exact type (what ``json.loads`` makes).
_KIND_OF_TYPE: dict[type, str] = {
    list: "array", dict: "object", str: "string", bool: "boolean", int: "number",
    float: "number",
}


def _kind(value: Any) -> str:
    kind = _KIND_OF_TYPE.get(type(value))
    if kind is not None:
        return kind
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return "null"


# The codes the rules compare (rules.md r2: read trimmed and case-insensitive), with their R4
# value sets: a code that needed the trimming or lower-casing is a flaw read past.
_CODES: dict[str, dict[str, frozenset[str]]] = {
    "Observation": {"status": frozenset({
        "registered", "preliminary", "final", "amended", "corrected", "cancelled",
        "entered-in-error", "unknown"})},
    "MedicationRequest": {
        "status": frozenset({"active", "on-hold", "cancelled", "completed", "entered-in-error",
                             "stopped", "draft", "unknown"}),
        "intent": frozenset({"proposal", "plan", "order", "original-order", "reflex-order",
                             "filler-order", "instance-order", "option"}),
    },
    "MedicationStatement": {"status": frozenset({
        "active", "completed", "entered-in-error", "intended", "stopped", "on-hold", "unknown",
        "not-taken"})},
    "MedicationAdministration": {"status": frozenset({
        "in-progress", "not-done", "on-hold", "completed", "entered-in-error", "stopped",
        "unknown"})},
    "Patient": {"gender": frozenset({"male", "female", "other", "unknown"})},
}
_EXTENSIONS = ("extension", "modifierExtension")
_COMPARATORS = frozenset({"<", "<=", ">=", ">"})


def has_flaws(resource: Mapping[str, Any]) -> bool:
    """Did reading ``resource`` have to look past anything (see the module docstring)?

    Top-level elements and the kind of their array items, the ``url`` of each extension, and
    ``valueQuantity.comparator``; no deeper: a walk of the whole resource would cost what the
    model validation it replaces cost.
    """
    shape = _label_and_shape(resource)[1]
    return shape is None or _flawed(resource, shape)


def _label_and_shape(resource: Mapping[str, Any]) -> tuple[str, _Shape | None]:
    """The resource's ``type_label`` and the shape of its type (None: not an R4 resource type)."""
    resource_type = resource.get("resourceType")
    if not isinstance(resource_type, str):
        return "unknown", None
    return _type_label_and_shape(resource_type)


@lru_cache(maxsize=256)  # bounded: resourceType is the client's word
def _type_label_and_shape(resource_type: str) -> tuple[str, _Shape | None]:
    """Looked up once per resource type, not per resource (the flaw count reads every resource
    of every call). A client's other words get no shape: ``_shape`` caches R4 types only, which
    they would push out."""
    if _model(resource_type) is None:
        return "unknown", None
    return resource_type, _shape(resource_type)


def _flawed(resource: Mapping[str, Any], shape: _Shape) -> bool:
    """``has_flaws`` of a resource of a known type, ``shape`` its.

    One loop and no call for an element whose value is of the exact type its kind parses to
    (nearly all of them): this runs for every resource of every call.
    """
    parsed_types, elements, items = shape.parsed_types, shape.elements, shape.items
    for name, value in resource.items():
        try:
            parsed_type = parsed_types[name]
        except KeyError:
            return True  # an element R4 does not define
        if type(value) is not parsed_type:
            # The full check: a number, an "any", a value of the wrong kind or of a subclass.
            element = elements.get(name)
            if element is None:
                continue  # "resourceType" (a str subclass): not an element
            kind, item_kind = element
            if kind != "any" and _kind(value) != kind:
                return True
            if item_kind is None:
                continue
        elif parsed_type is not list:
            continue
        # An array (of its kind): the kind of each item, and the url of each extension.
        item_spec = items.get(name)
        if item_spec is None:
            continue
        item_type, item_kind, extension = item_spec
        for item in value:
            if type(item) is not item_type and _kind(item) != item_kind:
                return True
        if extension and not all(isinstance(e.get("url"), str) for e in value):
            return True
    if not resource.keys() >= shape.required:
        return True
    for group in shape.choices:
        if group.isdisjoint(resource):
            return True
    for name, allowed in shape.codes:
        if name in resource and (type(code := resource[name]) is not str or code not in allowed):
            return True
    quantity = resource.get("valueQuantity")
    if isinstance(quantity, dict) and "comparator" in quantity:
        comparator = quantity["comparator"]  # any JSON value: an array or object is a flaw too
        return type(comparator) is not str or comparator not in _COMPARATORS
    return False


def count_flawed(resources: Any) -> dict[str, int]:
    """resourceType label -> number of the resources with flaws (``has_flaws``)."""
    counts: dict[str, int] = {}
    for resource in resources:
        label, shape = _label_and_shape(resource)
        if shape is None or _flawed(resource, shape):
            counts[label] = counts.get(label, 0) + 1
    return counts


# ---------------------------------------------------------------------------------------------
# Bundles


@dataclass
class Unpacked:
    """The entries of a Bundle, each read on its own."""

    entries: list[tuple[str | None, Resource]] = field(default_factory=list)  # (fullUrl, resource)
    skipped: dict[str, int] = field(default_factory=dict)  # unreadable entries, by type label
    outcomes: int = 0  # OperationOutcome entries (search warnings or errors)


def unpack_bundle(bundle: Resource) -> Unpacked:
    """Read each entry of a Bundle; an unreadable one is skipped and counted, not fatal.

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
    entries, skipped = unpacked.entries, unpacked.skipped
    for entry in raw_entries:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if resource is None:
            continue  # an entry without a resource (e.g. a deleted one) carries no data
        if isinstance(resource, dict) and resource.get("resourceType") == "OperationOutcome":
            unpacked.outcomes += 1
            continue
        try:
            parsed = read_resource(resource)
        except InvalidResource:  # not a JSON object, or no resourceType string
            skipped["unknown"] = skipped.get("unknown", 0) + 1
            continue
        full_url = entry.get("fullUrl")
        entries.append((full_url if isinstance(full_url, str) else None, parsed))
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
# Every type a deviation above can concern: any other resource is R4-shaped as it is.
_TOLERATED_TYPES = _CATEGORY_ARRAY_TYPES | _INTENT_TYPES | {
    "MedicationOrder", "MedicationRequest", "MedicationStatement"}
_DOSE_KEYS = ("doseQuantity", "doseRange")
_RATE_KEYS = ("rateQuantity", "rateRatio", "rateRange")


def tolerate(resource: Resource, *, draft: bool = False) -> Resource:
    """Convert the known client deviations to R4; returns ``resource`` itself when none apply."""
    out = resource
    resource_type = out.get("resourceType")
    if resource_type not in _TOLERATED_TYPES:
        return out
    if resource_type == "MedicationOrder":
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
