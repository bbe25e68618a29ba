"""POST /cds-services/{id}: dispatch on (id, hook), request validation naming the field, the
limits (415, 413, depth) and what real clients send (clients.md)."""

from __future__ import annotations

import copy
import io
import json
from datetime import date
from typing import Any

import pytest

from cds_service.protocol.schemas import errors, validate
from tests.protocol.conftest import ck_observation, patient_view, searchset, statin_order_sign

URL = "/cds-services/myopathy-review"


def post_json(client, url: str, body: Any, **kwargs: Any):
    return client.post(url, data=json.dumps(body), content_type="application/json", **kwargs)


def outcome(response) -> dict[str, Any]:
    document = response.get_json()
    assert document["resourceType"] == "OperationOutcome"
    assert len(document["issue"]) == 1
    issue = document["issue"][0]
    assert issue["severity"] == "error"
    assert issue["diagnostics"]
    return issue


def test_patient_view_call_answers_cards(client):
    response = post_json(client, URL, patient_view())
    assert response.status_code == 200, response.get_json()
    document = response.get_json()
    assert isinstance(document["cards"], list)
    assert "systemActions" not in document
    assert errors("response", document) == []


def test_unknown_service_is_404(client):
    response = post_json(client, "/cds-services/no-such-service", patient_view())
    assert response.status_code == 404
    issue = outcome(response)
    assert issue["code"] == "not-found"
    assert "no-such-service" in issue["diagnostics"]


def test_hook_not_declared_for_the_service_is_400_naming_the_hook(client):
    response = post_json(client, "/cds-services/statin-order-check", patient_view())
    assert response.status_code == 400
    issue = outcome(response)
    assert issue["expression"] == ["hook"]
    assert "patient-view" in issue["diagnostics"]
    assert "order-sign" in issue["diagnostics"]


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda b: b["context"].pop("patientId"), "context.patientId"),
        (lambda b: b.pop("hookInstance"), "hookInstance"),
        (lambda b: b.pop("context"), "context"),
        (lambda b: b.pop("hook"), "hook"),
        (lambda b: b.update(hookInstance=""), "hookInstance"),
        (lambda b: b["context"].update(patientId=12345), "context.patientId"),
        (lambda b: b.update(fhirServer="ftp://ehr.example.org/fhir"), "fhirServer"),
        (lambda b: b.update(prefetch={"patient": "Patient/1"}), "prefetch.patient"),
        (lambda b: b.update(prefetch={"patient": {"id": "x"}}), "prefetch.patient.resourceType"),
        (lambda b: b.update(extension=["not", "an", "object"]), "extension"),
        (lambda b: b["context"].update(userId="Practitioner"), "context.userId"),
    ],
)
def test_schema_violation_is_400_naming_the_field(client, mutate, field):
    body = patient_view()
    mutate(body)
    response = post_json(client, URL, body)
    assert response.status_code == 400
    issue = outcome(response)
    assert issue["code"] == "invalid"
    assert issue["expression"] == [field]
    assert issue["diagnostics"].startswith(field + " ")


def test_patient_id_that_would_change_a_fhir_url_is_refused_without_echoing_it(client):
    hostile = "pat-1&_include=*"
    response = post_json(client, URL, patient_view(context={"patientId": hostile}))
    assert response.status_code == 400
    issue = outcome(response)
    assert issue["expression"] == ["context.patientId"]
    assert hostile not in response.get_data(as_text=True)


def test_fhir_authorization_requires_fhir_server_and_the_token_is_not_echoed(client):
    body = patient_view(fhirAuthorization={
        "access_token": "secret-token-value", "token_type": "Bearer", "expires_in": 300,
        "scope": "user/Patient.read", "subject": "myocds"})
    response = post_json(client, URL, body)
    assert response.status_code == 400
    issue = outcome(response)
    assert issue["expression"] == ["fhirServer"]
    assert "fhirAuthorization" in issue["diagnostics"]
    assert "secret-token-value" not in response.get_data(as_text=True)


def test_order_hooks_answer_without_draft_orders_but_not_with_a_non_bundle(client):
    """The Sandbox's Rx Sign calls on opening with no draftOrders (rules.md r2): 200; a
    draftOrders that is there but not a Bundle is still a 400 naming it."""
    body = statin_order_sign()
    del body["context"]["draftOrders"]
    response = post_json(client, "/cds-services/statin-order-check", body)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["cards"] == []
    body["context"]["draftOrders"] = {"resourceType": "Patient"}
    response = post_json(client, "/cds-services/statin-order-check", body)
    assert response.status_code == 400
    assert outcome(response)["expression"] == ["context.draftOrders.resourceType"]


