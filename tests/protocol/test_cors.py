"""CORS: preflight without authentication, Access-Control-Allow-Origin on every answer."""

from __future__ import annotations

import json

import pytest

from tests.protocol.conftest import patient_view

PATHS = ["/cds-services", "/cds-services/myopathy-review",
         "/cds-services/myopathy-review/feedback"]
SANDBOX = "https://sandbox.cds-hooks.org"


def preflight(client, path: str, origin: str = SANDBOX):
    return client.options(path, headers={
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    })


@pytest.mark.parametrize("path", PATHS)
def test_preflight_is_answered_without_authentication(make_app, settings, path):
    # Authentication on, no Authorization header: a browser never sends one on a preflight.
    client = make_app(settings.with_overrides(auth="required")).test_client()
    response = preflight(client, path)
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    methods = {m.strip() for m in response.headers["Access-Control-Allow-Methods"].split(",")}
    assert methods == {"GET", "POST", "OPTIONS"}
    allow_headers = response.headers["Access-Control-Allow-Headers"]
    allowed = {h.strip().lower() for h in allow_headers.split(",")}
    assert {"authorization", "content-type"} <= allowed
    assert int(response.headers["Access-Control-Max-Age"]) > 0


def test_preflight_on_unknown_path_is_still_404(client):
    assert preflight(client, "/nothing").status_code == 404


def test_allow_origin_on_get_post_and_feedback(client):
    headers = {"Origin": SANDBOX}
    discovery = client.get("/cds-services", headers=headers)
    call = client.post(PATHS[1], data=json.dumps(patient_view()),
                       content_type="application/json", headers=headers)
    feedback = client.post(PATHS[2], data=json.dumps({"feedback": [{
        "card": "0b3cc6a2-0d5c-4b9e-8f0e-2f4c1d7a9e11", "outcome": "overridden",
        "outcomeTimestamp": "2025-07-01T10:00:00Z"}]}), content_type="application/json",
        headers=headers)
    for response in (discovery, call, feedback):
        assert response.status_code == 200
        assert response.headers["Access-Control-Allow-Origin"] == "*"


def test_allow_origin_on_errors(client):
    bad = client.post(PATHS[1], data="{", content_type="application/json",
                      headers={"Origin": SANDBOX})
    unknown = client.get("/nothing", headers={"Origin": SANDBOX})
    assert bad.status_code == 400 and unknown.status_code == 404
    assert bad.headers["Access-Control-Allow-Origin"] == "*"
    assert unknown.headers["Access-Control-Allow-Origin"] == "*"


def test_allow_origin_on_401(make_app, settings):
    client = make_app(settings.with_overrides(auth="required")).test_client()
    response = client.get("/cds-services", headers={"Origin": SANDBOX})
    assert response.status_code == 401
    assert response.headers["Access-Control-Allow-Origin"] == "*"


def test_configured_origins_are_echoed_and_others_get_none(make_app, settings):
    client = make_app(settings.with_overrides(cors_origins=(SANDBOX,))).test_client()
    allowed = client.get("/cds-services", headers={"Origin": SANDBOX})
    other = client.get("/cds-services", headers={"Origin": "https://evil.example"})
    assert allowed.headers["Access-Control-Allow-Origin"] == SANDBOX
    assert "Origin" in allowed.headers["Vary"]
    assert "Access-Control-Allow-Origin" not in other.headers
    answered = preflight(client, PATHS[1])
    assert answered.status_code == 204
    assert answered.headers["Access-Control-Allow-Origin"] == SANDBOX
