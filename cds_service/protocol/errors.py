"""The one place where errors become HTTP answers: status + FHIR OperationOutcome JSON.

``cds_service.errors.MyocdsError`` subclasses carry their status and FHIR issue-type code;
werkzeug's HTTP errors (routing 404/405, 413 from the body limit) are mapped here too; anything
else is a defect, logged without patient data and answered with a generic 500.
"""

from __future__ import annotations

import logging
import traceback
from typing import Any

from flask import Flask, Response, current_app, jsonify
from werkzeug.exceptions import HTTPException

from cds_service.errors import MyocdsError, ServiceUnavailable, Unauthorized

log = logging.getLogger("myocds.errors")

# FHIR issue-type codes (http://hl7.org/fhir/issue-type) for werkzeug's statuses.
_HTTP_CODES = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    406: "not-supported",
    408: "timeout",
    409: "conflict",
    412: "not-found",
    413: "too-costly",
    415: "not-supported",
    422: "processing",
    429: "throttled",
}

_HTTP_DIAGNOSTICS = {
    404: "no such endpoint: the services are listed at GET /cds-services",
    405: "method not allowed on this endpoint",
    413: "the request body is larger than the limit",
}

UNAUTHORIZED_DIAGNOSTICS = "authentication required: a valid bearer JWT from a trusted CDS client"
INTERNAL_DIAGNOSTICS = "internal error: the service could not answer this call"


def operation_outcome(code: str, diagnostics: str, expression: str | None = None) -> dict[str, Any]:
    issue: dict[str, Any] = {"severity": "error", "code": code, "diagnostics": diagnostics}
    if expression:
        issue["expression"] = [expression]
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def error_response(
    status: int,
    code: str,
    diagnostics: str,
    expression: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    response = jsonify(operation_outcome(code, diagnostics, expression))
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def handle_myocds_error(exc: MyocdsError) -> Response:
    if isinstance(exc, Unauthorized):
        # The reason is for our log only: a 401 must not tell a caller which check failed.
        log.warning("401 refused: %s", exc.message)
        return error_response(
            401, exc.code, UNAUTHORIZED_DIAGNOSTICS, headers={"WWW-Authenticate": "Bearer"}
        )
    if isinstance(exc, ServiceUnavailable):
        log.warning("503 %s", exc.message)
        return error_response(503, exc.code, exc.message, headers={"Retry-After": "5"})
    if exc.status >= 500:
        log.error("%s: %s", type(exc).__name__, exc.message)
        return error_response(exc.status, "exception", INTERNAL_DIAGNOSTICS)
    if exc.status in (412, 422):
        log.info("%d %s: %s", exc.status, type(exc).__name__, exc.message)
    return error_response(exc.status, exc.code, exc.message, exc.expression)


def handle_http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    if status >= 500:
        return error_response(status, "exception", INTERNAL_DIAGNOSTICS)
    headers = {}
    if status == 405 and getattr(exc, "valid_methods", None):
        headers["Allow"] = ", ".join(sorted(exc.valid_methods))  # type: ignore[attr-defined]
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    diagnostics = _HTTP_DIAGNOSTICS.get(status) or (exc.description or exc.name)
    if status == 413:
        limit = current_app.config.get("MAX_CONTENT_LENGTH")
        if limit:
            diagnostics = f"the request body is larger than the limit of {limit} bytes"
    return error_response(status, _HTTP_CODES.get(status, "processing"), diagnostics, None, headers)


def handle_unexpected(exc: Exception) -> Response:
    if isinstance(exc, HTTPException):
        return handle_http_error(exc)
    # The exception's message and the frames' locals may hold patient data: log only its type
    # and where it happened, which is what finding the defect needs.
    frames = traceback.extract_tb(exc.__traceback__)
    where = " <- ".join(
        f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno} {f.name}" for f in reversed(frames)
    )
    log.error("unexpected %s at %s", type(exc).__name__, where or "?")
    return error_response(500, "exception", INTERNAL_DIAGNOSTICS)


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(MyocdsError, handle_myocds_error)
    app.register_error_handler(HTTPException, handle_http_error)
    app.register_error_handler(Exception, handle_unexpected)