def test_body_that_is_not_an_object_is_400(client):
    response = post_json(client, URL, ["hook", "patient-view"])
    assert response.status_code == 400
    issue = outcome(response)
    assert "must be an object" in issue["diagnostics"]
    assert "expression" not in issue


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (b'{"hook": "patient-view",', "not valid JSON"),
        (b"", "empty"),
        (b'{"hook": NaN}', "not valid JSON"),
        (b"\xff\xfe{}", "UTF-8"),
    ],
)
def test_malformed_json_is_400(client, raw, says):
    response = client.post(URL, data=raw, content_type="application/json")
    assert response.status_code == 400
    issue = outcome(response)
    assert issue["code"] == "invalid"
    assert says in issue["diagnostics"]


def test_nesting_over_the_depth_limit_is_400(client, settings):
    limit = settings.max_json_depth
    body = patient_view(extension={"x": json.loads("[" * (limit + 1) + "]" * (limit + 1))})
    response = post_json(client, URL, body)
    assert response.status_code == 400
    assert f"deeper than {limit}" in outcome(response)["diagnostics"]


def test_nesting_within_the_limit_is_accepted(client, settings):
    # The body itself is 2 levels (object, extension); 60 more stay within the default 64.
    body = patient_view(extension={"x": json.loads("[" * 60 + "]" * 60)})
    assert post_json(client, URL, body).status_code == 200


