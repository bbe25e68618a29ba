"""Structured JSON logs without patient data or tokens.

Every log record becomes one JSON line on stderr (``JsonFormatter``): time, level, logger,
message and the record's ``extra`` fields. Each call to the service adds one line ``"call"``
(``install_call_log``) with what an operator needs and nothing about the patient: service, hook,
hookInstance, status, duration, card topics, fallback fetch count and time, caller's issuer.

Keeping patient data out is by construction first: the call line is built from an allow-list of
fields of ``flask.g.call`` (filled by ``protocol.routes`` and ``pipeline``), each value checked
for its expected shape; request and response bodies are never logged. ``ScrubFilter`` is defence
in depth on every record of every logger: it redacts fields with sensitive names, bearer tokens
and JWTs, ``patient=`` query values and ``Patient/<id>`` references; exceptions are rendered
as type and frames only, since their messages (a FHIR parser quoting a value) may hold PHI.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import traceback
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import cache
from typing import Any

from flask import Flask, Response, g, request

from cds_service.errors import MyocdsError
from cds_service.settings import Settings

REDACTED = "[redacted]"

# Field names that may carry patient data, tokens or bodies; compared case-insensitively.
SENSITIVE_KEYS = frozenset(
    key.lower()
    for key in (
        "access_token", "accessToken", "token", "jwt", "authorization", "fhirAuthorization",
        "id_token", "refresh_token", "password", "secret", "cookie",
        "patient", "patientId", "patient_id", "subject", "name", "given", "family", "birthDate",
        "identifier", "address", "telecom", "body", "prefetch", "context", "resource",
        "resources", "entry", "draftOrders", "request_body", "response_body", "data",
    )
)  # fmt: skip

SCRUB_PATTERNS = (
    # A JWS compact serialization: base64url header starting '{"' = 'eyJ'.
    (re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"), REDACTED),
    (re.compile(r"(?i)\b(bearer)\s+[^\s,;\"']+"), r"\1 " + REDACTED),
    (re.compile(r"(?i)\b(access_token|id_token|refresh_token)(\"?\s*[:=]\s*\"?)[^\s,;&\"']+"),
     r"\1\2" + REDACTED),
    # FHIR search parameters and references that name a patient.
    (re.compile(r"(?i)\b(patient|subject)(=|%3D)[^&\s\"']+"), r"\1\2" + REDACTED),
    (re.compile(r"\b(Patient)/[A-Za-z0-9\-.]{1,64}"), r"\1/" + REDACTED),
)  # fmt: skip

# Attributes every LogRecord has; anything else on a record came from ``extra``.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


def scrub_text(text: str) -> str:
    if text.isascii():
        # Each pattern above needs one of these in the text, case aside: most strings logged
        # (a method, an endpoint, a rule code, a UUID) hold none, and are left as they are
        # after five substring searches instead of five substitutions. ASCII only: ignoring
        # case, the patterns also match a few other letters (the long s, the Kelvin sign).
        lower = text.lower()
        if not (
            "eyj" in lower or "bearer" in lower or "_token" in lower or "patient" in lower
            or "subject" in lower
        ):
            return text
    for pattern, replacement in SCRUB_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def scrub_value(value: Any, depth: int = 0) -> Any:
    """A JSON-ready copy of ``value`` with sensitive keys dropped and strings scrubbed."""
    if depth > 6:
        return REDACTED
    kind = type(value)
    if kind is str:  # the common kinds first, by exact type (the checks below cover subclasses)
        return scrub_text(value)
    if kind is int or kind is float or kind is bool or value is None:
        return value
    if kind is list:
        return [scrub_value(v, depth + 1) for v in value]
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, bool | int | float) or value is None:
        return value
    if isinstance(value, Mapping):
        return {
            str(k): REDACTED if str(k).lower() in SENSITIVE_KEYS else scrub_value(v, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [scrub_value(v, depth + 1) for v in value]
    return scrub_text(str(value))


class ScrubFilter(logging.Filter):
    """Redacts sensitive content of any record before a handler formats it (defence in depth)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not lose the line, nor leak its args
            message = str(record.msg)
        record.msg = scrub_text(message)
        record.args = None
        for key in list(vars(record)):
            if key in _RECORD_ATTRIBUTES:
                continue
            if key.lower() in SENSITIVE_KEYS:
                setattr(record, key, REDACTED)
            else:
                setattr(record, key, scrub_value(getattr(record, key)))
        return True


