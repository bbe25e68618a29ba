"""Gather the FHIR data of one hook call: prefetch first, then the EHR's FHIR server.

CDS Hooks 2.0 §Prefetch (cds-hooks-2.0.md §3.3-3.5), per prefetch key of the service:

- present, a resource or Bundle: used as sent (a Bundle's ``next`` pages are fetched);
- present, an OperationOutcome (or a Bundle carrying one): the client could not get it, so it is
  treated as absent;
- ``null``: "no data", not fetched;
- absent: the template is rendered with the context and fetched from ``fhirServer`` with
  ``Authorization: Bearer <fhirAuthorization.access_token>`` when a token was given (the Sandbox
  sends none and uses open servers, clients.md §1.1).

All absent keys are fetched at once; each search follows ``next`` links (on the same fhirServer
only) up to ``fhir_page_cap`` pages. Every request has ``fhir_timeout_seconds`` and the whole call
``hook_deadline_seconds``: bodies are streamed and the deadline is checked while reading, so a
server that trickles bytes cannot hold the call. Data that cannot be had raises
``DataUnavailable`` (412) naming the key and the reason -- never a URL (it holds the patient id)
and never the token.

Medication references (``medicationReference``) of the drafts and the gathered orders are looked
up among the Medications that arrived (draftOrders, prefetch, fetched pages) and the rest read from
``fhirServer``; a Medication that cannot be had is left out, not fatal: the record then reports the
medication as unidentified.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from http.cookiejar import DefaultCookiePolicy
from types import MappingProxyType
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

import requests
import urllib3.exceptions

from cds_service.errors import BadRequest, DataUnavailable, FhirServerRefused, Unprocessable
from cds_service.fhir.allow import check_fhir_server, has_dot_segment
from cds_service.fhir.bulkhead import call_arrival, waiting_on_fhir
from cds_service.fhir.data import FetchStats, FhirData
from cds_service.fhir.elements import FHIR_ID, as_dict, as_text
from cds_service.fhir.parse import (
    InvalidResource,
    count_flawed,
    is_valid_r4,
    read_resource,
    unpack_bundle,
)
from cds_service.fhir.pinned import PinnedAdapter, PinRefused
from cds_service.fhir.prefetch import render_template
from cds_service.protocol.auth import ANONYMOUS, Caller
from cds_service.services import ServiceDeclaration
from cds_service.settings import Settings

log = logging.getLogger(__name__)

Resource = dict[str, Any]

# One FHIR response body at most (a page of a few thousand resources is well below it); a larger
# body is refused rather than buffered.
MAX_RESPONSE_BYTES = 32 * 1024 * 1024
_READ_CHUNK = 64 * 1024
_OVER_BUDGET = "fhirServer sent more data than one call may hold (MYOCDS_FHIR_CALL_BYTES)"
# A socket wait cut to the time left ends a few milliseconds around the deadline.
_DEADLINE_SLACK = 0.05
_ACCEPT = "application/fhir+json, application/json;q=0.9"
# Order-like resources whose medication[x] may be a reference to a Medication.
_MEDICATION_USERS = frozenset(
    {"MedicationRequest", "MedicationStatement", "MedicationAdministration", "MedicationDispense"}
)
_MEDICATION_REF = re.compile(rf"^Medication/({FHIR_ID})(?:/_history/[^/]+)?$")
# The Sandbox's Rx View selects its draft by its own type: "MedicationOrder/order-123" with a DSTU2
# server (clients.md §1.1); the draft itself arrives converted to a MedicationRequest, same id.
_DSTU2_SELECTION = re.compile(r"(^|/)MedicationOrder/(?=[^/]+/?$)")


def _r4_selection(selection: str) -> str:
    """A selection naming a DSTU2 MedicationOrder names the MedicationRequest it became."""
    return _DSTU2_SELECTION.sub(r"\1MedicationRequest/", selection)


# ---------------------------------------------------------------------------------------------
# Transport: one pooled session and one worker pool per process (connection pools are the one
# kind of global state conventions.md allows).


@dataclass
class _Transport:
    session: requests.Session
    executor: ThreadPoolExecutor


_transports: dict[int, _Transport] = {}
_transports_lock = threading.Lock()


def _transport(settings: Settings) -> _Transport:
    size = settings.fhir_pool_size
    with _transports_lock:
        transport = _transports.get(size)
        if transport is None:
            session = requests.Session()
            # No proxies or .netrc credentials from the environment: a netrc entry would add an
            # Authorization header the client never gave us.
            session.trust_env = False
            # Cookies set by one EHR's server must never ride along on another call.
            session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
            # Connections dial only addresses the allow-list checked (DNS rebinding, pinned.py).
            adapter = PinnedAdapter(
                pool_connections=max(10, size), pool_maxsize=size, max_retries=0
            )
            session.mount("https://", adapter)
            session.mount("http://", adapter)
            executor = ThreadPoolExecutor(max_workers=size, thread_name_prefix="fhir-fetch")
            transport = _Transport(session=session, executor=executor)
            _transports[size] = transport
        return transport


class _FetchFailed(Exception):
    """Why one request failed, in words safe to show the client (no URL, no token)."""


@dataclass(frozen=True)
class _Budget:
    """The time and memory one hook call may spend on fhirServer, shared by all its fetches."""

    deadline: float  # time.monotonic() value
    request_timeout: float
    # Bytes of response bodies the call may hold, summed over every key, page and Medication read
    # (MYOCDS_FHIR_CALL_BYTES): counted while streaming, so a server sending large pages on
    # several keys at once cannot take more than this much of a worker's memory.
    byte_limit: int = MAX_RESPONSE_BYTES
    # Set when the call has already failed: the other keys' fetches stop at their next request or
    # chunk instead of paging on for nothing.
    abandoned: threading.Event = field(default_factory=threading.Event)
    _spent: list[int] = field(default_factory=lambda: [0])
    _spent_lock: threading.Lock = field(default_factory=threading.Lock)

    def bytes_left(self) -> int:
        return self.byte_limit - self._spent[0]

    def spend(self, size: int) -> None:
        """Count ``size`` more bytes held; past the call's budget the fetch fails."""
        with self._spent_lock:
            self._spent[0] += size
            over = self._spent[0] > self.byte_limit
        if over:
            raise _FetchFailed(_OVER_BUDGET)

    def remaining(self) -> float:
        if self.abandoned.is_set():
            return 0.0
        return self.deadline - time.monotonic()

    def timeout(self) -> float:
        remaining = self.remaining()
        if remaining <= 0:
            raise _FetchFailed("the hook deadline passed")
        return min(self.request_timeout, remaining)


