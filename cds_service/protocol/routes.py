"""The CDS Hooks 2.0 endpoints: discovery, service calls, feedback; and the health check.

Discovery, routing and prefetch come from the application's catalogue (``cds_service.catalogue``:
the services of ``services.py``, the hooks of ``hooks.py``): nothing about a service or a hook is
said here. Authentication (when on) runs before a body is read, so an unauthenticated
caller cannot make the service parse megabytes.
"""

from __future__ import annotations

import logging
import time
import uuid
from datetime import UTC, date, datetime
from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, request
from jsonschema.exceptions import ValidationError, best_match

from cds_service import pipeline
from cds_service.cards_render.templates import ADVICE_SYSTEM, catalogue_version
from cds_service.catalogue import Catalogue
from cds_service.errors import BadRequest, NotFound
from cds_service.protocol.auth import ANONYMOUS, Caller, audience
from cds_service.protocol.body import read_json_body
from cds_service.protocol.errors import error_response
from cds_service.protocol.limits import check_resource_count
from cds_service.protocol.schemas import describe, validate, validator
from cds_service.protocol.state import AppState
from cds_service.protocol.store import IssuedCard, feedback_problems

log = logging.getLogger("myocds.protocol")

cds = Blueprint("cds", __name__)
health = Blueprint("health", __name__)


# CDS Hooks 2.0 Extensions: a namespaced member naming the rule catalogue (the advice CodeSystem
# and its version) every card's source.topic comes from.
CATALOGUE_EXTENSION = "dev.myocds.rule-catalogue"


def discovery_document(catalogue: Catalogue | None = None) -> dict[str, Any]:
    """GET /cds-services, derived from the catalogue's services; optional members omitted when
    empty."""
    version = catalogue_version()
    extension = (
        {CATALOGUE_EXTENSION: {"system": ADVICE_SYSTEM, "version": version}} if version else None
    )
    return (catalogue or Catalogue.shipped()).discovery(extension)


def state() -> AppState:
    app_state: AppState = current_app.extensions["myocds"]
    return app_state


@cds.before_request
def authenticate() -> None:
    """Every discovery, service and feedback call (not the CORS preflight, answered earlier)."""
    settings = state().settings
    g.caller = ANONYMOUS
    if settings.auth_required:
        # aud must equal the URL the client called (CDS Hooks 2.0 §Security), as configured.
        g.caller = state().authenticator.verify(
            request.headers.get("Authorization"), audience(settings, request.path)
        )


@cds.after_request
def finish_call(response: Response) -> Response:
    # Runs before any app-level after_request hook, so request logging and metrics see the
    # status and duration in g.call.
    call = g.get("call")
    if call is not None:
        call["status"] = response.status_code
        call["duration_ms"] = round((time.perf_counter() - call.pop("_started")) * 1000, 1)
    return response


@cds.get("/cds-services")
def discovery() -> Response:
    return jsonify(state().discovery)


@cds.post("/cds-services/<service_id>")
def call_service(service_id: str) -> Response:
    app_state, body = _open_call(service_id)
    settings = app_state.settings
    check_resource_count(body, settings.max_resources)
    catalogue = app_state.catalogue
    validate("request", body, catalogue.hooks)
    hook = body["hook"]
    g.call.update(hook=hook, hookInstance=body["hookInstance"])
    service = catalogue.find_service(service_id, hook)
    if service is None:
        answered = ", ".join(s.hook for s in catalogue.services if s.id == service_id)
        raise BadRequest(
            f"service {service_id} does not answer hook {hook}; it answers: {answered}",
            expression="hook",
        )
    today: date = settings.today or date.today()
    caller: Caller = g.caller
    result = pipeline.run_hook(
        service,
        body,
        settings,
        today,
        caller,
        templates=app_state.templates,
        observe=g.call,
        catalogue=catalogue,
        fhir=app_state.fhir,
    )
    _record_cards(service_id, hook, result["cards"], caller)
    return jsonify(result)


