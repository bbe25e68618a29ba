"""protocol.errors: every MyocdsError and HTTP error becomes status + OperationOutcome; an
unexpected exception is a generic 500 whose body and log carry no patient data."""

from __future__ import annotations

import logging

import pytest
from flask import Flask

from cds_service import errors as e
from cds_service.protocol.errors import INTERNAL_DIAGNOSTICS, UNAUTHORIZED_DIAGNOSTICS


def raising_app(make_app, settings, exc: BaseException) -> Flask:
    app = make_app(settings)

    @app.get("/raise")
    def _raise() -> None:
        raise exc

    return app


@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        (e.BadRequest("context.patientId is required", expression="context.patientId"), 400,
         "invalid"),
        (e.SchemaViolation("hook must be a string", expression="hook"), 400, "invalid"),
        (e.Forbidden("tenant not allowed"), 403, "forbidden"),
        (e.NotFound("no such service"), 404, "not-found"),
        (e.MethodNotAllowed("use POST"), 405, "not-supported"),
        (e.PayloadTooLarge("too big"), 413, "too-costly"),
        (e.UnsupportedMediaType("JSON only"), 415, "not-supported"),
        (e.DataUnavailable("prefetch key observations was absent and no fhirServer was given"),
         412, "not-found"),
        (e.FhirServerRefused("fhirServer must use https"), 412, "security"),
        (e.Unprocessable("draft order has no medication"), 422, "processing"),
    ],
)
def test_myocds_errors_map_to_status_and_operation_outcome(make_app, settings, exc, status,
                                                           code):
    response = raising_app(make_app, settings, exc).test_client().get("/raise")
    assert response.status_code == status
    assert response.mimetype == "application/json"
    document = response.get_json()
    assert document == {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": code, "diagnostics": exc.message,
                   **({"expression": [exc.expression]} if exc.expression else {})}],
    }


def test_unauthorized_says_nothing_about_which_check_failed(make_app, settings, caplog):
    exc = e.Unauthorized("jti replayed for issuer https://ehr.example.org")
    with caplog.at_level(logging.WARNING):
        response = raising_app(make_app, settings, exc).test_client().get("/raise")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    issue = response.get_json()["issue"][0]
    assert issue["code"] == "login"
    assert issue["diagnostics"] == UNAUTHORIZED_DIAGNOSTICS
    assert "jti" not in response.get_data(as_text=True)
    assert "jti replayed" in caplog.text  # the reason is kept for the operator


def test_configuration_error_at_run_time_is_a_generic_500(make_app, settings):
    exc = e.ConfigurationError("template STAT-01 is broken")
    response = raising_app(make_app, settings, exc).test_client().get("/raise")
    assert response.status_code == 500
    assert response.get_json()["issue"][0]["diagnostics"] == INTERNAL_DIAGNOSTICS


def test_unexpected_exception_is_500_without_trace_or_patient_data(make_app, settings, caplog):
    exc = KeyError("Jane Doe MRN 00123456")
    with caplog.at_level(logging.DEBUG):
        response = raising_app(make_app, settings, exc).test_client().get("/raise")
    assert response.status_code == 500
    text = response.get_data(as_text=True)
    assert response.get_json() == {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "exception", "diagnostics": INTERNAL_DIAGNOSTICS}],
    }
    assert "Traceback" not in text and "KeyError" not in text
    assert "KeyError" in caplog.text and "test_errors.py" in caplog.text
    assert "Jane Doe" not in caplog.text and "00123456" not in caplog.text


def test_cors_header_is_on_error_responses_too(make_app, settings):
    response = raising_app(make_app, settings, RuntimeError("x")).test_client().get("/raise")
    assert response.status_code == 500
    assert response.headers["Access-Control-Allow-Origin"] == "*"