@dataclass(frozen=True)
class _Server:
    base: str  # fhirServer without trailing slash
    headers: Mapping[str, str]
    session: requests.Session

    def url(self, relative: str) -> str:
        return f"{self.base}/{relative}"

    def owns(self, url: str) -> bool:
        """Is ``url`` on this fhirServer (same scheme, host, port and base path)?"""
        want, have = urlsplit(self.base), urlsplit(url)
        if (have.scheme.lower(), have.netloc.lower()) != (want.scheme.lower(), want.netloc.lower()):
            return False
        if has_dot_segment(have.path):
            return False
        base_path = want.path.rstrip("/")
        return have.path == base_path or have.path.startswith(base_path + "/")

    def get(self, url: str, budget: _Budget) -> tuple[int, Any]:
        """GET ``url``; returns (status, parsed JSON body or None when the status is not 200)."""
        timeout = budget.timeout()
        try:
            response = self.session.get(
                url,
                headers=dict(self.headers),
                timeout=(timeout, timeout),
                stream=True,
                allow_redirects=False,
            )
        except requests.Timeout:
            raise _FetchFailed("fhirServer did not answer in time") from None
        except requests.RequestException as exc:
            refused = _pin_refusal(exc)
            if refused is not None:
                raise _FetchFailed(f"fhirServer may not be called: {refused}") from None
            raise _FetchFailed("fhirServer could not be reached") from None
        try:
            if response.status_code != 200:
                return response.status_code, None
            length = response.headers.get("Content-Length")
            if length and length.isdigit() and int(length) > MAX_RESPONSE_BYTES:
                raise _FetchFailed("fhirServer sent a response larger than the limit")
            if length and length.isdigit() and int(length) > budget.bytes_left():
                raise _FetchFailed(_OVER_BUDGET)
            body = _read_body(response, budget)
        finally:
            response.close()
        try:
            return 200, requests.models.complexjson.loads(body)
        except ValueError:
            body.clear()  # see _read_body
            raise _FetchFailed("fhirServer sent a body that is not JSON") from None


