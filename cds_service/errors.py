"""The one exception hierarchy. ``protocol.errors`` maps it to HTTP status + OperationOutcome.

Raise the most specific class with a message that tells the caller what is wrong; the message
becomes the OperationOutcome ``diagnostics`` verbatim, so it must never carry patient data,
tokens or resource bodies.
"""

from __future__ import annotations


class MyocdsError(Exception):
    """Base of every error the service answers deliberately."""

    status: int = 500
    code: str = "exception"  # FHIR issue-type code (http://hl7.org/fhir/issue-type)

    def __init__(self, message: str, *, expression: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.expression = expression  # e.g. "context.patientId": the field at fault


class ConfigurationError(MyocdsError):
    """Bad settings or a broken card template: the service must not start."""


class BadRequest(MyocdsError):
    status = 400
    code = "invalid"


class SchemaViolation(BadRequest):
    """The request does not match the CDS Hooks 2.0 schema (the expression names the field)."""


class Unauthorized(MyocdsError):
    """Authentication failed. The message is logged, never sent: the 401 says nothing more."""

    status = 401
    code = "login"


class Forbidden(MyocdsError):
    status = 403
    code = "forbidden"


class NotFound(MyocdsError):
    status = 404
    code = "not-found"


class MethodNotAllowed(MyocdsError):
    status = 405
    code = "not-supported"


class PayloadTooLarge(MyocdsError):
    status = 413
    code = "too-costly"


class UnsupportedMediaType(MyocdsError):
    status = 415
    code = "not-supported"


class DataUnavailable(MyocdsError):
    """Required FHIR data could not be had (CDS Hooks: 412 Precondition Failed)."""

    status = 412
    code = "not-found"


class FhirServerRefused(DataUnavailable):
    """The fhirServer is not allowed (allow-list, scheme, private address): 412, clear reason."""

    code = "security"


class ServiceUnavailable(MyocdsError):
    """A backing store (the feedback database, the replay store) cannot be reached now: 503,
    its message sent as is (it names the store, never connection details), retry later."""

    status = 503
    code = "transient"


class Unprocessable(MyocdsError):
    """Well-formed JSON that cannot be acted on (e.g. FHIR content we cannot interpret)."""

    status = 422
    code = "processing"
