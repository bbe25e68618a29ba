"""The try-it pages over HTTP: served only when enabled, only the shipped examples, state in the
URL, errors as HTML on pages and OperationOutcome elsewhere, a strict Content-Security-Policy."""

from __future__ import annotations

import json
import re
from datetime import date
from typing import Any

import pytest

from cds_service.settings import Settings
from tests.tryit.conftest import CLINICAL_DATE

PATHS = [
    "/try",
    "/try/",
    "/try/rules",
    "/try/request?example=statin-ck-over-10x",
    "/try/timeline.svg?example=statin-ck-over-10x",
    "/try/static/try.js",
    "/try/static/try.css",
]


def test_settings_turn_the_pages_on_and_off():
    assert Settings().try_enabled is False  # production default: auth on, pages off
    assert Settings(auth="off").try_enabled is True
    assert Settings(auth="off", try_pages=False).try_enabled is False
    assert Settings(try_pages=True).try_enabled is True
    assert Settings.from_env({"MYOCDS_TRY": "on"}).try_enabled is True
    assert Settings.from_env({"MYOCDS_AUTH": "off", "MYOCDS_TRY": "off"}).try_enabled is False


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("overrides", [{"auth": "required"}, {"auth": "off", "try_pages": False}],
                         ids=["auth-on-default", "auth-off-try-off"])
def test_pages_are_404_when_not_enabled(make_app, settings, path, overrides):
    client = make_app(settings.with_overrides(**overrides)).test_client()
    response = client.get(path)
    assert response.status_code == 404
    assert response.get_json()["resourceType"] == "OperationOutcome"
    assert client.post("/try/cards", json={"responses": []}).status_code == 404


@pytest.mark.parametrize("path", PATHS)
def test_pages_are_served_when_enabled(try_client, path):
    response = try_client.get(path)
    assert response.status_code == 200, path
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp
    assert "unsafe-inline" not in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_auth_on_with_try_on_shows_why_the_calls_are_refused(make_app, settings):
    client = make_app(settings.with_overrides(auth="required", try_pages=True,
                                              today=CLINICAL_DATE)).test_client()
    page = client.get("/try?example=statin-ck-over-10x")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'id="auth-note"' in html and "MYOCDS_AUTH=off" in html
    assert 'data-auth-required="true"' in html
    # What the page's script then meets: the service refuses the unsigned call.
    plan = client.get("/try/request?example=statin-ck-over-10x").get_json()
    call = plan["calls"][0]
    refused = client.post(call["path"], json=call["request"])
    assert refused.status_code == 401
    # The gallery and the timeline do not call the service and keep working.
    assert client.get("/try/rules").status_code == 200
    assert client.get("/try/timeline.svg?example=statin-ck-over-10x").status_code == 200


def test_auth_off_page_has_no_auth_note(try_client):
    html = try_client.get("/try").get_data(as_text=True)
    assert 'id="auth-note"' not in html and 'data-auth-required="false"' in html


@pytest.mark.parametrize("name", ["unknown", "../examples/index", "statin-ck-over-10x.json",
                                  "index", "requests", "%2e%2e"])
def test_only_shipped_examples_are_shown(try_client, name):
    page = try_client.get("/try", query_string={"example": name})
    assert page.status_code == 404 and page.mimetype == "text/html"
    assert "no such example patient" in page.get_data(as_text=True)
    for path in ("/try/request", "/try/timeline.svg"):
        response = try_client.get(path, query_string={"example": name})
        assert response.status_code == 404
        assert response.get_json()["issue"][0]["code"] == "not-found"


@pytest.mark.parametrize(("query", "field"), [
    ({"hook": "encounter-start"}, "hook"),
    ({"hook": "order-sign", "product": "warfarin"}, "product"),
    ({"hook": "order-sign", "product": "privigen", "dose": "0"}, "dose"),
    ({"hook": "order-sign", "product": "privigen", "days": "400"}, "days"),
])
def test_bad_view_parameters_are_400(try_client, query, field):
    query = {"example": "first-ivig-no-iga", **query}
    response = try_client.get("/try/request", query_string=query)
    assert response.status_code == 400
    assert response.get_json()["issue"][0]["expression"] == [field]
    page = try_client.get("/try", query_string=query)
    assert page.status_code == 400 and page.mimetype == "text/html"


def test_the_url_state_is_the_view(try_client):
    query = {"example": "first-ivig-no-iga", "hook": "order-select", "product": "octagam",
             "dose": "12.5", "days": "4"}
    html = try_client.get("/try", query_string=query).get_data(as_text=True)
    assert re.search(r'<option value="first-ivig-no-iga" selected>', html)
    assert re.search(r'name="hook" value="order-select" class="autosubmit" checked', html)
    assert re.search(r'<option value="octagam" selected>', html)
    assert 'name="dose" type="number"' in html and 'value="12.5"' in html
    assert 'value="4"' in html
    # The script fetches the requests for exactly this view.
    request_url = re.search(r'data-request-url="([^"]+)"', html).group(1).replace("&amp;", "&")
    plan = try_client.get(request_url).get_json()
    assert plan["hook"] == "order-select"
    draft = plan["calls"][0]["request"]["context"]["draftOrders"]["entry"][0]["resource"]
    assert draft["medicationCodeableConcept"]["text"] == "Octagam 10% IV"
    dosage = draft["dosageInstruction"][0]
    assert dosage["doseAndRate"][0]["doseQuantity"]["value"] == 12.5
    assert dosage["timing"]["repeat"]["count"] == 4
    # A patient-view link has no draft fields at all.
    plain = try_client.get("/try?example=first-ivig-no-iga&hook=patient-view")
    assert 'name="product"' not in plain.get_data(as_text=True)