def _pin_refusal(exc: BaseException) -> str | None:
    """The reason when a new connection was refused because the host now resolves elsewhere."""
    seen: set[int] = set()
    todo: list[Any] = [exc]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, PinRefused):
            return current.reason
        if isinstance(current, BaseException):
            todo.extend((*current.args, current.__cause__, current.__context__))
            todo.append(getattr(current, "reason", None))
    return None


def _read_body(response: requests.Response, budget: _Budget) -> bytearray:
    """Read the streamed body chunk by chunk, never past the deadline, the size cap or the call's
    memory budget. One growing buffer: no second copy when the chunks are joined."""
    body = bytearray()
    try:
        _read_into(body, response.raw, budget)
    except _FetchFailed:
        # The exception's traceback keeps this frame, and so the buffer, alive until the cyclic
        # garbage collector next runs: a worker kept a failed call's whole memory budget for
        # minutes. Emptied now, its memory goes back at once.
        body.clear()
        raise
    return body


def _read_into(body: bytearray, raw: Any, budget: _Budget) -> None:
    size = 0
    while True:
        remaining = budget.remaining()
        if remaining <= 0:
            raise _FetchFailed("fhirServer did not finish its response before the hook deadline")
        _limit_socket_wait(raw, min(remaining, budget.request_timeout))
        try:
            # read1 returns what one socket read gives: a slow trickle still comes back here
            # often enough to check the deadline, where read(n) would wait for all n bytes.
            chunk = raw.read1(_READ_CHUNK)
        except (urllib3.exceptions.ReadTimeoutError, TimeoutError):
            if budget.remaining() <= _DEADLINE_SLACK:  # the wait was cut to the deadline
                raise _FetchFailed(
                    "fhirServer did not finish its response before the hook deadline"
                ) from None
            raise _FetchFailed("fhirServer did not finish its response in time") from None
        except (urllib3.exceptions.HTTPError, OSError):
            raise _FetchFailed("fhirServer sent an incomplete response") from None
        if not chunk:
            return
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            raise _FetchFailed("fhirServer sent a response larger than the limit")
        budget.spend(len(chunk))
        body += chunk


def _limit_socket_wait(raw: Any, seconds: float) -> None:
    """Let one socket read wait no longer than ``seconds`` (the time left before the deadline)."""
    connection = getattr(raw, "_connection", None)
    sock = getattr(connection, "sock", None)
    if sock is not None:
        try:
            sock.settimeout(max(seconds, 0.001))
        except OSError:
            pass  # socket already closed: the read that follows reports it


# ---------------------------------------------------------------------------------------------
# Per-key plans and results


@dataclass(frozen=True)
class _Template:
    key: str
    resource_type: str
    read_id: str | None  # the id for a read template ("Patient/{{...}}"), None for a search

    @classmethod
    def of(cls, key: str, rendered_or_template: str) -> _Template:
        path = urlsplit(rendered_or_template).path.strip("/")
        segments = path.split("/")
        query = "?" in rendered_or_template
        is_read = len(segments) == 2 and segments[1] != "_search" and not query
        return cls(key, segments[0], unquote(segments[1]) if is_read else None)