def test_hostile_deep_nesting_is_refused_without_recursion(client):
    raw = b"[" * 200_000 + b"]" * 200_000
    response = client.post(URL, data=raw, content_type="application/json")
    assert response.status_code == 400
    assert "deeper than" in outcome(response)["diagnostics"]


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_non_json_content_type_is_415(client, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post(URL, data=json.dumps(patient_view()), headers=headers)
    assert response.status_code == 415
    assert outcome(response)["code"] == "not-supported"


def test_fhir_json_and_charset_parameters_are_json(client):
    for content_type in ("application/fhir+json", "application/json; charset=utf-8"):
        response = client.post(URL, data=json.dumps(patient_view()), content_type=content_type)
        assert response.status_code == 200, content_type


def test_body_over_the_limit_is_413(make_app, settings):
    client = make_app(settings.with_overrides(max_body_bytes=4096)).test_client()
    body = patient_view(extension={"padding": "x" * 5000})
    response = post_json(client, URL, body)
    assert response.status_code == 413
    issue = outcome(response)
    assert issue["code"] == "too-costly"
    assert "4096" in issue["diagnostics"]


def test_body_over_the_limit_without_content_length_is_413(make_app, settings):
    # A chunked upload declares no length: the limit is enforced while reading.
    client = make_app(settings.with_overrides(max_body_bytes=4096)).test_client()
    raw = json.dumps(patient_view(extension={"padding": "x" * 50_000})).encode()
    response = client.post(
        URL,
        input_stream=io.BytesIO(raw),
        content_type="application/json",
        environ_overrides={"CONTENT_LENGTH": "", "HTTP_TRANSFER_ENCODING": "chunked",
                           "wsgi.input_terminated": True},
    )
    assert response.status_code == 413
    assert "4096" in outcome(response)["diagnostics"]


def test_wrong_method_is_405_with_allow(client):
    response = client.get(URL)
    assert response.status_code == 405
    assert outcome(response)["code"] == "not-supported"
    assert "POST" in response.headers["Allow"]
    assert client.put("/cds-services").status_code == 405
    assert client.delete("/cds-services/myopathy-review/feedback").status_code == 405


def test_unknown_path_is_404_operation_outcome(client):
    response = client.get("/nothing-here")
    assert response.status_code == 404
    assert outcome(response)["code"] == "not-found"


@pytest.mark.parametrize(
    "path", ["/cds-services//myopathy-review", "/cds-services/myopathy-review//feedback",
             "/cds-services/"])
def test_doubled_or_trailing_slash_is_404_json_not_a_redirect(client, path):
    response = client.post(path, data=json.dumps(patient_view()), content_type="application/json")
    assert response.status_code == 404
    assert outcome(response)["code"] == "not-found"
    assert response.headers["Access-Control-Allow-Origin"] == "*"


# What real clients send (clients.md): accepted by the schema and answered.

def _sandbox_rx_sign() -> dict[str, Any]:
    """The Sandbox's Rx Sign draft on its default DSTU2 server: a MedicationOrder, category as
    one object, no Bundle.type, no encounterId, no fhirAuthorization, no prefetch member."""
    return {
        "hookInstance": "7e2c1f3a-7c2d-4c5e-9a51-1c2b3d4e5f60",
        "hook": "order-sign",
        "fhirServer": "https://launch.smarthealthit.org/v/r2/fhir",
        "context": {
            "userId": "Practitioner/COREPRACTITIONER1",
            "patientId": "smart-1288992",
            "draftOrders": {"resourceType": "Bundle", "entry": [{"resource": {
                "resourceType": "MedicationOrder", "id": "request-123", "status": "draft",
                "patient": {"reference": "Patient/smart-1288992"},
                "dateWritten": "2025-07-01",
                "category": {"coding": [{"code": "outpatient"}]},
                "medicationCodeableConcept": {"text": "atorvastatin 20 MG Oral Tablet",
                    "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                "code": "617310"}]},
            }}]},
        },
    }


@pytest.mark.parametrize(
    "body",
    [
        _sandbox_rx_sign(),
        patient_view(extension={"com.example.timestamp": "2025-07-01T10:00:00Z"}),
        patient_view(**{"com.vendor.unknown": {"a": 1}}),
        patient_view(prefetch={"patient": None}),
    ],
    ids=["sandbox-rx-sign-dstu2", "extension", "unknown-member", "null-prefetch-value"],
)
def test_what_real_clients_send_passes_the_schema(body):
    validate("request", copy.deepcopy(body))


def test_unknown_extension_members_are_answered(client):
    body = patient_view(extension={"com.example.anything": {"deep": [1, 2]}})
    body["context"]["extension"] = {"org.example": True}
    response = post_json(client, URL, body)
    assert response.status_code == 200


def test_no_prefetch_and_no_fhir_server_is_412(client):
    body = patient_view()
    del body["prefetch"]
    response = post_json(client, URL, body)
    assert response.status_code == 412
    assert outcome(response)["code"] in ("not-found", "security")


def test_sandbox_rx_sign_is_answered_with_the_card_its_draft_needs(make_app, settings):
    """The Sandbox's DSTU2 draft (MedicationOrder, category object, no Bundle.type) on a patient
    whose CK is 26×ULN: the statin draft gets STAT-01. All keys are prefetched, so the
    fhirServer (not in any allow-list) is never contacted."""
    body = _sandbox_rx_sign()
    body["prefetch"] = {
        "patient": {"resourceType": "Patient", "id": "smart-1288992", "gender": "female",
                    "birthDate": "1955-01-01"},
        "observations": searchset(ck_observation("ck-1", 5000, "2025-06-28", "smart-1288992")),
        "medicationRequests": searchset(),
        "medicationStatements": searchset(),
        "conditions": searchset(),
    }
    client = make_app(settings.with_overrides(today=date(2025, 7, 1))).test_client()
    response = post_json(client, "/cds-services/statin-order-check", body)
    assert response.status_code == 200, response.get_json()
    cards = response.get_json()["cards"]
    assert ("STAT-01", "critical") in {(c["source"]["topic"]["code"], c["indicator"])
                                       for c in cards}


def test_prefetch_with_another_patients_data_is_refused_422(client):
    """A CK of another patient in the prefetch must never drive this patient's cards."""
    body = patient_view()
    body["prefetch"]["observations"] = searchset(
        ck_observation("ck-mine", 120, "2025-06-20"),
        ck_observation("ck-theirs", 9000, "2025-06-25", patient="pat-2"),
    )
    response = post_json(client, URL, body)
    assert response.status_code == 422
    issue = outcome(response)
    assert "other than context.patientId (1 Observation)" in issue["diagnostics"]
    assert "pat-2" not in response.get_data(as_text=True)


def test_prefetch_patient_of_another_id_is_refused_422(client):
    body = patient_view()
    body["prefetch"]["patient"] = {"resourceType": "Patient", "id": "pat-2", "gender": "male"}
    response = post_json(client, URL, body)
    assert response.status_code == 422
    assert "prefetch key 'patient'" in outcome(response)["diagnostics"]
    assert "pat-2" not in response.get_data(as_text=True)
