"""``fhir.fastcheck.proves_valid``: sound (True only where the fhir.resources R4B model accepts the
resource) and useful (real records take the fast path); ``fhir.parse`` still rejects malformed
resources one by one and still validates drafted orders with the model."""

from __future__ import annotations

import copy
import random
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class

from bench.record import hook_body, record_resources
from cds_service.fhir import parse
from cds_service.fhir.fastcheck import proves_valid
from cds_service.fhir.parse import InvalidResource, parse_resource, unpack_bundle

MUTATIONS = 6000
SEED = 20260601


def model_accepts(resource: Any) -> bool:
    try:
        get_fhir_model_class(resource["resourceType"]).parse_obj(resource)
    except Exception:
        return False
    return True


def scenario_resources(scenarios: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for scenario in scenarios.values():
        found += [e["resource"] for e in scenario["record"].get("entry", ())]
        drafts = scenario["context"].get("draftOrders") or {}
        found += [e["resource"] for e in drafts.get("entry", ())]
    return found


@pytest.fixture(scope="module")
def corpus(scenarios: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    resources = scenario_resources(scenarios) + record_resources()
    assert all(model_accepts(r) for r in resources), "the corpus is valid R4"
    return resources


def test_every_bench_resource_takes_the_fast_path() -> None:
    assert all(proves_valid(r) for r in record_resources())


def test_real_records_take_the_fast_path(corpus: list[dict[str, Any]]) -> None:
    proven = [r for r in corpus if proves_valid(r)]
    # Not all need be (a contained Medication, a primitive extension), but nearly all must.
    assert len(proven) >= 0.9 * len(corpus), [
        r["resourceType"] for r in corpus if not proves_valid(r)
    ]


# --- soundness under mutation ----------------------------------------------------------------

ODD_VALUES: list[Any] = [
    None, "", " ", "x", "two words", " leading", "trailing ", "tab\there", "a\x00b", 0, -1, 7,
    1.5, -0.0, 10**40, 1e308, True, False, [], [None], ["a"], [1], {}, {"a": 1},
    {"resourceType": "Observation"}, "2025", "2025-07", "2025-07-01", "2025-13-01",
    "2025-02-30", "2025-07-01T10:00:00", "2025-07-01T10:00:00Z", "2025-07-01T25:00:00Z",
    "10:00:00", "urn:oid:1.2.3", "http://x y", "final", "FINAL", "x" * 65, "ab-c.1",
]


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path below the root (dict keys and list indexes)."""
    found: list[tuple[Any, ...]] = []
    if isinstance(value, dict):
        for key, item in value.items():
            found.append((*path, key))
            found += _paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.append((*path, index))
            found += _paths(item, (*path, index))
    return found


def _parent(resource: Any, path: tuple[Any, ...]) -> Any:
    node = resource
    for step in path[:-1]:
        node = node[step]
    return node


def mutate(resource: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    mutated = copy.deepcopy(resource)
    paths = [p for p in _paths(mutated) if p != ("resourceType",)]
    path = rng.choice(paths)
    parent = _parent(mutated, path)
    step = path[-1]
    kind = rng.randrange(6)
    if kind <= 2:  # another value, of any JSON type
        parent[step] = copy.deepcopy(rng.choice(ODD_VALUES))
    elif kind == 3:  # removed (a required element, a list emptied)
        del parent[step]
    elif kind == 4 and isinstance(parent, dict):  # a sibling the element does not define
        name = rng.choice(["valueString", "valueQuantity", "effectivePeriod", "unknownThing",
                           "_status", "extension", "fhir_comments", "resourceType", "id",
                           "text", "contained", "modifierExtension"])
        parent[name] = copy.deepcopy(rng.choice(ODD_VALUES + [{"text": "x"}, "final"]))
    else:  # the element duplicated into a list, or a list unwrapped into its first element
        value = parent[step]
        parent[step] = value[0] if isinstance(value, list) and value else [value]
    return mutated


def test_proven_mutations_are_accepted_by_the_model(corpus: list[dict[str, Any]]) -> None:
    rng = random.Random(SEED)
    proven = rejected_by_model = 0
    for _ in range(MUTATIONS):
        mutated = mutate(rng.choice(corpus), rng)
        if proves_valid(mutated):
            proven += 1
            assert model_accepts(mutated), mutated
        elif not model_accepts(mutated):
            rejected_by_model += 1
    # Neither half is vacuous: many mutations stay valid and are proven, many are invalid.
    assert proven > MUTATIONS // 10
    assert rejected_by_model > MUTATIONS // 10


@pytest.mark.parametrize(
    "resource",
    [
        {"resourceType": "Observation", "status": "final"},  # no code
        {"resourceType": "Observation", "status": "final", "code": {},
         "valueQuantity": {"value": "x"}},
        {"resourceType": "Observation", "status": "final", "code": {"text": "CK"},
         "valueQuantity": {"value": 1}, "valueString": "1"},  # two value[x]
        {"resourceType": "Observation", "status": "fin al  ", "code": {"text": "CK"}},
        {"resourceType": "Observation", "status": "final", "code": {"text": "CK"},
         "effectiveDateTime": "2025-02-30"},
        {"resourceType": "Patient", "id": "has space"},
        {"resourceType": "Patient", "birthDate": "1960-13-01"},
        {"resourceType": "Patient", "gender": "female", "nickname": "x"},
        {"resourceType": "MedicationRequest", "status": "active", "subject": {"reference": "P/1"},
         "medicationCodeableConcept": {"text": "x"}},  # no intent
        {"resourceType": "Medication", "code": {"coding": {"code": "5"}}},  # not an array
    ],
)
def test_malformed_resources_are_not_proven_and_still_rejected(resource: dict[str, Any]) -> None:
    assert not proves_valid(resource)
    with pytest.raises(InvalidResource):
        parse_resource(resource)


def test_a_bundle_is_still_validated_entry_by_entry() -> None:
    good = record_resources()[1]
    bad = {**good, "id": "x y"}
    unpacked = unpack_bundle({"resourceType": "Bundle", "type": "searchset",
                              "entry": [{"resource": good}, {"resource": bad}]})
    assert [r for _, r in unpacked.entries] == [good]
    assert unpacked.skipped == {"Observation": 1}


class _SpyModel:
    """Stands in for an R4B model and records each resource it is asked to validate."""

    asked: list[Any] = []

    @classmethod
    def parse_obj(cls, resource: Any) -> None:
        cls.asked.append(resource)


def test_proven_resources_skip_the_model_and_drafts_do_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    resource = record_resources()[1]
    monkeypatch.setattr(_SpyModel, "asked", [])
    monkeypatch.setattr(parse, "_model", lambda _name: _SpyModel)
    monkeypatch.setattr(parse, "_digest", lambda _resource: None)  # no cached verdicts either
    parse.validate(resource)
    assert _SpyModel.asked == []
    draft = hook_body("order-sign")["context"]["draftOrders"]["entry"][0]["resource"]
    assert proves_valid(draft)
    parse_resource(draft, draft=True)
    assert _SpyModel.asked == [draft]
    odd = {**resource, "_status": {"extension": []}}  # not proven: the model decides
    parse.validate(odd)
    assert _SpyModel.asked == [draft, odd]