@dataclass
class _KeyResult:
    entries: list[tuple[str | None, Resource]] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    fetches: int = 0
    truncated: bool = False


def _fail(key: str, reason: str) -> DataUnavailable:
    log.warning("FHIR data unavailable: prefetch key %s: %s", key, reason)
    return DataUnavailable(
        f"prefetch key '{key}' could not be fetched: {reason}", expression=f"prefetch.{key}"
    )


def _unprocessable(key: str, reason: str) -> Unprocessable:
    return Unprocessable(f"prefetch key '{key}': {reason}", expression=f"prefetch.{key}")


def _add_counts(into: dict[str, int], counts: Mapping[str, int]) -> None:
    for resource_type, n in counts.items():
        into[resource_type] = into.get(resource_type, 0) + n


def _next_link(bundle: Resource) -> str | None:
    links = bundle.get("link")
    for link in links if isinstance(links, list) else ():
        if isinstance(link, dict) and link.get("relation") == "next":
            url = link.get("url")
            if isinstance(url, str) and url:
                return url
    return None


def _has_outcome(value: Any) -> bool:
    """An OperationOutcome, or a Bundle carrying one: the client's way of saying it failed."""
    if not isinstance(value, dict):
        return False
    if value.get("resourceType") == "OperationOutcome":
        return True
    if value.get("resourceType") != "Bundle" or not isinstance(value.get("entry"), list):
        return False
    return any(
        isinstance(e, dict)
        and isinstance(e.get("resource"), dict)
        and e["resource"].get("resourceType") == "OperationOutcome"
        for e in value["entry"]
    )


# ---------------------------------------------------------------------------------------------
# Fetching one key


def _fetch_search(
    key: str, first_url: str, server: _Server, budget: _Budget, settings: Settings, pages_done: int
) -> _KeyResult:
    """Follow a search and its ``next`` links; ``pages_done`` pages were already had."""
    result = _KeyResult()
    url: str | None = first_url
    pages = pages_done
    while url is not None:
        if pages >= settings.fhir_page_cap:
            result.truncated = True
            log.warning("prefetch key %s: stopped at the page cap %d", key, settings.fhir_page_cap)
            break
        if not server.owns(url):
            raise _fail(key, "a next link points outside fhirServer; it is not followed")
        status, body = server.get(url, budget)
        result.fetches += 1
        pages += 1
        _check_status(key, status)
        if not isinstance(body, dict) or body.get("resourceType") != "Bundle":
            raise _fail(key, f"fhirServer sent {_kind(body)} where a search Bundle was expected")
        try:
            unpacked = unpack_bundle(body)
        except InvalidResource as exc:
            raise _fail(key, f"fhirServer sent a malformed Bundle ({exc})") from None
        result.entries.extend(unpacked.entries)
        _add_counts(result.skipped, unpacked.skipped)
        if len(result.entries) > settings.max_resources:
            raise _fail(key, f"fhirServer sent more than {settings.max_resources} resources")
        next_url = _next_link(body)
        url = urljoin(url, next_url) if next_url else None
    return result


def _fetch_read(
    key: str, template: _Template, url: str, server: _Server, budget: _Budget
) -> _KeyResult:
    result = _KeyResult(fetches=1)
    status, body = server.get(url, budget)
    if status in (404, 410):
        return result  # the resource does not exist: "no data", as a null prefetch value says
    _check_status(key, status)
    if not isinstance(body, dict) or body.get("resourceType") != template.resource_type:
        expected = template.resource_type
        raise _fail(key, f"fhirServer sent {_kind(body)} where a {expected} was expected")
    resource = read_resource(body)  # a dict with its resourceType: readable
    if resource.get("id") not in (None, template.read_id):
        raise _fail(key, "fhirServer sent a different resource than the one read")
    result.entries.append((None, resource))
    return result


