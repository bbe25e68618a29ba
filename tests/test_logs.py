"""Structured JSON logs: one line per call, and nothing about the patient or the tokens.

The ``json_lines`` fixture (the production handler on a buffer) is in ``tests/conftest.py``."""

from __future__ import annotations

import io
import json
import logging
import random

import pytest
from flask import Flask, g, jsonify

from cds_service.errors import MyocdsError
from cds_service.logs import REDACTED, SCRUB_PATTERNS, install_call_log, scrub_text

JWT = (
    "eyJhbGciOiJFUzM4NCIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJodHRwczovL2VociJ9.c2lnbmF0dXJlLWJ5dGVzLWhlcmU"
)
HOOK_INSTANCE = "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea"


def _records(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_every_record_is_one_json_object_with_its_extra_fields(json_lines: io.StringIO) -> None:
    logging.getLogger("myocds.test").warning("fetch took %d ms", 12, extra={"jku": "https://x"})
    (entry,) = _records(json_lines)
    assert entry["level"] == "WARNING"
    assert entry["logger"] == "myocds.test"
    assert entry["msg"] == "fetch took 12 ms"
    assert entry["jku"] == "https://x"
    assert entry["ts"].endswith("+00:00")


@pytest.mark.parametrize(
    "text,secret",
    [
        (f"token {JWT} refused", JWT),
        ("Authorization: Bearer opaque-access-token-123", "opaque-access-token-123"),
        ('{"access_token": "abc.def-ghi"}', "abc.def-ghi"),
        ("GET /Observation?patient=pt-77812&code=2157-6", "pt-77812"),
        ("GET /Observation?subject%3Dpt-77812", "pt-77812"),
        ("reference Patient/pt-77812 not found", "pt-77812"),
    ],
)
def test_scrubbing_removes_tokens_and_patient_ids_from_text(text: str, secret: str) -> None:
    scrubbed = scrub_text(text)
    assert secret not in scrubbed
    assert REDACTED in scrubbed


@pytest.mark.parametrize(
    "text,secret",
    [
        ("AUTHORIZATION: BEARER opaque-1", "opaque-1"),
        ("Refresh_Token=opaque-2", "opaque-2"),
        ("?PATIENT%3Dpt-3", "pt-3"),
        # Ignoring case, the patterns also match the long s and the Kelvin sign.
        ("?\u017fubject=pt-4", "pt-4"),
        ("\u212aey \u00e9 Patient/pt-5", "pt-5"),
    ],
)
def test_scrubbing_ignores_case_beyond_ascii_too(text: str, secret: str) -> None:
    assert secret not in scrub_text(text)


def test_scrubbing_is_the_patterns_whatever_the_text() -> None:
    # scrub_text skips the substitutions on ASCII text holding none of their key words.
    rng = random.Random(15)
    pieces = ["Bearer ", "BEARER\t", "eyJhbGci.eyJzdWIi.c2ln", "EYJa.bcde.fg", "access_token=",
              "ID_TOKEN: \"", "patient=", "Patient/", "PATIENT%3D", "subject=", "\u017fubject=",
              "\u0131", "K", " ", "/", "=", "12345", "x", "&", "\"", "POST", "IVIG-01"]
    for _ in range(20_000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randrange(8)))
        expected = text
        for pattern, replacement in SCRUB_PATTERNS:
            expected = pattern.sub(replacement, expected)
        assert scrub_text(text) == expected, text


def test_sensitive_extra_fields_are_redacted(json_lines: io.StringIO) -> None:
    logging.getLogger("myocds.test").info(
        "careless call",
        extra={
            "patientId": "pt-77812",
            "fhirAuthorization": {"access_token": "opaque"},
            "details": {"name": [{"family": "Quagmire"}], "count": 3},
        },
    )
    line = json_lines.getvalue()
    for secret in ("pt-77812", "opaque", "Quagmire"):
        assert secret not in line
    (entry,) = _records(json_lines)
    assert entry["patientId"] == REDACTED
    assert entry["details"] == {"name": REDACTED, "count": 3}