def test_a_statin_draft_has_no_dose_fields(try_client):
    html = try_client.get("/try?example=statin-ck-4-to-10x").get_data(as_text=True)
    assert 'name="product"' in html and 'name="dose"' not in html


def test_page_shows_the_patient_and_the_moved_clinical_date(make_app, settings):
    today = date(2026, 3, 15)
    client = make_app(settings.with_overrides(today=today)).test_client()
    html = client.get("/try?example=statin-ck-over-10x").get_data(as_text=True)
    assert "Margaret Example" in html and "2026-03-15" in html
    shift = (today - CLINICAL_DATE).days
    assert f"record dates moved +{shift} days" in html
    assert "67 years" in html  # born 1958-03-12, the birth date moved with the record


def test_cards_endpoint_draws_responses_most_urgent_first(try_client):
    info = card("info", "STAT-04", "Minor CK rise")
    critical = card("critical", "STAT-01", "Stop the statin")
    body = {"responses": [{"serviceId": "a", "response": {"cards": [info]}},
                          {"serviceId": "b", "response": {"cards": [critical]}}]}
    response = try_client.post("/try/cards", json=body)
    assert response.status_code == 200 and response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    assert html.index("Stop the statin") < html.index("Minor CK rise")
    assert 'data-indicator="critical"' in html and 'data-service="b"' in html


def test_cards_carry_what_the_page_needs_to_send_feedback(try_client):
    """The card's and each suggestion's uuid and each override reason's full Coding are in the
    drawn HTML (feedback names them), escaped; every card can be dismissed."""
    reasons = card("warning", "STAT-03", "Repeat CK")
    reasons.update(
        uuid="5f0c2a1e-8c1d-4f7a-9a51-3d2f0b7e6c11",
        suggestions=[{"label": "Order a repeat CK", "uuid": "5f0c2a1e-8c1d-4f7a-9a51-3d2f0b7e6c12",
                      "actions": [{"type": "create", "description": "Order CK",
                                   "resource": {"resourceType": "ServiceRequest"}}]}],
        selectionBehavior="at-most-one",
        overrideReasons=[{"system": "https://myocds.dev/fhir/CodeSystem/override-reason",
                          "code": "exercise-or-injury", "display": "Exercise \"or\" injury"}],
    )
    bare = card("info", "STAT-04", "Minor CK rise")
    body = {"responses": [{"serviceId": "s", "response": {"cards": [reasons, bare]}}]}
    response = try_client.post("/try/cards", json=body)
    assert response.status_code == 200, response.get_json()
    html = response.get_data(as_text=True)
    assert 'data-uuid="5f0c2a1e-8c1d-4f7a-9a51-3d2f0b7e6c11"' in html
    assert re.search(r'class="suggestion"[^>]*data-uuid="5f0c2a1e-8c1d-4f7a-9a51-3d2f0b7e6c12"',
                     html)
    assert ('<option value="exercise-or-injury" data-system="https://myocds.dev/fhir/CodeSystem/'
            'override-reason">Exercise &#34;or&#34; injury</option>') in html
    assert html.count('class="accept"') == 1 and html.count('class="dismiss"') == 2


@pytest.mark.parametrize("body", [
    {"cards": []},
    {"responses": {"serviceId": "a"}},
    {"responses": [{"response": {"cards": []}}]},
    {"responses": [{"serviceId": "a", "response": {"cards": [{"summary": "no indicator"}]}}]},
])
def test_cards_endpoint_refuses_what_is_not_a_cds_response(try_client, body):
    response = try_client.post("/try/cards", json=body)
    assert response.status_code == 400
    assert response.get_json()["resourceType"] == "OperationOutcome"


def test_cards_endpoint_needs_json(try_client):
    assert try_client.post("/try/cards", data="x", content_type="text/plain").status_code == 415


def card(indicator: str, topic: str, summary: str, **extra: Any) -> dict[str, Any]:
    return {
        "uuid": "0b3cc6a2-0d5c-4b9e-8f0e-2f4c1d7a9e11",
        "summary": summary,
        "indicator": indicator,
        "source": {"label": "test", "topic": {"system": "https://myocds.dev/fhir/CodeSystem/advice",
                                              "code": topic, "display": topic}},
        **extra,
    }


def test_request_endpoint_is_plain_json_for_scripts(try_client):
    response = try_client.get("/try/request?example=remission-on-ivig")
    document = response.get_json()
    assert document["hook"] == "patient-view" and document["example"] == "remission-on-ivig"
    assert [c["serviceId"] for c in document["calls"]] == ["myopathy-review"]
    assert document["calls"][0]["path"] == "/cds-services/myopathy-review"
    json.dumps(document)  # serialisable as is