def _check_status(key: str, status: int) -> None:
    if status == 200:
        return
    if status in (401, 403):
        raise _fail(key, f"fhirServer refused access (HTTP {status})")
    if 300 <= status < 400:
        raise _fail(key, f"fhirServer answered with a redirect (HTTP {status}), not followed")
    raise _fail(key, f"fhirServer answered HTTP {status}")


def _kind(body: Any) -> str:
    if isinstance(body, dict) and isinstance(body.get("resourceType"), str):
        resource_type = body["resourceType"]
        return f"an {resource_type}" if resource_type[0] in "AEIOU" else f"a {resource_type}"
    return "JSON that is not a FHIR resource"


def _guarded(fn: Any, key: str, *args: Any) -> _KeyResult:
    """Run one key's fetch in a worker, turning transport failures into a named 412."""
    try:
        result: _KeyResult = fn(*args)
    except _FetchFailed as exc:
        raise _fail(key, str(exc)) from None
    return result


def _run_parallel(
    tasks: Mapping[str, tuple[Any, ...]], transport: _Transport, budget: _Budget
) -> dict[str, _KeyResult]:
    """Run ``key -> (fn, *args)`` in the worker pool; the first failure or the deadline ends it."""
    futures: dict[Future[_KeyResult], str] = {
        transport.executor.submit(_guarded, fn, key, *args): key
        for key, (fn, *args) in tasks.items()
    }
    with waiting_on_fhir():  # the call's work slot serves other calls meanwhile (bulkhead.py)
        done, pending = wait(
            futures, timeout=max(budget.remaining(), 0), return_when=FIRST_EXCEPTION
        )
    failed = [f for f in done if f.exception() is not None]
    if failed or pending:
        budget.abandoned.set()  # running fetches stop at their next request or chunk
        for future in pending:
            future.cancel()  # queued work never starts
    if failed:
        # Report the first failing key in the service's order, so the message is stable.
        first = min(failed, key=lambda f: list(tasks).index(futures[f]))
        exc = first.exception()
        assert exc is not None
        raise exc
    if pending:
        keys = ", ".join(f"'{k}'" for k in tasks if k in {futures[f] for f in pending})
        log.warning("FHIR fetch passed the hook deadline: %s", keys)
        raise DataUnavailable(f"prefetch {keys} could not be fetched before the hook deadline")
    return {futures[f]: f.result() for f in done}


# ---------------------------------------------------------------------------------------------
# The entry point


@dataclass
class _Collected:
    by_key: dict[str, list[tuple[str | None, Resource]]] = field(default_factory=dict)
    medications: dict[str, Resource] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    invalid_drafts: set[tuple[str, str | None]] = field(default_factory=set)

    def add(self, key: str, entries: Iterable[tuple[str | None, Resource]]) -> None:
        bucket = self.by_key.setdefault(key, [])
        for full_url, resource in entries:
            if resource.get("resourceType") == "Medication":
                self.add_medication(resource, full_url)
            else:
                bucket.append((full_url, resource))

    def add_medication(self, medication: Resource, *keys: str | None) -> None:
        if as_text(medication.get("id")):
            self.medications.setdefault(f"Medication/{medication['id']}", medication)
        for k in keys:
            if k:
                self.medications.setdefault(k, medication)


