"""The conversation with a FHIR server: one ``FhirClient`` per application, one ``FhirServer`` per
hook call that fetches.

``FhirClient`` (created by ``create_app``, held in the app state, closed with the app) owns what
calls share: the httpx client over the pinned transport (``pinned.py``), its connection pool, the
pins, and the bounded pool of fetch threads (``MYOCDS_FHIR_POOL_SIZE``) that are the bulkhead
between calls waiting on a FHIR server and calls that do not (``cds_service.admission``).
Nothing of it is module-level state; everything is made on first use, so a worker forked after
``create_app`` opens its own.

``FhirServer`` is one fhirServer under one call's ``Budget``: every request has
``fhir_timeout_seconds`` and the whole call ``hook_deadline_seconds`` (counted from the request's
arrival); bodies are streamed, and the deadline, the size of one response (32 MiB) and the call's
memory budget (``MYOCDS_FHIR_CALL_BYTES``, decoded bytes over every key, page and read) are
checked while reading. Searches follow ``next`` links on the same fhirServer only, up to
``fhir_page_cap`` pages. Failures are ``FetchFailed`` with a reason safe to show the client: no
URL (it holds the patient id), never the token.
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any, TypeVar
from urllib.parse import urljoin, urlsplit

import httpcore
import httpx

from cds_service.admission import waiting
from cds_service.errors import FhirServerRefused
from cds_service.fhir.allow import EgressPolicy, has_dot_segment
from cds_service.fhir.parse import InvalidResource, read_resource, unpack_bundle
from cds_service.fhir.pinned import (
    PIN_SECONDS,
    Lookup,
    PinnedBackend,
    PinnedTransport,
    Pins,
    system_lookup,
    time_left,
)
from cds_service.settings import Settings

log = logging.getLogger(__name__)

Resource = dict[str, Any]
T = TypeVar("T")

# One FHIR response body at most (a page of a few thousand resources is well below it); a larger
# body is refused rather than buffered.
MAX_RESPONSE_BYTES = 32 * 1024 * 1024
_OVER_BUDGET = "fhirServer sent more data than one call may hold (MYOCDS_FHIR_CALL_BYTES)"
# A socket wait cut to the time left ends a few milliseconds around the deadline.
_DEADLINE_SLACK = 0.05
_ACCEPT = "application/fhir+json, application/json;q=0.9"


class FetchFailed(Exception):
    """Why one request failed, in words safe to show the client (no URL, no token)."""


@dataclass(frozen=True)
class Budget:
    """The time and memory one hook call may spend on fhirServer, shared by all its fetches."""

    deadline: float  # time.monotonic() value
    request_timeout: float
    # Bytes of response bodies the call may hold, summed over every key, page and Medication read
    # (MYOCDS_FHIR_CALL_BYTES): counted while streaming, so a server sending large pages on
    # several keys at once cannot take more than this much of a worker's memory.
    byte_limit: int = MAX_RESPONSE_BYTES
    # Set when the call has already failed: the other keys' fetches stop at their next request or
    # socket wait instead of paging on for nothing.
    abandoned: threading.Event = field(default_factory=threading.Event)
    _spent: list[int] = field(default_factory=lambda: [0])
    _spent_lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def for_call(cls, settings: Settings, deadline: float) -> Budget:
        return cls(deadline, settings.fhir_timeout_seconds, settings.fhir_call_bytes)

    def bytes_left(self) -> int:
        return self.byte_limit - self._spent[0]

    def spend(self, size: int) -> None:
        """Count ``size`` more bytes held; past the call's budget the fetch fails."""
        with self._spent_lock:
            self._spent[0] += size
            over = self._spent[0] > self.byte_limit
        if over:
            raise FetchFailed(_OVER_BUDGET)

    def remaining(self) -> float:
        if self.abandoned.is_set():
            return 0.0
        return self.deadline - time.monotonic()

    def timeout(self) -> float:
        remaining = self.remaining()
        if remaining <= 0:
            raise FetchFailed("the hook deadline passed")
        return min(self.request_timeout, remaining)