def _exception_fields(record: logging.LogRecord) -> dict[str, Any]:
    if not record.exc_info or record.exc_info[1] is None:
        return {}
    exc = record.exc_info[1]
    frames = traceback.extract_tb(exc.__traceback__)
    fields: dict[str, Any] = {
        "exc_type": type(exc).__name__,
        "exc_where": [f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno} {f.name}" for f in frames][-12:],
    }
    if isinstance(exc, MyocdsError):
        # Our own messages are PHI-free by contract (cds_service.errors).
        fields["exc_message"] = scrub_text(exc.message)
    return fields


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": scrub_text(record.getMessage()),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRIBUTES and key not in entry:
                entry[key] = value
        entry.update(_exception_fields(record))
        return json.dumps(entry, default=str, ensure_ascii=False, separators=(",", ":"))


_HANDLER_MARK = "_myocds_json_handler"


def configure_logging(settings: Settings) -> logging.Handler:
    """One JSON handler on the root logger (idempotent); returns it."""
    root = logging.getLogger()
    for handler in root.handlers:
        if getattr(handler, _HANDLER_MARK, False):
            break
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        handler.addFilter(ScrubFilter())
        setattr(handler, _HANDLER_MARK, True)
        root.addHandler(handler)
    root.setLevel(settings.log_level)
    # HTTP clients log every URL they fetch (urllib3 and httpcore at DEBUG, httpx at INFO): FHIR
    # searches carry patient ids.
    for client in ("urllib3", "httpx", "httpcore"):
        logging.getLogger(client).setLevel(max(logging.WARNING, root.level))
    return handler


# --- the call line ---------------------------------------------------------------------------

call_log = logging.getLogger("myocds.call")

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_CODE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_SKIPPED_PATHS = ("/healthz", "/readyz", "/metrics")


@cache
def _known_values() -> tuple[frozenset[str], frozenset[str]]:
    from cds_service.services import SERVICES

    return frozenset(s.id for s in SERVICES), frozenset({s.hook for s in SERVICES} | {"feedback"})


def _codes(value: object) -> list[str] | None:
    if not isinstance(value, list | tuple):
        return None
    return [v if isinstance(v, str) and _CODE.match(v) else "?" for v in value][:50]


_RESOURCE_TYPE = re.compile(r"^(?:[A-Z][A-Za-z]{1,63}|unknown)$")


def _type_counts(value: object) -> list[dict[str, Any]] | None:
    """resourceType -> count as ``[{"type": ..., "count": ...}]``: a type name is never a key,
    since "Patient" as a key would be scrubbed as patient data (the fhir layer already labels
    anything not an R4 resource type "unknown")."""
    if not isinstance(value, Mapping):
        return None
    return [
        {"type": k if isinstance(k, str) and _RESOURCE_TYPE.match(k) else "?", "count": v}
        for k, v in sorted(value.items(), key=lambda item: str(item[0]))[:50]
        if isinstance(v, int) and not isinstance(v, bool)
    ]


def _number(value: object) -> int | float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value