def gather(
    service: ServiceDeclaration,
    body: Mapping[str, Any],
    settings: Settings,
    caller: Caller = ANONYMOUS,
    *,
    deadline: float | None = None,
) -> FhirData:
    """Everything ``service`` needs for this hook call, or ``DataUnavailable`` / ``Unprocessable``.

    ``deadline`` is a ``time.monotonic()`` value when the caller started the clock itself;
    otherwise the call has ``settings.hook_deadline_seconds`` from now.
    """
    # Served, the clock started when the request arrived: time queued for a thread counts.
    started = call_arrival() or time.monotonic()
    budget = _Budget(
        deadline=deadline if deadline is not None else started + settings.hook_deadline_seconds,
        request_timeout=settings.fhir_timeout_seconds,
        byte_limit=settings.fhir_call_bytes,
    )
    context = body.get("context")
    context = context if isinstance(context, dict) else {}
    prefetch = body.get("prefetch")
    if prefetch is None:
        prefetch = {}
    if not isinstance(prefetch, dict):
        raise BadRequest("prefetch must be an object", expression="prefetch")

    collected = _Collected()
    drafts = _parse_drafts(context, collected)
    selections = tuple(
        _r4_selection(s) for s in context.get("selections") or () if isinstance(s, str)
    )

    tasks: dict[str, tuple[Any, ...]] = {}
    server: _Server | None = None
    missing: list[str] = []
    continuations: dict[str, str] = {}  # key -> next link of a paged prefetch Bundle
    for key, template in service.prefetch.items():
        if key not in prefetch or _has_outcome(prefetch[key]):
            missing.append(key)
            continue
        value = prefetch[key]
        if value is None:
            continue  # "no data": not fetched (CDS Hooks 2.0 §Prefetch)
        next_url = _accept_prefetch(key, template, value, context, collected)
        if next_url is not None:
            continuations[key] = next_url

    fetches = 0
    fetch_seconds = 0.0
    truncated: list[str] = []
    if missing or continuations:
        transport = _transport(settings)
        server = _server_for(body, settings, caller, missing or list(continuations), transport)
        for key in missing:
            rendered = render_template(service.prefetch[key], context)
            if rendered is None or not _is_safe_relative(rendered):
                raise _fail(key, "its template cannot be filled from the hook context")
            plan = _Template.of(key, rendered)
            if plan.read_id is not None:
                tasks[key] = (_fetch_read, key, plan, server.url(rendered), server, budget)
            else:
                tasks[key] = (
                    _fetch_search,
                    key,
                    server.url(rendered),
                    server,
                    budget,
                    settings,
                    0,
                )
        for key, next_url in continuations.items():
            absolute = urljoin(server.base + "/", next_url)
            tasks[key] = (_fetch_search, key, absolute, server, budget, settings, 1)
        phase_started = time.monotonic()
        results = _run_parallel(tasks, transport, budget)
        fetch_seconds += time.monotonic() - phase_started
        for key in service.prefetch:
            if key in results:
                result = results[key]
                collected.add(key, result.entries)
                _add_counts(collected.skipped, result.skipped)
                fetches += result.fetches
                if result.truncated:
                    truncated.append(key)

    resources = _ordered_resources(service.prefetch, collected)
    phase_started = time.monotonic()
    medication_stats = _resolve_medications(
        drafts, resources, collected, body, settings, caller, budget, server
    )
    if medication_stats[0]:
        fetches += medication_stats[0]
        fetch_seconds += time.monotonic() - phase_started
    stats = FetchStats(
        fetches=fetches,
        fetch_ms=round(fetch_seconds * 1000, 1),
        keys_fetched=tuple(k for k in service.prefetch if k in missing),
        truncated=tuple(truncated),
        medications_fetched=medication_stats[1],
        medications_unresolved=medication_stats[2],
    )
    return FhirData(
        resources=resources,
        drafts=tuple(drafts),
        selections=selections,
        medications=MappingProxyType(dict(collected.medications)),
        skipped=MappingProxyType(dict(collected.skipped)),
        flawed=MappingProxyType(
            count_flawed(_distinct((*resources, *collected.medications.values())))
        ),
        invalid_drafts=frozenset(collected.invalid_drafts),
        stats=stats,
    )


def _distinct(resources: Iterable[Resource]) -> list[Resource]:
    """Each resource object once (a Medication is kept under several keys)."""
    return list({id(r): r for r in resources}.values())