@cds.post("/cds-services/<service_id>/feedback")
def feedback(service_id: str) -> Response:
    """Each item is stored or refused on its own: 200 ``{}`` when all are stored (or were
    already), else 400 with one OperationOutcome issue per refused item and the others stored.
    Repeating the whole post is safe: a stored item is recognised and not stored twice."""
    app_state, body = _open_call(service_id, hook="feedback")
    refused = _refused_feedback_items(body)
    items = body["feedback"]
    good = [i for i in range(len(items)) if i not in refused]
    caller: Caller = g.caller
    result = app_state.store.save_feedback(
        service_id, [items[i] for i in good], datetime.now(UTC), (caller.issuer, caller.tenant)
    )
    for index in result.refused:
        refused[good[index]] = [("", "could not be stored")]
    stored = len(good) - len(result.refused)
    g.call.update(
        feedback_items=len(items),
        feedback_stored=result.stored,
        feedback_outcomes=list(result.stored_outcomes),  # the metrics' per-rule counters
    )
    if result.duplicates:
        log.info(
            "feedback for %s: %d repeated item(s) already stored", service_id, result.duplicates
        )
    if result.unknown_cards:
        # Stored anyway: another replica, or this one before a restart, may have issued it.
        log.warning(
            "feedback for %s: %d item(s) on card uuids this store has no record of",
            service_id,
            result.unknown_cards,
        )
    if not refused:
        return jsonify({})
    issues: list[dict[str, Any]] = [
        {
            "severity": "error",
            "code": "invalid",
            "diagnostics": f"feedback[{index}]{'.' + field if field else ''} {reason}",
            "expression": [f"feedback[{index}]{'.' + field if field else ''}"],
        }
        for index, problems in sorted(refused.items())
        for field, reason in problems
    ]
    issues.append({
        "severity": "information",
        "code": "informational",
        "diagnostics": f"{stored} of {len(items)} feedback item(s) stored",
    })
    response = jsonify({"resourceType": "OperationOutcome", "issue": issues})
    response.status_code = 400
    return response


def _refused_feedback_items(body: Any) -> dict[int, list[tuple[str, str]]]:
    """The problems of each item that cannot be stored, by index; a body that is not a list
    of feedback items at all is refused whole (``SchemaViolation``)."""
    errors_of: dict[int, list[ValidationError]] = {}
    for error in validator("feedback").iter_errors(body):
        path = list(error.absolute_path)
        if len(path) >= 2 and path[0] == "feedback" and isinstance(path[1], int):
            errors_of.setdefault(path[1], []).append(error)
        else:
            validate("feedback", body)  # the body itself is wrong: raises, naming the field
    per_item: dict[int, list[tuple[str, str]]] = {}
    for index, errors in errors_of.items():
        expression, reason = describe(best_match(errors))
        per_item[index] = [(expression.removeprefix(f"feedback[{index}]").lstrip("."), reason)]
    for index, item in enumerate(body["feedback"]):
        if index not in per_item:
            problems = feedback_problems(item)
            if problems:
                per_item[index] = problems
    return per_item


@health.get("/healthz")
def healthz() -> Response:
    # Liveness only: a database outage must not make an orchestrator restart every replica.
    return jsonify({"status": "ok"})


@health.get("/readyz")
def readyz() -> Response:
    """Readiness: the feedback store answers (card templates and settings were checked at
    start-up). A replica whose database is gone is taken out of the load balancer, not
    restarted; hook calls would still answer, but their cards could not be recorded."""
    state: AppState = current_app.extensions["myocds"]
    if not state.store.ping():
        return error_response(503, "transient", "the feedback database cannot be reached")
    return jsonify({"status": "ready"})


def _open_call(service_id: str, **call: Any) -> tuple[AppState, Any]:
    """Start the call's record for the request log and metrics (``g.call``), refuse an unknown
    service id, and read the JSON body within the size and depth limits."""
    g.call = {"_started": time.perf_counter(), "service": service_id, **call}
    app_state = state()
    if service_id not in app_state.catalogue.service_ids():
        raise NotFound(f"no CDS service with id {service_id!r}; see GET /cds-services")
    settings = app_state.settings
    return app_state, read_json_body(request, settings.max_body_bytes, settings.max_json_depth)


def _record_cards(
    service_id: str, hook: str, cards: list[dict[str, Any]], caller: Caller
) -> None:
    now = datetime.now(UTC)
    templates = state().templates
    issued = [
        IssuedCard(
            card_uuid=str(uuid.UUID(card["uuid"])),
            service_id=service_id,
            hook=hook,
            topic=pipeline.card_topic(card),
            indicator=card["indicator"],
            issued_at=now,
            rule_version=templates.rule_version(pipeline.card_topic(card)),
            site_issuer=caller.issuer,
            site_tenant=caller.tenant,
        )
        for card in cards
        if card.get("uuid")  # the renderer gives every card one; without it no feedback comes
    ]
    # Written behind the call (Store.issue): the clinician's advice never waits for it.
    state().store.issue(issued)
