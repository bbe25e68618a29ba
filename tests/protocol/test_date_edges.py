"""A sweep of date/time edge values over every place the service reads or stores a date through
HTTP: feedback's ``outcomeTimestamp``; in a hook call the Observations, orders, administrations,
statements, conditions and the patient's birth date of the prefetch, and the draft orders. No
value may give a 5xx: each is used, refused (400/422) or ignored (200 without it).

The edges: the first and last instants whose offset moves them out of years 0001-9999 in UTC,
a leap second, 24:00, offsets of ±14:00 (FHIR's widest) and beyond, impossible and out-of-range
dates, partial dates at the ends of the range.
"""

from __future__ import annotations

import copy
import json
import math
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.protocol.conftest import ck_observation, patient_view, searchset, statin_order_sign

EDGES = (
    "9999-12-31T23:59:59-00:01",
    "0001-01-01T00:00:00+00:01",
    "9999-12-31T23:59:59.999999+14:00",
    "9999-12-31T23:59:59-14:00",
    "0001-01-01T00:00:00-14:00",
    "0001-01-01T00:00:00+14:00",
    "2016-12-31T23:59:60Z",
    "2016-12-31T23:59:60.999+00:00",
    "2025-07-01T24:00:00Z",
    "2025-07-01T24:00:00",
    "2025-07-01T10:00:00+14:00",
    "2025-07-01T10:00:00-14:00",
    "2025-07-01T10:00:00+14:01",
    "2025-07-01T10:00:00-23:59",
    "2025-07-01T10:00:00+24:00",
    "2025-07-01T10:00:00+99:99",
    "2025-02-30T10:00:00Z",
    "10000-01-01T00:00:00Z",
    "0000-01-01T00:00:00Z",
    "9999-12-31",
    "0001-01-01",
    "9999-12",
    "0001",
    "9999",
)

CK_LOINC = {"system": "http://loinc.org", "code": "2157-6"}
ATORVASTATIN = {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                            "code": "617310", "display": "atorvastatin 20 MG Oral Tablet"}]}
IVIG = {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "1597074",
                    "display": "immune globulin 10 % injectable solution"}]}


def _with(prefetch_key: str, resource: dict[str, Any]) -> Callable[[], tuple[str, dict]]:
    def build() -> tuple[str, dict]:
        body = patient_view()
        body["prefetch"][prefetch_key] = searchset(resource)
        return "/cds-services/myopathy-review", body

    return build


def _observation(field: str, value: str) -> dict[str, Any]:
    obs = ck_observation("ck-1", 9000, "2025-06-20")
    if field == "effectivePeriod.start":
        del obs["effectiveDateTime"]
        obs["effectivePeriod"] = {"start": value}
    else:
        obs[field] = value
    return obs


def _statin_request(field: str, value: str) -> dict[str, Any]:
    request: dict[str, Any] = {
        "resourceType": "MedicationRequest", "id": "mr-1", "status": "active",
        "intent": "order", "subject": {"reference": "Patient/pat-1"},
        "medicationCodeableConcept": ATORVASTATIN, "authoredOn": "2025-01-01",
    }
    if field == "validityPeriod.start":
        request["dispenseRequest"] = {"validityPeriod": {"start": value}}
    else:
        request[field] = value
    return request


def _statement(value: str) -> dict[str, Any]:
    return {"resourceType": "MedicationStatement", "id": "ms-1", "status": "active",
            "subject": {"reference": "Patient/pat-1"}, "medicationCodeableConcept": ATORVASTATIN,
            "effectivePeriod": {"start": value, "end": value}, "dateAsserted": value}


def _administration(value: str) -> dict[str, Any]:
    return {"resourceType": "MedicationAdministration", "id": "ma-1", "status": "completed",
            "subject": {"reference": "Patient/pat-1"}, "medicationCodeableConcept": IVIG,
            "effectiveDateTime": value}


def _condition(field: str, value: str) -> dict[str, Any]:
    return {"resourceType": "Condition", "id": "c-1", "subject": {"reference": "Patient/pat-1"},
            "clinicalStatus": {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                "code": "active"}]},
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006"}]},
            field: value}