def _server_for(
    body: Mapping[str, Any],
    settings: Settings,
    caller: Caller,
    keys: list[str],
    transport: _Transport,
) -> _Server:
    names = ", ".join(f"'{k}'" for k in keys)
    fhir_server = body.get("fhirServer")
    if not isinstance(fhir_server, str) or not fhir_server.strip():
        log.warning("FHIR data unavailable: no fhirServer for %s", names)
        raise DataUnavailable(
            f"prefetch {names} not provided and the request has no fhirServer to fetch from",
            expression="fhirServer",
        )
    try:
        check_fhir_server(fhir_server, settings, caller)
    except FhirServerRefused as exc:
        log.warning("FHIR data unavailable: fhirServer refused for %s: %s", names, exc.message)
        raise FhirServerRefused(
            f"prefetch {names} not provided and fhirServer may not be called: {exc.message}",
            expression="fhirServer",
        ) from None
    headers = {"Accept": _ACCEPT}
    token = _access_token(body)
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return _Server(base=fhir_server.strip().rstrip("/"), headers=headers, session=transport.session)


def _access_token(body: Mapping[str, Any]) -> str | None:
    authorization = body.get("fhirAuthorization")
    if not isinstance(authorization, dict):
        return None
    token = authorization.get("access_token")
    return token if isinstance(token, str) and token else None


def _is_safe_relative(rendered: str) -> bool:
    """A rendered template stays a relative request under fhirServer (no scheme, no dot segment)."""
    parts = urlsplit(rendered)
    if parts.scheme or parts.netloc or rendered.startswith("/"):
        return False
    return all(unquote(seg) not in (".", "..") for seg in parts.path.split("/"))


def _accept_prefetch(
    key: str, template: str, value: Any, context: Mapping[str, Any], collected: _Collected
) -> str | None:
    """Parse a prefetch value sent by the client; returns its next link when it is paged."""
    if not isinstance(value, dict) or not isinstance(value.get("resourceType"), str):
        raise _unprocessable(key, "the value is not a FHIR resource")
    rendered = render_template(template, context)
    plan = _Template.of(key, rendered if rendered is not None else template)
    if value["resourceType"] == "Bundle":
        try:
            unpacked = unpack_bundle(value)
        except InvalidResource as exc:
            raise _unprocessable(key, f"malformed Bundle ({exc})") from None
        collected.add(key, unpacked.entries)
        _add_counts(collected.skipped, unpacked.skipped)
        return _next_link(value)
    if value["resourceType"] != plan.resource_type:
        raise _unprocessable(
            key, f"expected a {plan.resource_type} or a Bundle, got a {value['resourceType']}"
        )
    resource = read_resource(value)  # a dict with its resourceType: readable
    if (
        plan.read_id is not None
        and rendered is not None
        and resource.get("id")
        not in (
            None,
            plan.read_id,
        )
    ):
        raise _unprocessable(key, "the resource is not the one the template reads")
    collected.add(key, [(None, resource)])
    return None


def _parse_drafts(context: Mapping[str, Any], collected: _Collected) -> list[Resource]:
    draft_orders = context.get("draftOrders")
    if draft_orders is None:
        return []
    if not isinstance(draft_orders, dict) or draft_orders.get("resourceType") != "Bundle":
        raise Unprocessable("context.draftOrders is not a Bundle", expression="context.draftOrders")
    entries = draft_orders.get("entry") or []
    if not isinstance(entries, list):
        raise Unprocessable(
            "context.draftOrders.entry is not an array", expression="context.draftOrders.entry"
        )
    drafts: list[Resource] = []
    for index, entry in enumerate(entries):
        where = f"context.draftOrders.entry[{index}]"
        resource = entry.get("resource") if isinstance(entry, dict) else None
        try:
            parsed = read_resource(resource, draft=True)
        except InvalidResource as exc:
            raise Unprocessable(
                f"{where} is not a FHIR resource ({exc})", expression=where
            ) from None
        full_url = entry.get("fullUrl") if isinstance(entry.get("fullUrl"), str) else None
        if parsed["resourceType"] == "Medication":
            collected.add_medication(parsed, full_url)
            continue
        # rules.md r2: a draft is unfinished by nature and read as far as it goes; the model only
        # says whether it may be re-emitted (an update suggestion) as it stands.
        if not is_valid_r4(parsed):
            identity = parsed.get("id")
            collected.invalid_drafts.add(
                (parsed["resourceType"], identity if isinstance(identity, str) else None)
            )
        drafts.append(parsed)
    return drafts


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