def call_fields(call: Mapping[str, Any] | None, status: int, started: float | None) -> dict:
    """The call line: allow-listed fields of ``g.call``, each of the expected shape, or absent.

    Service and hook must be ones we declare (the path and body are the caller's words and could
    be anything, a patient's name included); hookInstance must be a UUID.
    """
    call = call or {}
    services, hooks = _known_values()
    fields: dict[str, Any] = {
        "method": request.method,
        "endpoint": request.url_rule.rule if request.url_rule is not None else None,
        "status": status,
    }
    service = call.get("service")
    if service is None and request.view_args:
        service = request.view_args.get("service_id")
    fields["service"] = service if service in services else None
    fields["hook"] = call.get("hook") if call.get("hook") in hooks else None
    instance = call.get("hookInstance")
    fields["hookInstance"] = (
        instance if isinstance(instance, str) and _UUID.match(instance) else None
    )
    duration = _number(call.get("duration_ms"))
    if duration is None and started is not None:
        duration = round((time.perf_counter() - started) * 1000, 1)
    fields["duration_ms"] = duration
    fields["card_topics"] = _codes(call.get("card_topics"))
    fields["card_indicators"] = _codes(call.get("card_indicators"))
    fields["cards_failed"] = _codes(call.get("cards_failed")) or None
    fields["fallback_fetches"] = _number(call.get("fallback_fetches"))
    fields["fallback_ms"] = _number(call.get("fallback_ms"))
    fields["fallback_keys"] = _codes(call.get("fallback_keys"))
    fields["truncated_keys"] = _codes(call.get("truncated_keys"))
    fields["skipped_resources"] = _number(call.get("skipped_resources"))
    # rules.md r2: how many resources had flaws the call read past, per type; counts only.
    fields["flawed_resources"] = _type_counts(call.get("flawed_resources"))
    fields["flawed_drafts"] = _number(call.get("flawed_drafts"))
    fields["pipeline_ms"] = _number(call.get("pipeline_ms"))
    fields["feedback_items"] = _number(call.get("feedback_items"))
    caller = g.get("caller")
    issuer = getattr(caller, "issuer", None)
    # The issuer is a configured, trusted URL (it passed verification): safe and useful to audit.
    fields["issuer"] = issuer if isinstance(issuer, str) else None
    return {k: v for k, v in fields.items() if v is not None}


def install_call_log(app: Flask) -> None:
    """One ``call`` line per request (health checks excepted), whatever its outcome."""

    @app.before_request
    def _start_clock() -> None:
        g.call_log_started = time.perf_counter()

    @app.after_request
    def _log_call(response: Response) -> Response:
        # The fields only when the line is written (call_log.info asks the same of the level).
        if call_log.isEnabledFor(logging.INFO) and request.path not in _SKIPPED_PATHS:
            fields = call_fields(g.get("call"), response.status_code, g.get("call_log_started"))
            call_log.info("call", extra=fields)
        g.call_logged = True
        return response

    @app.teardown_request
    def _log_failed_call(exc: BaseException | None) -> None:
        # after_request did not run: the response never formed (an error escaped every handler).
        if (
            not g.get("call_logged")
            and call_log.isEnabledFor(logging.ERROR)
            and request.path not in _SKIPPED_PATHS
        ):
            fields = call_fields(g.get("call"), 500, g.get("call_log_started"))
            call_log.error("call", extra=fields)


def gunicorn_logger_class() -> type:
    """gunicorn's logger with our JSON formatter and scrubber on its own handlers (its start-up,
    worker and error lines), so ``myocds serve`` writes JSON only."""
    from gunicorn.glogging import Logger

    class JsonGunicornLogger(Logger):
        def setup(self, cfg: Any) -> None:
            super().setup(cfg)
            for logger in (self.error_log, self.access_log):
                for handler in logger.handlers:
                    handler.setFormatter(JsonFormatter())
                    if not any(isinstance(f, ScrubFilter) for f in handler.filters):
                        handler.addFilter(ScrubFilter())

    return JsonGunicornLogger


def install_logging(app: Flask, settings: Settings) -> None:
    configure_logging(settings)
    install_call_log(app)