class FhirClient:
    """What every hook call's fetches share; one per application (``create_app``)."""

    def __init__(
        self,
        pool_size: int,
        *,
        lookup: Lookup = system_lookup,
        pin_seconds: float | None = None,
        dialer: httpcore.NetworkBackend | None = None,
    ) -> None:
        """``pin_seconds``: how long pins last (default: ``PIN_SECONDS``, and a call's own pin
        at least its deadline plus one request timeout); ``lookup`` and ``dialer`` resolve names
        and open TCP connections (the system's and httpcore's unless a test gives its own)."""
        self.pool_size = pool_size
        self.pins = Pins(lookup, seconds=PIN_SECONDS if pin_seconds is None else pin_seconds)
        self._pin_seconds = pin_seconds
        self._dialer = dialer
        self._lock = threading.RLock()
        self._closed = False
        self._ssl_context: ssl.SSLContext | None = None
        self._http: httpx.Client | None = None
        self._executor: ThreadPoolExecutor | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> FhirClient:
        return cls(settings.fhir_pool_size)

    @property
    def ssl_context(self) -> ssl.SSLContext:
        """httpx's default context: certificates verified, host names checked (made on first
        use: loading the CA bundle costs about 20 ms)."""
        with self._lock:
            if self._ssl_context is None:
                self._ssl_context = httpx.create_ssl_context()
            return self._ssl_context

    @property
    def http(self) -> httpx.Client:
        """The httpx client: pinned transport, no proxy or .netrc from the environment (a netrc
        entry would add an Authorization header the client never gave us), no redirects, and no
        cookies kept (a cookie set by one EHR's server must never ride along on another call)."""
        with self._lock:
            self._check_open()
            if self._http is None:
                backend = PinnedBackend(self.pins, self._dialer)
                self._http = httpx.Client(
                    transport=PinnedTransport(
                        backend, self.ssl_context, keepalive=max(10, self.pool_size)
                    ),
                    trust_env=False,
                    follow_redirects=False,
                    cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
                )
            return self._http

    @property
    def executor(self) -> ThreadPoolExecutor:
        with self._lock:
            self._check_open()
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    max_workers=self.pool_size, thread_name_prefix="fhir-fetch"
                )
            return self._executor

    def open(
        self,
        fhir_server: str,
        token: str | None,
        egress: EgressPolicy,
        settings: Settings,
    ) -> FhirServer:
        """The conversation with ``fhir_server`` for one call; ``FhirServerRefused`` when the
        egress policy does not admit it (checked, and its addresses pinned, before any request)."""
        seconds = self._pin_seconds
        if seconds is None:
            # A call's later connections (next pages, Medication reads) must still find its pin.
            call = settings.hook_deadline_seconds + settings.fhir_timeout_seconds
            seconds = max(PIN_SECONDS, call)
        self.pins.check(egress, fhir_server, timeout=settings.fhir_timeout_seconds, seconds=seconds)
        headers = {"Accept": _ACCEPT}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return FhirServer(fhir_server.strip().rstrip("/"), headers, self)

    def run(
        self, tasks: Mapping[str, Callable[[], T]], budget: Budget
    ) -> tuple[dict[str, T], list[str]]:
        """Run ``tasks`` on the fetch pool until all are done, one fails or the deadline passes;
        the call's work slot serves other calls meanwhile (``cds_service.admission``). Returns
        the results and the keys still pending at the deadline; raises the first failure in
        ``tasks`` order. After a failure or the deadline the budget is abandoned: running
        fetches stop at their next request or socket wait, queued ones never start."""
        futures: dict[Future[T], str] = {self.executor.submit(fn): key for key, fn in tasks.items()}
        with waiting():
            done, pending = wait(
                futures, timeout=max(budget.remaining(), 0), return_when=FIRST_EXCEPTION
            )
        failed = [f for f in done if f.exception() is not None]
        if failed or pending:
            budget.abandoned.set()
            for future in pending:
                future.cancel()
        if failed:
            order = list(tasks)
            exc = min(failed, key=lambda f: order.index(futures[f])).exception()
            assert exc is not None
            raise exc
        pending_keys = [k for k in tasks if k in {futures[f] for f in pending}]
        return {futures[f]: f.result() for f in done}, pending_keys

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the FHIR client is closed")

    def close(self, *, wait_for_fetches: bool = False) -> None:
        """Stop the fetch threads (queued fetches never start) and close every connection."""
        with self._lock:
            self._closed = True
            http, executor = self._http, self._executor
            self._http = self._executor = None
        if executor is not None:
            executor.shutdown(wait=wait_for_fetches, cancel_futures=True)
        if http is not None:
            http.close()
        self.pins.close()


@dataclass
class SearchResult:
    entries: list[tuple[str | None, Resource]] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    fetches: int = 0
    truncated: bool = False