def test_exceptions_are_logged_without_their_message(json_lines: io.StringIO) -> None:
    try:
        raise ValueError("Patient name Quagmire, birthDate 1931-02-03 invalid")
    except ValueError:
        logging.getLogger("myocds.test").exception("parse failed")
    line = json_lines.getvalue()
    assert "Quagmire" not in line and "1931-02-03" not in line
    (entry,) = _records(json_lines)
    assert entry["exc_type"] == "ValueError"
    assert any("test_exceptions_are_logged_without_their_message" in f for f in entry["exc_where"])


def test_our_own_error_messages_are_kept(json_lines: io.StringIO) -> None:
    try:
        raise MyocdsError("prefetch 'observations' is not a Bundle")
    except MyocdsError:
        logging.getLogger("myocds.test").exception("refused")
    (entry,) = _records(json_lines)
    assert entry["exc_message"] == "prefetch 'observations' is not a Bundle"


# --- the call line -----------------------------------------------------------------------


def _app(call: dict | None, status: int = 200, fail: bool = False) -> Flask:
    app = Flask("t")

    @app.post("/cds-services/<service_id>")
    def service(service_id: str):
        if call is not None:
            g.call = dict(call)
        if fail:
            raise RuntimeError("Quagmire")
        response = jsonify({})
        response.status_code = status
        return response

    @app.get("/healthz")
    def healthz():
        return jsonify({"status": "ok"})

    install_call_log(app)
    return app


def _call_lines(stream: io.StringIO) -> list[dict]:
    return [r for r in _records(stream) if r["logger"] == "myocds.call"]


def test_one_call_line_with_the_operational_fields(json_lines: io.StringIO) -> None:
    call = {
        "service": "myocds-statin-order",
        "hook": "order-sign",
        "hookInstance": HOOK_INSTANCE,
        "duration_ms": 41.5,
        "card_topics": ["STAT-01", "HMG-01"],
        "card_indicators": ["critical", "info"],
        "fallback_fetches": 2,
        "fallback_ms": 30.2,
        "fallback_keys": ["observations"],
    }
    from cds_service.services import SERVICES

    service = next(s for s in SERVICES if s.hook in ("order-sign", "order-select"))
    call.update(service=service.id, hook=service.hook)
    _app(call).test_client().post(f"/cds-services/{service.id}", json={})
    (line,) = _call_lines(json_lines)
    assert line["msg"] == "call"
    assert line["status"] == 200
    assert line["service"] == service.id
    assert line["hook"] == service.hook
    assert line["hookInstance"] == HOOK_INSTANCE
    assert line["duration_ms"] == 41.5
    assert line["card_topics"] == ["STAT-01", "HMG-01"]
    assert line["fallback_fetches"] == 2
    assert line["fallback_ms"] == 30.2
    assert line["endpoint"] == "/cds-services/<service_id>"


def test_caller_words_that_are_not_ours_never_reach_the_call_line(
    json_lines: io.StringIO,
) -> None:
    # A hostile client can put anything in the path, hook and hookInstance: a patient's name too.
    call = {"service": "Quagmire", "hook": "Glenn Quagmire", "hookInstance": "Quagmire 1931"}
    _app(call, status=400).test_client().post("/cds-services/Quagmire", json={})
    (line,) = _call_lines(json_lines)
    assert "Quagmire" not in json.dumps(line)
    assert line["status"] == 400
    assert "duration_ms" in line


def test_a_failed_call_still_gets_its_line(json_lines: io.StringIO) -> None:
    app = _app(None, fail=True)
    app.config["PROPAGATE_EXCEPTIONS"] = False
    app.test_client().post("/cds-services/x", json={})
    lines = _call_lines(json_lines)
    assert [line["status"] for line in lines] == [500]
    assert "Quagmire" not in json_lines.getvalue()


def test_health_checks_are_not_logged(json_lines: io.StringIO) -> None:
    _app(None).test_client().get("/healthz")
    assert _call_lines(json_lines) == []


def test_gunicorn_lines_are_json_too() -> None:
    from gunicorn.config import Config

    from cds_service.logs import gunicorn_logger_class

    logger = gunicorn_logger_class()(Config())
    stream = io.StringIO()
    for handler in logger.error_log.handlers:
        handler.setStream(stream)  # type: ignore[attr-defined]
    logger.error_log.info("Booting worker with Bearer %s", JWT)
    entry = json.loads(stream.getvalue().splitlines()[-1])
    assert entry["logger"] == "gunicorn.error"
    assert entry["msg"] == f"Booting worker with Bearer {REDACTED}"
