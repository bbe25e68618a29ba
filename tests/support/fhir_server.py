"""A small FHIR server on 127.0.0.1 for tests: one patient's record, searchable, with faults.

It answers reads and searches (GET, and POST ``<type>/_search`` with a form body) on
``{base_url}/...`` with ``cds_service.demo.search`` over the record it holds, writing absolute
``fullUrl``s and ``next`` links as a real server does, and takes a transaction Bundle of PUTs
POSTed to ``{base_url}`` into the record (as a loader sends). Tests can inject:

- ``latency``: seconds every request waits before answering;
- ``page_size``: a default ``_count`` when the request gives none (forces paging);
- ``require_token``: answer 401 unless ``Authorization: Bearer <token>`` is sent;
- faults, per request path (``add_fault``): an HTTP status with an OperationOutcome, a malformed
  JSON body, a body of the wrong resourceType, a body that trickles out a few bytes at a time, a
  page padded to a large size (``large``), or no answer at all.

Every request is recorded (path, query, Authorization header, start and end times) and the peak
number of requests in flight is kept, so tests can assert parallelism and paging. Waits use an
event that ``stop()`` sets, so a hung or trickling handler ends when the test does.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from cds_service.demo.search import UnsupportedSearch, search

FAULT_KINDS = ("status", "malformed", "wrong-type", "trickle", "hang", "large")
_HANG_LIMIT_SECONDS = 30.0  # a forgotten hung handler still ends


@dataclass
class Fault:
    kind: str
    match: str | None = None  # substring of "<path>?<query>" below the base; None: every request
    status: int = 500
    times: int | None = None  # how many requests it hits; None: all of them
    trickle_bytes: int = 8  # per write
    trickle_interval: float = 0.05  # seconds between writes
    large_bytes: int = 4 * 1024 * 1024  # "large": a valid search page padded to this size
    announce_length: bool = False  # "large": send Content-Length (else the body ends at close)
    sent: int = 0  # "large": body bytes written so far, over all requests it hit

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}")


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str  # below the base, e.g. "Observation"
    query: str
    authorization: str | None
    client_port: int  # the client's side of the connection: equal ports = a reused connection
    started: float  # time.monotonic()
    finished: float | None = None

    @property
    def params(self) -> list[tuple[str, str]]:
        return parse_qsl(self.query, keep_blank_values=True)


@dataclass
class FhirTestServer:
    record: dict[str, Any] = field(
        default_factory=lambda: {"resourceType": "Bundle", "type": "collection", "entry": []}
    )
    base_path: str = "/fhir"
    latency: float = 0.0
    page_size: int | None = None
    require_token: str | None = None
    faults: list[Fault] = field(default_factory=list)
    requests: list[RecordedRequest] = field(default_factory=list)
    max_in_flight: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._in_flight = 0
        self._stop = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> FhirTestServer:
        handler = type("Handler", (_Handler,), {"fhir": self})
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        httpd.daemon_threads = True
        httpd.block_on_close = False  # a hung handler must not hold the test's teardown
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, name="fhir-test-server")
        self._thread.daemon = True
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def origin(self) -> str:
        assert self._httpd is not None, "server not started"
        return f"http://127.0.0.1:{self._httpd.server_port}"

    @property
    def base_url(self) -> str:
        return self.origin + self.base_path

    # -- configuration -----------------------------------------------------------------------

    def add_fault(self, kind: str, match: str | None = None, **options: Any) -> Fault:
        fault = Fault(kind, match, **options)
        with self._lock:
            self.faults.append(fault)
        return fault

    def reset(self) -> None:
        with self._lock:
            self.faults.clear()
            self.requests.clear()
            self.max_in_flight = 0
            self.latency = 0.0

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self.requests)

    def paths(self) -> list[str]:
        with self._lock:
            return [r.path for r in self.requests]

    # -- used by the handler -----------------------------------------------------------------

    def _fault_for(self, target: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.match is not None and fault.match not in target:
                    continue
                if fault.times is not None:
                    if fault.times <= 0:
                        continue
                    fault.times -= 1
                return fault
        return None

    @contextmanager
    def _track(self, request: RecordedRequest) -> Iterator[int]:
        with self._lock:
            index = len(self.requests)
            self.requests.append(request)
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            yield index
        finally:
            with self._lock:
                self._in_flight -= 1
                self.requests[index] = replace(self.requests[index], finished=time.monotonic())
                if self._in_flight == 0:
                    self._idle.notify_all()

    def wait_until_idle(self, timeout: float) -> bool:
        """Block until no request is being answered (handlers noticed the client left)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._in_flight == 0, timeout=timeout)

    def _wait(self, seconds: float) -> bool:
        """Wait ``seconds``; False when the server is stopping."""
        return not self._stop.wait(seconds)


