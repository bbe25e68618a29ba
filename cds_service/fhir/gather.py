"""Gather the FHIR data of one hook call: prefetch first, then the EHR's FHIR server.

Each key of the service is taken as sent (``prefetch.accept``) or, when absent, fetched from
``fhirServer`` with ``Authorization: Bearer <fhirAuthorization.access_token>`` when a token was
given (the Sandbox sends none and uses open servers, clients.md §1.1). All absent keys are fetched
at once on the client's fetch pool (``client.py``: time, memory and page limits); then the
orders' Medication references are resolved (``medications.py``). Data that cannot be had raises
``DataUnavailable`` (412) naming the key and the reason -- never a URL (it holds the patient id)
and never the token.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from urllib.parse import urljoin

from cds_service.admission import call_arrival
from cds_service.errors import BadRequest, DataUnavailable, FhirServerRefused
from cds_service.fhir.allow import EgressPolicy
from cds_service.fhir.client import Budget, FetchFailed, FhirClient, FhirServer, SearchResult
from cds_service.fhir.data import FetchStats, FhirData
from cds_service.fhir.drafts import read_drafts, read_selections
from cds_service.fhir.medications import add_medication, resolve_medications
from cds_service.fhir.parse import count_flawed
from cds_service.fhir.prefetch import (
    KeyPlan,
    accept,
    is_safe_relative,
    render_template,
)
from cds_service.services import ServiceDeclaration
from cds_service.settings import Settings

log = logging.getLogger(__name__)

Resource = dict[str, Any]


@dataclass
class _Collected:
    by_key: dict[str, list[tuple[str | None, Resource]]] = field(default_factory=dict)
    medications: dict[str, Resource] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)

    def add(
        self, key: str, entries: Iterable[tuple[str | None, Resource]], skipped: Mapping[str, int]
    ) -> None:
        bucket = self.by_key.setdefault(key, [])
        for full_url, resource in entries:
            if resource.get("resourceType") == "Medication":
                add_medication(self.medications, resource, full_url)
            else:
                bucket.append((full_url, resource))
        for resource_type, n in skipped.items():
            self.skipped[resource_type] = self.skipped.get(resource_type, 0) + n


def gather(
    service: ServiceDeclaration,
    body: Mapping[str, Any],
    settings: Settings,
    *,
    client: FhirClient | None = None,
    egress: EgressPolicy | None = None,
    deadline: float | None = None,
    drafts_field: str | None = "draftOrders",
    selections_field: str | None = "selections",
) -> FhirData:
    """Everything ``service`` needs for this hook call, or ``DataUnavailable`` / ``Unprocessable``.

    ``client`` is the application's (``create_app``); without one (the CLI, tests) a client is
    opened for this call alone and closed after it. ``egress`` says where the call may fetch
    from; without one, ``MYOCDS_FHIR_ALLOW`` only, and nowhere else when authentication is on.
    ``deadline`` is a ``time.monotonic()`` value when the caller started the clock itself;
    otherwise the call has ``settings.hook_deadline_seconds`` from its arrival.
    ``drafts_field`` and ``selections_field`` are the context fields of the call's hook that hold
    the drafted orders and the selected ones (its declaration's; the order hooks' by default).
    """
    # Served, the clock started when the request arrived: time queued for a thread counts.
    started = call_arrival() or time.monotonic()
    budget = Budget.for_call(
        settings, deadline if deadline is not None else started + settings.hook_deadline_seconds
    )
    if egress is None:
        egress = EgressPolicy(settings.fhir_allow, () if settings.auth_required else None)
    context = body.get("context")
    context = context if isinstance(context, dict) else {}
    prefetch = body.get("prefetch")
    if prefetch is None:
        prefetch = {}
    if not isinstance(prefetch, dict):
        raise BadRequest("prefetch must be an object", expression="prefetch")

    collected = _Collected()
    drafts = read_drafts(context, drafts_field)
    for full_url, medication in drafts.medications:
        add_medication(collected.medications, medication, full_url)
    missing: list[str] = []
    continuations: dict[str, str] = {}  # key -> next link of a paged prefetch Bundle
    for key, template in service.prefetch.items():
        if key not in prefetch:
            missing.append(key)
            continue
        if prefetch[key] is None:
            continue  # "no data": not fetched (CDS Hooks 2.0 §Prefetch)
        accepted = accept(key, template, prefetch[key], context)
        if accepted.failed:
            missing.append(key)
            continue
        collected.add(key, accepted.entries, accepted.skipped)
        if accepted.next_url is not None:
            continuations[key] = accepted.next_url

    own_client = client is None
    opened: list[FhirServer] = []

    def server(keys: list[str] | None) -> FhirServer | None:
        """The conversation with fhirServer, opened once; ``keys`` None: medications, which do
        without it (``None``) when it cannot be had."""
        nonlocal client
        if opened:
            return opened[0]
        if client is None:
            client = FhirClient.from_settings(settings)
        try:
            opened.append(_open(client, body, egress, settings, keys or ["medications"]))
        except DataUnavailable:
            if keys is None:
                return None
            raise
        return opened[0]

    try:
        keys = _Fetched()
        if missing or continuations:
            fhir = server(missing or list(continuations))
            assert fhir is not None
            keys = _fetch_keys(service, context, missing, continuations, fhir, budget, settings)
            for key in service.prefetch:
                if key in keys.results:
                    collected.add(key, keys.results[key].entries, keys.results[key].skipped)
        resources = _ordered_resources(service.prefetch, collected)
        fhir_server = body.get("fhirServer")
        base = fhir_server.strip().rstrip("/") if isinstance(fhir_server, str) else None
        phase_started = time.monotonic()
        resolved = resolve_medications(
            (*drafts.orders, *resources), collected.medications, base, lambda: server(None), budget
        )
        medication_ms = (time.monotonic() - phase_started) * 1000 if resolved.fetches else 0.0
    finally:
        if own_client and client is not None:
            client.close()
    stats = FetchStats(
        fetches=keys.fetches + resolved.fetches,
        fetch_ms=round(keys.fetch_ms + medication_ms, 1),
        keys_fetched=tuple(k for k in service.prefetch if k in missing),
        truncated=keys.truncated,
        medications_fetched=resolved.found,
        medications_unresolved=resolved.unresolved,
    )
    medications = collected.medications
    return FhirData(
        resources=resources,
        drafts=tuple(drafts.orders),
        selections=read_selections(context, selections_field),
        medications=MappingProxyType(dict(medications)),
        skipped=MappingProxyType(dict(collected.skipped)),
        flawed=MappingProxyType(count_flawed(_distinct((*resources, *medications.values())))),
        flawed_drafts=drafts.flawed,
        stats=stats,
    )


@dataclass(frozen=True)
class _Fetched:
    results: Mapping[str, SearchResult] = field(default_factory=dict)
    fetches: int = 0
    fetch_ms: float = 0.0
    truncated: tuple[str, ...] = ()


def _fetch_keys(
    service: ServiceDeclaration,
    context: Mapping[str, Any],
    missing: list[str],
    continuations: Mapping[str, str],
    fhir: FhirServer,
    budget: Budget,
    settings: Settings,
) -> _Fetched:
    """Fetch the absent keys and the rest of the paged prefetch Bundles, all at once."""
    tasks: dict[str, Callable[[], SearchResult]] = {}
    for key in missing:
        rendered = render_template(service.prefetch[key], context)
        if rendered is None or not is_safe_relative(rendered):
            raise _fail(key, "its template cannot be filled from the hook context")
        tasks[key] = _key_fetch(
            key, fhir.url(rendered), KeyPlan.of(rendered), 0, fhir, budget, settings
        )
    for key, next_url in continuations.items():
        absolute = urljoin(fhir.base + "/", next_url)
        tasks[key] = _key_fetch(key, absolute, None, 1, fhir, budget, settings)
    started = time.monotonic()
    results, pending = fhir.client.run(tasks, budget)
    elapsed = time.monotonic() - started
    if pending:
        keys = ", ".join(f"'{k}'" for k in pending)
        log.warning("FHIR fetch passed the hook deadline: %s", keys)
        raise DataUnavailable(f"prefetch {keys} could not be fetched before the hook deadline")
    return _Fetched(
        results=results,
        fetches=sum(r.fetches for r in results.values()),
        fetch_ms=elapsed * 1000,
        truncated=tuple(k for k in service.prefetch if k in results and results[k].truncated),
    )


def _key_fetch(
    key: str,
    url: str,
    plan: KeyPlan | None,
    pages_done: int,
    fhir: FhirServer,
    budget: Budget,
    settings: Settings,
) -> Callable[[], SearchResult]:
    """One key's fetch, run on a fetch thread: a read (``plan`` with an id) or a search whose
    first ``pages_done`` pages were had; a failure is a 412 naming the key."""

    def fetch() -> SearchResult:
        try:
            if plan is not None and plan.read_id is not None:
                resource = fhir.read(url, plan.resource_type, plan.read_id, budget)
                return SearchResult(entries=[(None, resource)] if resource else [], fetches=1)
            result = fhir.search(
                url,
                budget,
                page_cap=settings.fhir_page_cap,
                max_resources=settings.max_resources,
                pages_done=pages_done,
            )
        except FetchFailed as exc:
            raise _fail(key, str(exc)) from None
        if result.truncated:
            log.warning("prefetch key %s: stopped at the page cap %d", key, settings.fhir_page_cap)
        return result

    return fetch


def _open(
    client: FhirClient,
    body: Mapping[str, Any],
    egress: EgressPolicy,
    settings: Settings,
    keys: list[str],
) -> FhirServer:
    names = ", ".join(f"'{k}'" for k in keys)
    fhir_server = body.get("fhirServer")
    if not isinstance(fhir_server, str) or not fhir_server.strip():
        log.warning("FHIR data unavailable: no fhirServer for %s", names)
        raise DataUnavailable(
            f"prefetch {names} not provided and the request has no fhirServer to fetch from",
            expression="fhirServer",
        )
    try:
        return client.open(fhir_server, _access_token(body), egress, settings)
    except FhirServerRefused as exc:
        log.warning("FHIR data unavailable: fhirServer refused for %s: %s", names, exc.message)
        raise FhirServerRefused(
            f"prefetch {names} not provided and fhirServer may not be called: {exc.message}",
            expression="fhirServer",
        ) from None


def _access_token(body: Mapping[str, Any]) -> str | None:
    authorization = body.get("fhirAuthorization")
    if not isinstance(authorization, dict):
        return None
    token = authorization.get("access_token")
    return token if isinstance(token, str) and token else None


def _fail(key: str, reason: str) -> DataUnavailable:
    log.warning("FHIR data unavailable: prefetch key %s: %s", key, reason)
    return DataUnavailable(
        f"prefetch key '{key}' could not be fetched: {reason}", expression=f"prefetch.{key}"
    )


def _ordered_resources(templates: Mapping[str, str], collected: _Collected) -> tuple[Resource, ...]:
    """Resources in the service's key order, each (resourceType, id) once."""
    seen: set[tuple[str, str]] = set()
    out: list[Resource] = []
    for key in templates:
        for _, resource in collected.by_key.get(key, ()):
            identity = resource.get("id")
            if isinstance(identity, str):
                marker = (resource["resourceType"], identity)
                if marker in seen:
                    continue
                seen.add(marker)
            out.append(resource)
    return tuple(out)


def _distinct(resources: Iterable[Resource]) -> list[Resource]:
    """Each resource object once (a Medication is kept under several keys)."""
    return list({id(r): r for r in resources}.values())
