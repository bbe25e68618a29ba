"""create_app: settings read once, the pinned-date warning, authentication on every CDS endpoint
(not the preflight, not the health check) with the audience the client signed."""

from __future__ import annotations

import json
import logging
from datetime import date

import pytest

from cds_service import create_app, pipeline
from cds_service.errors import Unauthorized
from cds_service.protocol import auth
from cds_service.protocol.auth import Caller
from cds_service.settings import Settings
from tests.protocol.conftest import ck_observation, patient_view, searchset

FEEDBACK = {"feedback": [{"card": "0b3cc6a2-0d5c-4b9e-8f0e-2f4c1d7a9e11",
                          "outcome": "overridden", "outcomeTimestamp": "2025-07-01T10:00:00Z"}]}


def test_settings_are_kept_on_the_app(app, settings):
    assert app.config["MYOCDS_SETTINGS"] is settings


def test_settings_default_to_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MYOCDS_AUTH", "off")
    monkeypatch.setenv("MYOCDS_DATABASE_URL", f"sqlite:///{tmp_path}/env.sqlite3")
    monkeypatch.setenv("MYOCDS_MAX_BODY_BYTES", "9999")
    app = create_app()
    try:
        assert app.config["MYOCDS_SETTINGS"] == Settings.from_env()
        assert app.config["MAX_CONTENT_LENGTH"] == 9999
    finally:
        app.extensions["myocds"].store.dispose()


def test_pinned_today_is_announced_loudly(make_app, settings, caplog):
    with caplog.at_level(logging.WARNING, logger="myocds"):
        make_app(settings.with_overrides(today=date(2025, 7, 1)))
    [record] = [r for r in caplog.records if "MYOCDS_TODAY" in r.getMessage()]
    assert record.levelno == logging.WARNING
    assert "2025-07-01" in record.getMessage()


def test_no_warning_when_today_is_not_pinned(make_app, settings, caplog):
    with caplog.at_level(logging.WARNING, logger="myocds"):
        make_app(settings)
    assert "MYOCDS_TODAY" not in caplog.text


def test_the_pinned_date_reaches_the_pipeline(make_app, settings, monkeypatch):
    seen = {}

    def fake_run_hook(service, body, settings, today, caller, **kwargs):
        seen["today"] = today
        return {"cards": []}

    monkeypatch.setattr(pipeline, "run_hook", fake_run_hook)
    client = make_app(settings.with_overrides(today=date(2024, 2, 29))).test_client()
    client.post("/cds-services/myopathy-review", data=json.dumps(patient_view()),
                content_type="application/json")
    assert seen["today"] == date(2024, 2, 29)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("get", "/cds-services", None),
        ("post", "/cds-services/myopathy-review", patient_view()),
        ("post", "/cds-services/myopathy-review/feedback", FEEDBACK),
    ],
)
def test_every_cds_endpoint_needs_authentication(make_app, settings, method, path, body):
    client = make_app(settings.with_overrides(auth="required")).test_client()
    kwargs = {"data": json.dumps(body), "content_type": "application/json"} if body else {}
    response = getattr(client, method)(path, headers={"Authorization": "Bearer not.a.jwt"},
                                       **kwargs)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.get_json()["issue"][0]["code"] == "login"


def test_health_check_needs_no_authentication(make_app, settings):
    client = make_app(settings.with_overrides(auth="required")).test_client()
    assert client.get("/healthz").status_code == 200


class RecordingAuthenticator:
    """Stands in for the JWT verifier to observe what the HTTP layer hands it."""

    calls: list[tuple[str | None, str]] = []

    def __init__(self, settings: Settings, **_shared: object) -> None:
        self.settings = settings

    def verify(self, authorization: str | None, audience: str) -> Caller:
        self.calls.append((authorization, audience))
        if authorization != "Bearer good":
            raise Unauthorized("bad token")
        return Caller(issuer="https://ehr.example.org", tenant=None,
                      fhir_allow=("https://ehr.example.org/fhir",))


@pytest.fixture
def recording(monkeypatch):
    RecordingAuthenticator.calls = []
    # create_app looks the class up when it builds the app.
    monkeypatch.setattr(auth, "Authenticator", RecordingAuthenticator)
    return RecordingAuthenticator


