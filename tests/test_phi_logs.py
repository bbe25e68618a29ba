"""No patient id, name, identifier, access token or JWT in any log line.

Calls carrying a recognisable patient (``tests/support/records.py``) go through every path that
logs: cards issued from prefetch, a fallback fetch with an access token, FHIR server failures,
schema violations quoting the patient, unprocessable prefetch, refused and accepted JWTs, feedback
with a comment naming the patient, and an unexpected exception. Everything logged is captured twice:
the raw records (``caplog``: what the code writes, before any scrubbing) and the JSON lines of
the production handler; neither may contain any of the values.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from datetime import date
from typing import Any

import pytest
from flask import Flask

from cds_service.logs import configure_logging
from cds_service.settings import Settings
from tests.support.fhir_server import FhirTestServer
from tests.support.records import (
    BIRTH_DATE,
    FAMILY,
    GIVEN,
    MRN,
    PATIENT_ID,
    PHONE,
    SERVICE_ID,
    call_body,
    load_record,
    topics,
)
from tests.support.signing import BASE_URL, SigningKey

ACCESS_TOKEN = "phi-access-token-Xy81Qw77"
CALL = f"/cds-services/{SERVICE_ID}"
FEEDBACK = f"{CALL}/feedback"


@pytest.fixture
def record_case() -> dict[str, Any]:
    return load_record()[0]


@pytest.fixture
def fhir(record_case: dict[str, Any]) -> Iterator[FhirTestServer]:
    server = FhirTestServer(record=record_case["record"]).start()
    yield server
    server.stop()


@pytest.fixture
def json_log(settings: Settings) -> Iterator[io.StringIO]:
    """The production JSON handler, writing to a buffer for the length of the test."""
    handler = configure_logging(settings.with_overrides(log_level="DEBUG"))
    assert isinstance(handler, logging.StreamHandler)
    buffer = io.StringIO()
    previous = handler.setStream(buffer)
    yield buffer
    handler.setStream(previous)
    logging.getLogger().setLevel(logging.WARNING)


@pytest.fixture
def phi_app(
    settings: Settings,
    make_app: Callable[[Settings], Flask],
    issuers_file: Callable[..., str],
    es384: SigningKey,
    fhir: FhirTestServer,
    record_case: dict[str, Any],
    json_log: io.StringIO,
) -> Flask:
    path = issuers_file(jku=[], jwks=es384.jwks(), fhirServers=[fhir.base_url])
    return make_app(
        settings.with_overrides(
            auth="required",
            issuers_file=path,
            public_base_url=BASE_URL,
            fhir_allow=(fhir.base_url,),
            today=date.fromisoformat(record_case["today"]),
            fhir_timeout_seconds=0.5,
            hook_deadline_seconds=1.0,
            log_level="DEBUG",
        )
    )


def test_no_patient_data_or_token_is_ever_logged(
    phi_app: Flask,
    es384: SigningKey,
    fhir: FhirTestServer,
    record_case: dict[str, Any],
    json_log: io.StringIO,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    client = phi_app.test_client()
    jwts: list[str] = []

    def post(path: str, body: Any, *, token: str | None = None, raw: bytes | None = None) -> Any:
        if token is None:
            token = es384.token(aud=BASE_URL + path, header={"jku": None})
        jwts.append(token)
        headers = {"Authorization": f"Bearer {token}"}
        if raw is not None:
            return client.post(path, data=raw, content_type="application/json", headers=headers)
        return client.post(path, json=body, headers=headers)

    authorization = {
        "access_token": ACCESS_TOKEN,
        "token_type": "Bearer",
        "expires_in": 300,
        "scope": "patient/*.read",
        "subject": "myocds",
        "patient": PATIENT_ID,
    }
    with_prefetch = call_body(record_case, prefetch=True)
    fetching = call_body(record_case, prefetch=False) | {
        "fhirServer": fhir.base_url,
        "fhirAuthorization": authorization,
    }

    # 1. Cards from prefetch (the patient's name is in the prefetch Patient).
    issued = post(CALL, with_prefetch)
    assert issued.status_code == 200 and issued.get_json()["cards"]
    # 2. The same from a fallback fetch, with the access token; it must reach the server.
    fetched = post(CALL, fetching)
    assert fetched.status_code == 200
    assert topics(fetched.get_json()) == topics(issued.get_json())
    assert any(r.authorization == f"Bearer {ACCESS_TOKEN}" for r in fhir.requests)
    # 3. FHIR server failures: 500 on the patient read, then a hang on the searches.
    fhir.add_fault("status", "Patient", status=500)
    assert post(CALL, fetching).status_code == 412
    fhir.reset()
    fhir.add_fault("hang", "Observation")
    assert post(CALL, fetching).status_code == 412
    fhir.reset()
    # 4. Schema violations whose rejected values are the patient's data.
    bad_id = with_prefetch | {
        "context": {**with_prefetch["context"], "patientId": f"{GIVEN} {FAMILY}"}
    }
    assert post(CALL, bad_id).status_code == 400
    bad_instance = with_prefetch | {"hookInstance": f"{MRN} {PHONE}"}
    assert post(CALL, bad_instance).status_code in (200, 400)
    # 5. Unprocessable prefetch: the Patient where a Bundle of Observations belongs.
    wrong = json.loads(json.dumps(with_prefetch))
    wrong["prefetch"]["observations"] = wrong["prefetch"]["patient"]
    assert post(CALL, wrong).status_code in (400, 412, 422)
    # 6. Malformed JSON that quotes the patient.
    raw = f'{{"hook": "patient-view", "context": {{"patientId": "{PATIENT_ID}", "name": "{FAMILY}"'
    assert post(CALL, None, raw=raw.encode()).status_code == 400
    # 7. Refused JWTs: one carrying the patient in a claim, one replayed.
    nosy = es384.token(aud=BASE_URL + "/elsewhere", header={"jku": None}, patient=PATIENT_ID)
    assert post(CALL, with_prefetch, token=nosy).status_code == 401
    assert post(CALL, with_prefetch, token=jwts[0]).status_code == 401
    # 8. Feedback whose comment names the patient.
    card_uuid = issued.get_json()["cards"][0]["uuid"]
    feedback = {
        "feedback": [
            {
                "card": card_uuid,
                "outcome": "overridden",
                "overrideReason": {"userComment": f"{GIVEN} {FAMILY} {BIRTH_DATE} declined"},
                "outcomeTimestamp": "2025-07-01T10:00:00Z",
            }
        ]
    }
    assert post(FEEDBACK, feedback).status_code == 200
    # 9. An unexpected failure deep in the pipeline, its exception message full of PHI.
    import cds_service.pipeline as pipeline

    original = pipeline.run_hook

    def exploding(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"boom for {PATIENT_ID} {FAMILY} token {ACCESS_TOKEN}")

    pipeline.run_hook = exploding  # type: ignore[assignment]
    try:
        assert post(CALL, with_prefetch).status_code == 500
    finally:
        pipeline.run_hook = original  # type: ignore[assignment]

    secrets = [PATIENT_ID, FAMILY, GIVEN, BIRTH_DATE, MRN, PHONE, ACCESS_TOKEN, *jwts]
    # Something was logged for every call, or the test proves nothing.
    assert len([r for r in caplog.records if r.name == "myocds.call"]) >= 12
    raw_records = "\n".join(
        record.getMessage() + " " + " ".join(str(v) for v in vars(record).values())
        for record in caplog.records
    )
    json_lines = json_log.getvalue()
    assert json_lines.count('"logger":"myocds.call"') >= 12
    for secret in secrets:
        assert secret not in raw_records, f"{secret[:12]}... in the raw log records"
        assert secret not in json_lines, f"{secret[:12]}... in the JSON log"
    # The JWT's signature-free parts too: a header.payload without signature is still a leak.
    for token in jwts:
        assert token.rsplit(".", 1)[0] not in json_lines


def test_call_line_carries_what_operators_need(
    phi_app: Flask, es384: SigningKey, record_case: dict[str, Any], json_log: io.StringIO
) -> None:
    body = call_body(record_case, prefetch=True)
    token = es384.token(aud=BASE_URL + CALL, header={"jku": None})
    response = phi_app.test_client().post(
        CALL, json=body, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 200
    lines = [json.loads(line) for line in json_log.getvalue().splitlines() if line.strip()]
    (call,) = [line for line in lines if line["logger"] == "myocds.call"]
    assert call["service"] == SERVICE_ID
    assert call["hook"] == body["hook"]
    assert call["hookInstance"] == body["hookInstance"]
    assert call["status"] == 200
    assert call["duration_ms"] > 0
    assert sorted(call["card_topics"]) == topics(response.get_json())
    assert call["fallback_fetches"] == 0
    assert call["issuer"] == "https://ehr.test.example"