# ---------------------------------------------------------------------------------------------
# Medication references


def _resolve_medications(
    drafts: list[Resource],
    resources: tuple[Resource, ...],
    collected: _Collected,
    body: Mapping[str, Any],
    settings: Settings,
    caller: Caller,
    budget: _Budget,
    server: _Server | None,
) -> tuple[int, int, int]:
    """Resolve every ``Medication`` reference not already at hand; (fetches, found, unresolved)."""
    wanted: dict[str, list[str]] = {}  # "Medication/<id>" to read -> literal references to it
    unresolved = 0
    fhir_server = body.get("fhirServer")
    base = fhir_server.strip().rstrip("/") if isinstance(fhir_server, str) else None
    for resource in (*drafts, *resources):
        if resource.get("resourceType") not in _MEDICATION_USERS:
            continue
        reference = as_dict(resource.get("medicationReference")).get("reference")
        if not isinstance(reference, str) or reference.startswith("#"):
            continue  # contained: resolved by the record builder against the resource
        if reference in collected.medications:
            continue
        target = _medication_target(reference, base)
        if target is not None and target in collected.medications:
            collected.medications[reference] = collected.medications[target]
            continue
        if target is None:
            unresolved += 1  # a urn:uuid not sent, or a Medication on another server
            continue
        wanted.setdefault(target, []).append(reference)
    if not wanted:
        return 0, 0, unresolved

    transport = _transport(settings)
    if server is None:
        try:
            server = _server_for(body, settings, caller, ["medications"], transport)
        except DataUnavailable:  # no fhirServer, or not allowed: the references stay unresolved
            return 0, 0, unresolved + sum(len(refs) for refs in wanted.values())
    futures = {
        transport.executor.submit(_read_medication, server.url(target), server, budget): target
        for target in wanted
    }
    with waiting_on_fhir():  # as in _run_parallel: the work slot serves other calls meanwhile
        done, pending = wait(futures, timeout=max(budget.remaining(), 0))
    for future in pending:
        future.cancel()
    found = 0
    fetches = 0
    for future in done:
        target = futures[future]
        medication, tried = future.result()
        fetches += tried
        if medication is None:
            unresolved += len(wanted[target])
            continue
        found += 1
        collected.add_medication(medication, target, *wanted[target])
    unresolved += sum(len(wanted[futures[f]]) for f in pending)
    if unresolved:
        log.info("medication references left unresolved: %d", unresolved)
    return fetches, found, unresolved


def _medication_target(reference: str, base: str | None) -> str | None:
    """``Medication/<id>`` for a relative reference or an absolute one on fhirServer, else None."""
    relative = reference
    if "://" in reference:
        if base is None or not reference.startswith(base + "/"):
            return None
        relative = reference[len(base) + 1 :]
    match = _MEDICATION_REF.match(relative)
    return f"Medication/{match.group(1)}" if match else None


def _read_medication(url: str, server: _Server, budget: _Budget) -> tuple[Resource | None, int]:
    """A Medication read; any failure is "not found" here (the record says "unidentified")."""
    try:
        status, body = server.get(url, budget)
    except _FetchFailed:
        return None, 1
    if status != 200 or not isinstance(body, dict) or body.get("resourceType") != "Medication":
        return None, 1
    if body.get("id") not in (None, url.rpartition("/")[2]):
        return None, 1  # another Medication than the one read
    return read_resource(body), 1