@pytest.mark.parametrize(
    ("public_base_url", "expected"),
    [
        ("http://localhost", "http://localhost/cds-services/myopathy-review"),
        ("https://cds.example.org/myocds/", "https://cds.example.org/myocds/cds-services/myopathy-review"),
    ],
)
def test_audience_is_the_called_url_and_the_caller_reaches_the_pipeline(
    make_app, settings, recording, monkeypatch, public_base_url, expected
):
    seen = {}

    def fake_run_hook(service, body, settings, today, caller, **kwargs):
        seen["caller"] = caller
        return {"cards": []}

    monkeypatch.setattr(pipeline, "run_hook", fake_run_hook)
    app = make_app(settings.with_overrides(auth="required", public_base_url=public_base_url))
    response = app.test_client().post(
        "/cds-services/myopathy-review", data=json.dumps(patient_view()),
        content_type="application/json", headers={"Authorization": "Bearer good"})
    assert response.status_code == 200
    assert recording.calls == [("Bearer good", expected)]
    assert seen["caller"].fhir_allow == ("https://ehr.example.org/fhir",)


def test_authentication_runs_before_the_body_is_read(make_app, settings, recording):
    app = make_app(settings.with_overrides(auth="required"))
    response = app.test_client().post("/cds-services/myopathy-review", data="{not json",
                                      content_type="application/json")
    assert response.status_code == 401


def test_call_observations_are_in_g_call_for_after_request_hooks(make_app, settings):
    from flask import g

    app = make_app(settings.with_overrides(today=date(2025, 7, 1)))
    seen: list[dict] = []

    @app.after_request
    def capture(response):
        seen.append(dict(g.get("call") or {}))
        return response

    body = patient_view()
    body["prefetch"]["medicationRequests"] = searchset({
        "resourceType": "MedicationRequest", "id": "mr-1", "status": "active", "intent": "order",
        "subject": {"reference": "Patient/pat-1"}, "authoredOn": "2025-01-01",
        "medicationCodeableConcept": {"coding": [{
            "system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "198211",
            "display": "simvastatin 40 MG Oral Tablet"}]}})
    body["prefetch"]["observations"] = searchset(ck_observation("ck-1", 5000, "2025-06-28"))
    response = app.test_client().post("/cds-services/myopathy-review", data=json.dumps(body),
                                      content_type="application/json")
    assert response.status_code == 200
    [call] = seen
    assert call["service"] == "myopathy-review" and call["hook"] == "patient-view"
    assert call["hookInstance"] == body["hookInstance"]
    assert call["status"] == 200 and call["duration_ms"] >= call["pipeline_ms"] > 0
    assert "STAT-01" in call["card_topics"]
    assert len(call["card_indicators"]) == len(call["card_topics"])
    assert call["fallback_fetches"] == 0  # every key was prefetched
    assert "_started" not in call


def test_a_broken_card_template_stops_create_app(settings, tmp_path, monkeypatch):
    import shutil

    from cds_service.errors import ConfigurationError
    from tests.conftest import REPO_ROOT

    cards = tmp_path / "cards"
    shutil.copytree(REPO_ROOT / "cards", cards)
    template = json.loads((cards / "STAT-01.json").read_text())
    del template["summary"]
    (cards / "STAT-01.json").write_text(json.dumps(template))
    monkeypatch.setenv("MYOCDS_CARDS_DIR", str(cards))
    with pytest.raises(ConfigurationError, match="STAT-01"):
        create_app(settings)


def test_answers_are_the_json_the_json_module_would_write(app) -> None:
    """The compact answers come from orjson (``cds_service._JSONProvider``): the same JSON as
    the json module with the provider's ``default`` (members in order, Decimals as numbers, ISO
    dates, UUIDs), non-ASCII as UTF-8; what orjson refuses falls back to the json module."""
    from datetime import UTC, datetime
    from decimal import Decimal
    from uuid import UUID

    value = {"z": Decimal("1.50"), "a": [Decimal("2"), 2.5, None, True], "card": "151 → 99 ≤ ×",
             "at": datetime(2025, 7, 1, 10, 0, tzinfo=UTC), "day": date(2025, 7, 1),
             "id": UUID("06278d81-72af-4192-af5e-493a658cb858")}
    written = app.json.dumps(value, separators=(",", ":"))
    expected = json.dumps(value, default=app.json.default, separators=(",", ":"))
    assert json.loads(written) == json.loads(expected)
    assert list(json.loads(written)) == ["z", "a", "card", "at", "day", "id"]
    assert "151 → 99 ≤ ×" in written  # UTF-8, not \\u escapes
    odd = {1: "a key that is not a string", "big": 10**30}
    assert app.json.dumps(odd, separators=(",", ":")) == json.dumps(odd, separators=(",", ":"))
    with app.test_request_context():
        response = app.json.response({"cards": [value]})
    assert json.loads(response.get_data(as_text=True)) == {"cards": [json.loads(expected)]}