def _birth_date(value: str) -> Callable[[], tuple[str, dict]]:
    def build() -> tuple[str, dict]:
        body = patient_view()
        body["prefetch"]["patient"]["birthDate"] = value
        return "/cds-services/myopathy-review", body

    return build


def _draft(field: str, value: str) -> Callable[[], tuple[str, dict]]:
    def build() -> tuple[str, dict]:
        body = statin_order_sign()
        draft = body["context"]["draftOrders"]["entry"][0]["resource"]
        if field == "validityPeriod.start":
            draft["dispenseRequest"] = {"validityPeriod": {"start": value}}
        else:
            draft[field] = value
        return "/cds-services/statin-order-check", body

    return build


def _feedback(value: str) -> Callable[[], tuple[str, dict]]:
    def build() -> tuple[str, dict]:
        return "/cds-services/myopathy-review/feedback", {"feedback": [{
            "card": str(uuid.uuid4()), "outcome": "overridden", "outcomeTimestamp": value}]}

    return build


PLACES: dict[str, Callable[[str], Callable[[], tuple[str, dict]]]] = {
    "observation.effectiveDateTime": lambda v: _with("observations",
                                                     _observation("effectiveDateTime", v)),
    "observation.issued": lambda v: _with("observations", _observation("issued", v)),
    "observation.effectivePeriod.start": lambda v: _with(
        "observations", _observation("effectivePeriod.start", v)),
    "medicationRequest.authoredOn": lambda v: _with("medicationRequests",
                                                    _statin_request("authoredOn", v)),
    "medicationRequest.validityPeriod.start": lambda v: _with(
        "medicationRequests", _statin_request("validityPeriod.start", v)),
    "medicationStatement.effectivePeriod": lambda v: _with("medicationStatements", _statement(v)),
    "medicationAdministration.effectiveDateTime": lambda v: _with(
        "medicationAdministrations", _administration(v)),
    "condition.onsetDateTime": lambda v: _with("conditions", _condition("onsetDateTime", v)),
    "condition.recordedDate": lambda v: _with("conditions", _condition("recordedDate", v)),
    "patient.birthDate": _birth_date,
    "draft.authoredOn": lambda v: _draft("authoredOn", v),
    "draft.validityPeriod.start": lambda v: _draft("validityPeriod.start", v),
    "feedback.outcomeTimestamp": _feedback,
}

ALLOWED = {200, 400, 412, 422}


def sweep_cases() -> list[tuple[str, str]]:
    return [(place, value) for place in PLACES for value in EDGES]


@pytest.mark.parametrize(("place", "value"), sweep_cases())
def test_date_edge_is_never_a_5xx(client: FlaskClient, place: str, value: str) -> None:
    path, body = PLACES[place](value)()
    response = client.post(path, data=json.dumps(copy.deepcopy(body)),
                           content_type="application/json")
    assert response.status_code in ALLOWED, (place, value, response.get_data(as_text=True))


# The JWT's NumericDate claims: past the ends of datetime's range, infinite, not a number.
NUMERIC_DATES = (float("inf"), float("-inf"), float("nan"), 253402300800, -62135596801, 1e20,
                 -1e20, 0, 2**63, "2025-07-01T10:00:00Z")


@pytest.mark.parametrize("claim", ["iat", "exp", "nbf"])
@pytest.mark.parametrize("value", NUMERIC_DATES, ids=repr)
def test_jwt_time_claim_at_the_edge_is_refused_or_used_never_a_5xx(
    make_app, settings, issuers_file, es384, claim: str, value: object
) -> None:
    from tests.support.signing import BASE_URL

    app = make_app(settings.with_overrides(
        auth="required", issuers_file=issuers_file(jku=[], jwks=es384.jwks()),
        public_base_url=BASE_URL,
    ))
    token = es384.token(aud=f"{BASE_URL}/cds-services", header={"jku": None}, **{claim: value})
    response = app.test_client().get("/cds-services", headers={"Authorization": f"Bearer {token}"})
    # A "not before" long past is simply valid; every other edge value is refused.
    past_nbf = (claim == "nbf" and isinstance(value, int | float) and math.isfinite(value)
                and value <= 0)
    assert response.status_code == (200 if past_nbf else 401), response.get_data(as_text=True)