class _Handler(BaseHTTPRequestHandler):
    fhir: FhirTestServer
    protocol_version = "HTTP/1.1"  # keep-alive, so the client's connection pool is exercised
    # Headers and body go out in separate writes: with Nagle's algorithm a small answer waits
    # ~40 ms for the client's delayed ACK, which would pass for FHIR server latency.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # quiet test output

    def handle(self) -> None:
        try:
            super().handle()
        except ConnectionError:
            pass  # the client reset a kept-alive connection (it gave up at its deadline)

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        self._serve("GET", parts.path, parts.query)

    def do_POST(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        form = self.rfile.read(length).decode("utf-8") if length else ""
        if parts.path.rstrip("/") == self.fhir.base_path:
            with self.fhir._track(RecordedRequest("POST", "", "", self.headers.get(
                    "Authorization"), self.client_address[1], time.monotonic())):
                self._transaction(form)
            return
        if not parts.path.endswith("/_search"):
            self._send_outcome(405, "not-supported", "only POST <type>/_search is supported")
            return
        query = "&".join(q for q in (parts.query, form) if q)
        self._serve("POST", parts.path.removesuffix("/_search"), query)

    def _transaction(self, body: str) -> None:
        """A transaction Bundle of PUTs (``Type/id``), as a loader sends: each resource replaces
        the one of the same type and id in the record, or is added to it."""
        try:
            bundle = json.loads(body)
        except ValueError:
            self._send_outcome(400, "structure", "the body is not JSON")
            return
        if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle" or bundle.get(
            "type"
        ) != "transaction":
            self._send_outcome(400, "not-supported", "only a transaction Bundle is supported")
            return
        entries = self.fhir.record.setdefault("entry", [])
        answers = []
        for entry in bundle.get("entry") or ():
            resource, request = entry.get("resource") or {}, entry.get("request") or {}
            url = f"{resource.get('resourceType')}/{resource.get('id')}"
            if request.get("method") != "PUT" or request.get("url") != url:
                self._send_outcome(400, "not-supported", f"only PUT {url} is supported")
                return
            kept = [e for e in entries if f"{e['resource'].get('resourceType')}/"
                    f"{e['resource'].get('id')}" != url]
            status = "200 OK" if len(kept) < len(entries) else "201 Created"
            entries[:] = [*kept, {"resource": resource}]
            answers.append({"response": {"status": status, "location": f"{url}/_history/1"}})
        self._send_json(200, {"resourceType": "Bundle", "type": "transaction-response",
                              "entry": answers})

    def _serve(self, method: str, path: str, query: str) -> None:
        fhir = self.fhir
        relative = path[len(fhir.base_path) :].strip("/") if path.startswith(fhir.base_path) else ""
        recorded = RecordedRequest(
            method,
            relative,
            query,
            self.headers.get("Authorization"),
            self.client_address[1],
            time.monotonic(),
        )
        with fhir._track(recorded):
            if fhir.latency and not fhir._wait(fhir.latency):
                return
            fault = fhir._fault_for(f"{relative}?{query}")
            if fault is not None:
                self._fault(fault)
                return
            if not relative:
                self._send_outcome(404, "not-found", "not a FHIR endpoint")
                return
            if fhir.require_token and self.headers.get("Authorization") != (
                f"Bearer {fhir.require_token}"
            ):
                self._send_outcome(401, "login", "a valid bearer token is required")
                return
            self._answer(relative, query)

    def _answer(self, relative: str, query: str) -> None:
        fhir = self.fhir
        if relative == "metadata":  # what a client (a loader) asks first to see the server is up
            self._send_json(200, {"resourceType": "CapabilityStatement", "status": "active",
                                  "date": "2025-01-01", "kind": "instance",
                                  "fhirVersion": "4.0.1", "format": ["json"]})
            return
        params = parse_qsl(query, keep_blank_values=True)
        is_search = "/" not in relative
        if is_search and fhir.page_size and not any(n == "_count" for n, _ in params):
            params.append(("_count", str(fhir.page_size)))
        url = relative + (f"?{urlencode(params, safe='|,:/')}" if params else "")
        try:
            result = search(fhir.record, url, base=fhir.base_url)
        except UnsupportedSearch as exc:
            self._send_outcome(400, "not-supported", str(exc))
            return
        if result is None:
            self._send_outcome(404, "not-found", f"{relative} is not known")
            return
        self._send_json(200, result)

    def _fault(self, fault: Fault) -> None:
        if fault.kind == "status":
            self._send_outcome(fault.status, "exception", "injected failure")
        elif fault.kind == "malformed":
            self._send_raw(200, b'{"resourceType": "Bundle", "type": "searchset", "entry": [{')
        elif fault.kind == "wrong-type":
            self._send_json(200, {"resourceType": "Basic", "id": "x", "code": {"text": "odd"}})
        elif fault.kind == "trickle":
            self._trickle(fault)
        elif fault.kind == "large":
            self._large(fault)
        elif fault.kind == "hang":
            self.fhir._wait(_HANG_LIMIT_SECONDS)
            self.close_connection = True

    def _trickle(self, fault: Fault) -> None:
        body = json.dumps({"resourceType": "Bundle", "type": "searchset", "entry": []}).encode()
        body += b" " * 4096  # long enough that it cannot finish within a test's deadline
        self.send_response(200)
        self.send_header("Content-Type", "application/fhir+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.close_connection = True
        try:
            for start in range(0, len(body), fault.trickle_bytes):
                self.wfile.write(body[start : start + fault.trickle_bytes])
                self.wfile.flush()
                if not self.fhir._wait(fault.trickle_interval):
                    return
        except OSError:
            return  # the client hung up, as it should when its deadline passes

    def _large(self, fault: Fault) -> None:
        """A valid, empty search page padded with whitespace to ``large_bytes``, written as fast
        as the client reads it; ``fault.sent`` counts what went out."""
        head = json.dumps({"resourceType": "Bundle", "type": "searchset", "entry": []}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/fhir+json")
        if fault.announce_length:
            self.send_header("Content-Length", str(fault.large_bytes))
        self.end_headers()
        self.close_connection = True
        block = b" " * 65536
        left = fault.large_bytes
        try:
            self.wfile.write(head)
            left -= len(head)
            while left > 0 and not self.fhir._stop.is_set():
                piece = block[: min(left, len(block))]
                self.wfile.write(piece)
                left -= len(piece)
                with self.fhir._lock:
                    fault.sent += len(piece)
        except OSError:
            return  # the client stopped reading and closed: what the budget tests look for

    def _send_outcome(self, status: int, code: str, text: str) -> None:
        outcome = {
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": code, "diagnostics": text}],
        }
        self._send_json(status, outcome)

    def _send_json(self, status: int, payload: Any) -> None:
        self._send_raw(status, json.dumps(payload).encode("utf-8"))

    def _send_raw(self, status: int, body: bytes) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/fhir+json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            self.close_connection = True  # the client gave up (deadline): nothing to answer
