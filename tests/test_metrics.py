"""``GET /metrics`` through the test client: what each kind of call adds, labels that cannot
carry a caller's words, one registry per app, and the same protection as every endpoint."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import jwt
import pytest
import responses
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask
from flask.testing import FlaskClient
from jwt.algorithms import ECAlgorithm

from cds_service.services import find_service
from cds_service.settings import Settings
from tests.support.fhir_server import FhirTestServer
from tests.support.metrics import samples, value
from tests.support.records import scenario_body

PV = "myopathy-review"


@pytest.fixture
def over_40x(scenarios: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return scenarios["own/stat02-ck-over-40x-no-statin"]


@pytest.fixture
def fhir_server(over_40x: dict[str, Any]) -> Iterator[FhirTestServer]:
    server = FhirTestServer(record=over_40x["record"]).start()
    yield server
    server.stop()


@pytest.fixture
def pinned_client(
    settings: Settings,
    make_app: Callable[[Settings], Flask],
    over_40x: dict[str, Any],
    fhir_server: FhirTestServer,
) -> FlaskClient:
    pinned = settings.with_overrides(
        today=date.fromisoformat(over_40x["today"]), fhir_allow=(fhir_server.base_url,)
    )
    return make_app(pinned).test_client()


def scrape(client: FlaskClient) -> str:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    return response.get_data(as_text=True)


def post_json(client: FlaskClient, path: str, body: Any) -> Any:
    return client.post(path, data=json.dumps(body), content_type="application/json")


def test_a_hook_call_counts_call_latency_and_each_card(
    pinned_client: FlaskClient, over_40x: dict[str, Any]
) -> None:
    service = find_service(PV, "patient-view")
    assert service is not None
    response = post_json(pinned_client, f"/cds-services/{PV}", scenario_body(service, over_40x))
    assert response.status_code == 200
    cards = response.get_json()["cards"]
    assert cards, "the scenario gives cards"
    text = scrape(pinned_client)
    labels = {"service": PV, "hook": "patient-view"}
    assert value(text, "myocds_calls_total", status="200", **labels) == 1
    assert value(text, "myocds_call_duration_seconds_count", **labels) == 1
    assert value(text, "myocds_call_duration_seconds_sum", **labels) > 0
    expected: dict[tuple[str, str], int] = {}
    for card in cards:
        key = (card["source"]["topic"]["code"], card["indicator"])
        expected[key] = expected.get(key, 0) + 1
    counted = {
        (dict(lab)["topic"], dict(lab)["indicator"]): int(v)
        for (name, lab), v in samples(text).items()
        if name == "myocds_cards_total"
    }
    assert counted == expected
    # Prefetch was complete: nothing fetched, nothing failed.
    assert value(text, "myocds_fallback_calls_total", **labels) == 0
    assert value(text, "myocds_fallback_failures_total", **labels) == 0


def test_fallback_fetches_and_failures_are_counted(
    pinned_client: FlaskClient, over_40x: dict[str, Any], fhir_server: FhirTestServer
) -> None:
    service = find_service(PV, "patient-view")
    assert service is not None
    body = scenario_body(service, over_40x, with_prefetch=False)
    body["fhirServer"] = fhir_server.base_url
    assert post_json(pinned_client, f"/cds-services/{PV}", body).status_code == 200
    fetched = fhir_server.request_count
    assert fetched >= len(service.prefetch)
    fhir_server.add_fault("status", "Observation", status=503)
    body["hookInstance"] = str(uuid.uuid4())
    failed = post_json(pinned_client, f"/cds-services/{PV}", body)
    assert failed.status_code == 412
    text = scrape(pinned_client)
    labels = {"service": PV, "hook": "patient-view"}
    assert value(text, "myocds_fallback_calls_total", **labels) == 1
    assert value(text, "myocds_fallback_requests_total", **labels) == fetched
    assert value(text, "myocds_fallback_fetch_seconds_count", **labels) == 1
    assert 0 < value(text, "myocds_fallback_fetch_seconds_sum", **labels) < 4.0  # the deadline
    assert value(text, "myocds_fallback_failures_total", **labels) == 1
    assert value(text, "myocds_calls_total", status="412", **labels) == 1
    assert value(text, "myocds_http_errors_total", **{"class": "4xx", "status": "412"}) == 1


def test_errors_are_counted_and_a_callers_words_never_become_a_label(
    client: FlaskClient, pv_body: dict[str, Any]
) -> None:
    assert post_json(client, "/cds-services/Jane-Doe-MRN-12345", pv_body).status_code == 404
    assert client.get("/no/such/path").status_code == 404
    bad = client.post(f"/cds-services/{PV}", data=b"{not json", content_type="application/json")
    assert bad.status_code == 400
    wrong_hook = post_json(client, f"/cds-services/{PV}", {**pv_body, "hook": "Jane-Doe-hook"})
    assert wrong_hook.status_code == 400
    feedback = {"feedback": [{"card": str(uuid.uuid4()), "outcome": "accepted",
                              "outcomeTimestamp": "2025-07-01T10:00:00Z",
                              "acceptedSuggestions": [{"id": "s-1"}]}]}
    assert post_json(client, f"/cds-services/{PV}/feedback", feedback).status_code == 200
    text = scrape(client)
    assert "Jane-Doe" not in text
    assert value(text, "myocds_http_errors_total", **{"class": "4xx", "status": "404"}) == 2
    assert value(text, "myocds_http_errors_total", **{"class": "4xx", "status": "400"}) == 2
    assert value(text, "myocds_calls_total", service="other", hook="other", status="404") == 1
    # The malformed body never named a hook; the wrong hook is not one we declare.
    assert value(text, "myocds_calls_total", service=PV, hook="other", status="400") == 2
    assert value(text, "myocds_calls_total", service=PV, hook="feedback", status="200") == 1
    assert value(text, "myocds_http_errors_total", **{"class": "5xx", "status": "500"}) == 0


def test_each_app_has_its_own_registry(
    settings: Settings, make_app: Callable[[Settings], Flask], pv_body: dict[str, Any]
) -> None:
    first = make_app(settings).test_client()
    second = make_app(settings).test_client()
    assert post_json(first, f"/cds-services/{PV}", pv_body).status_code == 200
    labels = {"service": PV, "hook": "patient-view", "status": "200"}
    assert value(scrape(first), "myocds_calls_total", **labels) == 1
    assert value(scrape(second), "myocds_calls_total", **labels) == 0


# --- protection ------------------------------------------------------------------------------

ISS = "https://ehr.metrics.example"
JKU = f"{ISS}/jwks.json"
BASE_URL = "https://cds.metrics.example"


@pytest.fixture(scope="module")
def es384_key() -> Any:
    return ec.generate_private_key(ec.SECP384R1())


def _token(key: Any, aud: str) -> str:
    import time

    now = int(time.time())
    claims = {"iss": ISS, "aud": aud, "iat": now, "exp": now + 300, "jti": str(uuid.uuid4())}
    return jwt.encode(claims, key, algorithm="ES384",
                      headers={"kid": "k1", "typ": "JWT", "jku": JKU})


@pytest.fixture
def auth_settings(settings: Settings, tmp_path: Path) -> Settings:
    issuers = tmp_path / "issuers.json"
    issuers.write_text(json.dumps({"issuers": [{"iss": ISS, "jku": [JKU], "fhirServers": []}]}))
    return settings.with_overrides(
        auth="required", issuers_file=str(issuers), public_base_url=BASE_URL
    )


@pytest.fixture
def jwks(es384_key: Any) -> Iterator[None]:
    jwk = json.loads(ECAlgorithm.to_jwk(es384_key.public_key()))
    jwk.update(kid="k1", use="sig", alg="ES384")
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get(JKU, json={"keys": [jwk]})
        yield


@pytest.mark.usefixtures("jwks")
def test_metrics_need_a_token_when_auth_is_required(
    auth_settings: Settings, make_app: Callable[[Settings], Flask], es384_key: Any
) -> None:
    client = make_app(auth_settings).test_client()
    refused = client.get("/metrics")
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"] == "Bearer"
    assert "myocds_calls_total" not in refused.get_data(as_text=True)
    wrong_audience = _token(es384_key, f"{BASE_URL}/cds-services")
    assert client.get(
        "/metrics", headers={"Authorization": f"Bearer {wrong_audience}"}
    ).status_code == 401
    token = _token(es384_key, f"{BASE_URL}/metrics")
    answered = client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert answered.status_code == 200
    text = answered.get_data(as_text=True)
    # The refused scrapes were counted (status class) without the scrape being a "call".
    assert value(text, "myocds_http_errors_total", **{"class": "4xx", "status": "401"}) == 2


@pytest.mark.usefixtures("jwks")
def test_metrics_public_opens_only_metrics(
    auth_settings: Settings, make_app: Callable[[Settings], Flask]
) -> None:
    client = make_app(auth_settings.with_overrides(metrics_public=True)).test_client()
    assert client.get("/metrics").status_code == 200
    assert client.get("/cds-services").status_code == 401


def test_metrics_public_setting_is_read_from_the_environment() -> None:
    assert Settings.from_env({"MYOCDS_METRICS_PUBLIC": "on"}).metrics_public is True
    assert Settings.from_env({}).metrics_public is False
    with pytest.raises(Exception, match="MYOCDS_METRICS_PUBLIC"):
        Settings.from_env({"MYOCDS_METRICS_PUBLIC": "maybe"})