@dataclass(frozen=True)
class FhirServer:
    """One fhirServer, as one hook call talks to it."""

    base: str  # fhirServer without trailing slash
    headers: Mapping[str, str]
    client: FhirClient

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

    def search(
        self, url: str, budget: Budget, *, page_cap: int, max_resources: int, pages_done: int = 0
    ) -> SearchResult:
        """Follow a search and its ``next`` links; ``pages_done`` pages were already had."""
        result = SearchResult()
        next_url: str | None = url
        pages = pages_done
        while next_url is not None:
            if pages >= page_cap:
                result.truncated = True
                break
            if not self.owns(next_url):
                raise FetchFailed("a next link points outside fhirServer; it is not followed")
            status, body = self.get(next_url, budget)
            result.fetches += 1
            pages += 1
            _check_status(status)
            if not isinstance(body, dict) or body.get("resourceType") != "Bundle":
                raise FetchFailed(
                    f"fhirServer sent {_kind(body)} where a search Bundle was expected"
                )
            try:
                unpacked = unpack_bundle(body)
            except InvalidResource as exc:
                raise FetchFailed(f"fhirServer sent a malformed Bundle ({exc})") from None
            result.entries.extend(unpacked.entries)
            for resource_type, n in unpacked.skipped.items():
                result.skipped[resource_type] = result.skipped.get(resource_type, 0) + n
            if len(result.entries) > max_resources:
                raise FetchFailed(f"fhirServer sent more than {max_resources} resources")
            link = next_link(body)
            next_url = urljoin(next_url, link) if link else None
        return result

    def read(self, url: str, resource_type: str, read_id: str, budget: Budget) -> Resource | None:
        """A read; ``None`` when the resource does not exist (404, 410)."""
        status, body = self.get(url, budget)
        if status in (404, 410):
            return None
        _check_status(status)
        if not isinstance(body, dict) or body.get("resourceType") != resource_type:
            raise FetchFailed(f"fhirServer sent {_kind(body)} where a {resource_type} was expected")
        resource = read_resource(body)  # a dict with its resourceType: readable
        if resource.get("id") not in (None, read_id):
            raise FetchFailed("fhirServer sent a different resource than the one read")
        return resource

    def get(self, url: str, budget: Budget) -> tuple[int, Any]:
        """GET ``url``; returns (status, parsed JSON body, or None when the status is not 200)."""
        timeout = budget.timeout()
        cut = time_left.set(budget.remaining)
        try:
            try:
                http = self.client.http  # RuntimeError once closed (a call abandoned meanwhile)
                request = http.build_request(
                    "GET", url, headers=dict(self.headers), timeout=httpx.Timeout(timeout)
                )
                response = http.send(request, stream=True)
            except httpx.TimeoutException:
                raise FetchFailed("fhirServer did not answer in time") from None
            except FhirServerRefused as exc:  # a new connection, checked again, was refused
                raise FetchFailed(f"fhirServer may not be called: {exc.message}") from None
            except (httpx.HTTPError, httpx.InvalidURL, OSError, RuntimeError):
                raise FetchFailed("fhirServer could not be reached") from None
            try:
                if response.status_code != 200:
                    return response.status_code, None
                length = response.headers.get("Content-Length")
                if length and length.isdigit() and int(length) > MAX_RESPONSE_BYTES:
                    raise FetchFailed("fhirServer sent a response larger than the limit")
                if length and length.isdigit() and int(length) > budget.bytes_left():
                    raise FetchFailed(_OVER_BUDGET)
                body = _read_body(response, budget)
            finally:
                response.close()
        finally:
            time_left.reset(cut)
        try:
            return 200, json.loads(body)
        except ValueError:
            body.clear()  # see _read_body
            raise FetchFailed("fhirServer sent a body that is not JSON") from None


def _read_body(response: httpx.Response, budget: Budget) -> bytearray:
    """Read the streamed body chunk by chunk (decoded), never past the deadline, the size cap or
    the call's memory budget. One growing buffer: no second copy when the chunks are joined."""
    body = bytearray()
    try:
        _read_into(body, response, budget)
    except FetchFailed:
        # The exception's traceback keeps this frame, and so the buffer, alive until the cyclic
        # garbage collector next runs: a worker kept a failed call's whole memory budget for
        # minutes. Emptied now, its memory goes back at once.
        body.clear()
        raise
    return body


def _read_into(body: bytearray, response: httpx.Response, budget: Budget) -> None:
    try:
        # Each socket wait is cut to the time left (pinned.time_left): a slow trickle still comes
        # back here often enough to check the deadline.
        for chunk in response.iter_bytes():
            if budget.remaining() <= 0:
                raise FetchFailed("fhirServer did not finish its response before the hook deadline")
            if len(body) + len(chunk) > MAX_RESPONSE_BYTES:
                raise FetchFailed("fhirServer sent a response larger than the limit")
            budget.spend(len(chunk))
            body += chunk
    except httpx.TimeoutException:
        if budget.remaining() <= _DEADLINE_SLACK:  # the wait was cut to the deadline
            raise FetchFailed(
                "fhirServer did not finish its response before the hook deadline"
            ) from None
        raise FetchFailed("fhirServer did not finish its response in time") from None
    except (httpx.HTTPError, httpx.StreamError, OSError):
        raise FetchFailed("fhirServer sent an incomplete response") from None


def next_link(bundle: Resource) -> str | None:
    links = bundle.get("link")
    for link in links if isinstance(links, list) else ():
        if isinstance(link, dict) and link.get("relation") == "next":
            url = link.get("url")
            if isinstance(url, str) and url:
                return url
    return None


def _check_status(status: int) -> None:
    if status == 200:
        return
    if status in (401, 403):
        raise FetchFailed(f"fhirServer refused access (HTTP {status})")
    if 300 <= status < 400:
        raise FetchFailed(f"fhirServer answered with a redirect (HTTP {status}), not followed")
    raise FetchFailed(f"fhirServer answered HTTP {status}")


def _kind(body: Any) -> str:
    if isinstance(body, dict) and isinstance(body.get("resourceType"), str):
        resource_type = body["resourceType"]
        return f"an {resource_type}" if resource_type[0] in "AEIOU" else f"a {resource_type}"
    return "JSON that is not a FHIR resource"
