"""protocol.schemas: ``validate`` checks with the references written out and, for a request, the
part of its hook alone; it must refuse exactly what the schema as written refuses, saying the
same (message and expression)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema.exceptions import best_match

from cds_service.errors import SchemaViolation
from cds_service.hooks import HOOKS
from cds_service.protocol.schemas import checkers_for, describe, validate, validator
from tests.support.strategies import feedback_calls, hostile_bodies, mutated_bodies

SAME = settings(
    max_examples=400,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)


def as_written(name: str, instance: Any) -> tuple[str, str | None] | None:
    """What the schema as written says: the validator of the whole schema, references and all
    (for a request: every hook's if/then)."""
    error = best_match(validator(name).iter_errors(instance))
    if error is None:
        return None
    expression, reason = describe(error)
    return f"{expression or 'the JSON body'} {reason}", expression or None


def as_validated(name: str, instance: Any) -> tuple[str, str | None] | None:
    try:
        validate(name, instance)
    except SchemaViolation as exc:
        return exc.message, exc.expression
    return None


@SAME
@given(st.one_of(mutated_bodies(), hostile_bodies()))
def test_request_refusals_are_the_schemas_as_written(call: tuple[str, dict[str, Any]]) -> None:
    _, body = call
    assert as_validated("request", body) == as_written("request", body)


@SAME
@given(feedback_calls())
def test_feedback_refusals_are_the_schemas_as_written(call: Any) -> None:
    body = json.loads(call.body)
    assert as_validated("feedback", body) == as_written("feedback", body)


@pytest.mark.parametrize(
    "body",
    [
        # A declared hook without its required context field, on each hook.
        *({"hook": hook.name, "hookInstance": "x", "context": {}} for hook in HOOKS),
        # No hook, a hook that is not a string, an undeclared one (valid here: routing refuses
        # it): no hook's part applies.
        {"hookInstance": "x", "context": {}},
        {"hook": ["order-sign"], "hookInstance": "x", "context": {}},
        {"hook": {"order-sign": 1}, "hookInstance": "x", "context": {}},
        {"hook": "encounter-discharge", "hookInstance": "x", "context": {}},
        # Several faults at once: the same one is named first.
        {"hook": "order-sign", "hookInstance": "", "context": {"patientId": "a b"},
         "fhirServer": "ftp://x", "fhirAuthorization": {"token_type": "MAC"}},
        {"hook": "patient-view", "hookInstance": "x", "context": {"userId": 3},
         "prefetch": {"p": {"resourceType": "patient"}, "q": []}},
        [], "order-sign", None,
    ],
)
def test_request_refusals_by_hook(body: Any) -> None:
    assert as_validated("request", body) == as_written("request", body)


def test_each_declared_hook_has_its_own_checker_without_references() -> None:
    checkers = checkers_for("request")
    assert set(checkers) == {"", *(hook.name for hook in HOOKS if hook.context_schema())}
    for name in ("request", "feedback", "response", "discovery"):
        for checker in checkers_for(name).values():
            text = json.dumps({k: v for k, v in checker.schema.items() if k != "$defs"})
            assert '"$ref"' not in text


DROP = object()


def _request(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "hook": "order-select", "hookInstance": "x",
        "context": {"patientId": "p", "userId": "Practitioner/1",
                    "selections": ["MedicationRequest/m/_history/2"],
                    "draftOrders": {
                        "resourceType": "Bundle",
                        "entry": [{"resource": {"resourceType": "MedicationRequest"}}],
                    }},
        "fhirServer": "https://ehr.example.org/fhir",
        "fhirAuthorization": {"access_token": "t", "token_type": "bearer", "expires_in": 0},
        "prefetch": {"patient": {"resourceType": "Patient"}, "none": None},
    }
    body.update(changes)
    return body


@pytest.mark.parametrize(
    "changes",
    [
        {},
        # jsonschema takes an integer-valued float as an integer
        {"fhirAuthorization": {"access_token": "t", "token_type": "Bearer", "expires_in": 300.0}},
        {"fhirAuthorization": {"access_token": "t", "token_type": "Bearer", "expires_in": -1}},
        {"fhirAuthorization": {"access_token": "t", "token_type": "Bearer", "expires_in": True}},
        {"fhirAuthorization": {"access_token": "", "token_type": "Bearer"}},
        {"fhirServer": "https://ehr.example.org/fhir\n"},
        {"fhirServer": "https:///fhir"},
        {"hookInstance": "x" * 129},
        {"hookInstance": "x" * 128},
        {"prefetch": {"p": {"resourceType": "patient"}}},
        {"prefetch": {"p": {"id": "1"}}},
        {"prefetch": {"p": []}},
        {"context": {"patientId": "p", "selections": []}},
        {"context": {"patientId": "p", "selections": ["MedicationRequest/m/_history/"]}},
        {"context": {"patientId": "p", "draftOrders": {"resourceType": "Bundle", "entry": [{}]}}},
        {"context": {"patientId": "p",
                     "draftOrders": {"resourceType": "Bundle", "entry": [{"resource": {}}]}}},
        {"context": {"patientId": "p", "draftOrders": {"resourceType": "bundle"}}},
        {"context": {"patientId": "p\n"}},
        {"extension": []},
        {"fhirServer": DROP},  # fhirAuthorization without fhirServer
        {"fhirServer": DROP, "fhirAuthorization": DROP},
    ],
)
def test_refusals_at_each_keyword(changes: dict[str, Any]) -> None:
    body = {key: value for key, value in _request(**changes).items() if value is not DROP}
    assert as_validated("request", body) == as_written("request", body)
