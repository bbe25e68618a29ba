"""The served front end (``myocds serve``, commands/front.py) against slow clients and a hanging
FHIR server (issue 12, points 1 and 7), on a real server on a loopback port.

One worker with ONE thread: under the former gthread workers a single client dribbling its request
held that thread and every other call waited. Here requests are read in full before a thread
takes them, slow clients are cut at the header and body deadlines, and calls whose prefetch is
complete never queue behind calls waiting on a FHIR server.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.support.fhir_server import FhirTestServer
from tests.support.served import free_port

from .test_serve import START_TIMEOUT, serve_env, start_serve

HEADER_DEADLINE = 1.0
BODY_DEADLINE = 1.5
HOOK_DEADLINE = 2.0
# Seconds a call with its prefetch complete may take here (it takes ~20 ms on a quiet machine).
# Below the header deadline and half the hook deadline: a call that had to wait for a thread
# held by a slow client or a stuck call would take at least one of those.
FAST = 0.9
SLACK = 1.0  # seconds past a deadline a loaded shared machine may take to act on it
PATH = "/cds-services/myopathy-review"


@pytest.fixture(scope="module")
def hanging_fhir() -> Iterator[FhirTestServer]:
    server = FhirTestServer().start()
    server.add_fault("hang")  # every request: no answer at all
    yield server
    server.stop()


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, hanging_fhir: FhirTestServer
) -> Iterator[int]:
    tmp = tmp_path_factory.mktemp("front")
    port = free_port()
    log_path = tmp / "serve.log"
    log = log_path.open("w")
    env = serve_env(
        tmp,
        MYOCDS_AUTH="off",
        MYOCDS_WORKERS="1",
        MYOCDS_THREADS="1",
        MYOCDS_HEADER_DEADLINE_SECONDS=str(HEADER_DEADLINE),
        MYOCDS_BODY_DEADLINE_SECONDS=str(BODY_DEADLINE),
        MYOCDS_HOOK_DEADLINE_SECONDS=str(HOOK_DEADLINE),
        MYOCDS_FHIR_TIMEOUT_SECONDS="10",
        MYOCDS_FHIR_ALLOW=hanging_fhir.base_url,
    )
    process = start_serve(env, "--port", str(port), stderr=log)
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            if _call(port, "GET", "/healthz")[0] == 200:
                break
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"myocds serve did not start: {log_path.read_text()[-2000:]}")
        time.sleep(0.1)  # polling for start-up, not for correctness
    yield port
    process.terminate()
    process.wait(timeout=30)
    log.close()


def _call(port: int, method: str, path: str, body: Any = None) -> tuple[int, bytes, float]:
    started = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        payload = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if payload is not None else {}
        conn.request(method, path, payload, headers)
        response = conn.getresponse()
        return response.status, response.read(), time.monotonic() - started
    finally:
        conn.close()


class _Dribbler(threading.Thread):
    """A client sending its request a byte at a time, ``interval`` apart, until told to stop or
    the server hangs up; records when the server closed and what it answered."""

    def __init__(self, port: int, head: bytes, body: bytes = b"", interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.opened = time.monotonic()
        self.head, self.body, self.interval = head, body, interval
        self.stop = threading.Event()
        self.closed_after: float | None = None
        self.answer = b""

    def run(self) -> None:
        # The head arrives whole at once when the body is the slow part.
        data = self.body if self.body else self.head
        if self.body:
            self.sock.sendall(self.head)
        try:
            for i in range(len(data)):
                if self.stop.is_set():
                    return
                self.sock.sendall(data[i : i + 1])
                if self.stop.wait(self.interval):
                    return
                if self._server_spoke():
                    return
        except OSError:
            self.closed_after = time.monotonic() - self.opened

    def _server_spoke(self) -> bool:
        self.sock.setblocking(False)
        try:
            chunk = self.sock.recv(65536)
        except BlockingIOError:
            return False
        except OSError:
            chunk = b""
        finally:
            self.sock.setblocking(True)
        self.answer += chunk
        if chunk:
            self._read_to_close()
        self.closed_after = time.monotonic() - self.opened
        return True

    def _read_to_close(self) -> None:
        self.sock.settimeout(5)
        try:
            while chunk := self.sock.recv(65536):
                self.answer += chunk
        except OSError:
            pass

    def close(self) -> None:
        self.stop.set()
        self.join(timeout=5)
        self.sock.close()


def _slow_head() -> bytes:
    return (
        f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        + "".join(f"X-Slow-{i}: {'a' * 20}\r\n" for i in range(40))
        + "\r\n"
    ).encode()


def _head_of(body: bytes) -> bytes:
    return (
        f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()


def test_normal_calls_stay_fast_while_slow_clients_dribble(
    served: int, pv_body: dict[str, Any]
) -> None:
    port = served
    body = json.dumps(pv_body).encode()
    _call(port, "POST", PATH, pv_body)  # warm up
    slow = [_Dribbler(port, _slow_head()) for _ in range(4)]
    slow += [_Dribbler(port, _head_of(body), body) for _ in range(4)]
    for client in slow:
        client.start()
    try:
        time.sleep(0.3)  # the slow clients are under way, each mid-request
        timings = []
        for _ in range(10):
            status, _, elapsed = _call(port, "POST", PATH, pv_body)
            assert status == 200
            timings.append(elapsed)
        assert max(timings) < FAST, [f"{t:.3f}" for t in timings]
        # The slow clients were still connected and unanswered while the calls went through.
        assert all(client.closed_after is None for client in slow)
    finally:
        for client in slow:
            client.close()


def test_a_client_dribbling_its_headers_is_cut_at_the_header_deadline(served: int) -> None:
    client = _Dribbler(served, _slow_head())
    client.start()
    client.join(timeout=HEADER_DEADLINE + SLACK + 5)
    try:
        assert client.closed_after is not None, "the server never hung up"
        assert HEADER_DEADLINE - 0.1 <= client.closed_after <= HEADER_DEADLINE + SLACK
        assert client.answer == b""  # no request was read, so none is answered
    finally:
        client.close()


def test_a_client_dribbling_its_body_gets_408_at_the_body_deadline(
    served: int, pv_body: dict[str, Any]
) -> None:
    body = json.dumps(pv_body).encode()
    client = _Dribbler(served, _head_of(body), body)
    client.start()
    client.join(timeout=BODY_DEADLINE + SLACK + 5)
    try:
        assert client.closed_after is not None, "the server never answered"
        assert BODY_DEADLINE - 0.1 <= client.closed_after <= BODY_DEADLINE + SLACK
        head, _, payload = client.answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408 ")
        assert json.loads(payload)["resourceType"] == "OperationOutcome"
    finally:
        client.close()


def test_prefetched_calls_do_not_wait_behind_calls_stuck_on_a_hanging_fhir_server(
    served: int, pv_body: dict[str, Any], hanging_fhir: FhirTestServer
) -> None:
    port = served
    fallback = {**pv_body, "prefetch": {}, "fhirServer": hanging_fhir.base_url}
    with ThreadPoolExecutor(max_workers=6) as pool:
        stuck = [pool.submit(_call, port, "POST", PATH, fallback) for _ in range(6)]
        time.sleep(0.3)  # the six calls now wait on the FHIR server, with one worker thread
        timings = [_call(port, "POST", PATH, pv_body) for _ in range(8)]
        results = [future.result(timeout=HOOK_DEADLINE + SLACK + 10) for future in stuck]
    assert all(status == 200 for status, _, _ in timings)
    assert max(elapsed for _, _, elapsed in timings) < FAST, [f"{t:.3f}" for *_, t in timings]
    for status, payload, elapsed in results:
        assert status == 412
        diagnostics = json.loads(payload)["issue"][0]["diagnostics"]
        assert "deadline" in diagnostics or "in time" in diagnostics
        # Counted from the arrival of each call, not from when a thread took it.
        assert elapsed <= HOOK_DEADLINE + SLACK, f"{elapsed:.2f} s"


def test_the_wsgi_environ_keeps_what_the_app_reads_and_drops_lookalike_headers() -> None:
    from cds_service.commands.front import ARRIVAL_KEY, wsgi_environ

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/cds-services/a b",
        "raw_path": b"/cds-services/a%20b",
        "query_string": b"x=1",
        "scheme": "http",
        "http_version": "1.1",
        "server": ("127.0.0.1", 8080),
        "client": ("127.0.0.2", 5555),
        "headers": [
            (b"host", b"127.0.0.1:8080"),
            (b"content-type", b"application/json"),
            (b"content-length", b"2"),
            (b"x-forwarded-proto", b"http"),
            (b"x_forwarded_proto", b"https"),  # would pass for X-Forwarded-Proto
            (b"accept", b"a"),
            (b"accept", b"b"),
        ],
    }
    environ = wsgi_environ(scope, b"{}", 12.5)
    assert environ["PATH_INFO"] == "/cds-services/a b"
    assert environ["QUERY_STRING"] == "x=1"
    assert (environ["CONTENT_TYPE"], environ["CONTENT_LENGTH"]) == ("application/json", "2")
    assert environ["HTTP_X_FORWARDED_PROTO"] == "http"
    assert environ["HTTP_ACCEPT"] == "a,b"
    assert environ["REMOTE_ADDR"] == "127.0.0.2"
    assert environ["wsgi.input"].read() == b"{}"
    assert environ[ARRIVAL_KEY] == 12.5


def test_a_call_waiting_on_fhir_lends_its_work_slot_and_takes_one_back() -> None:
    from cds_service.admission import admitted, call_arrival, waiting

    slots = threading.BoundedSemaphore(1)
    assert call_arrival() is None  # not admitted: the Flask test client, the CLI
    with admitted(12.5, slots):
        assert call_arrival() == 12.5
        assert not slots.acquire(blocking=False)  # the call holds the only slot
        with waiting():
            assert slots.acquire(blocking=False)  # another call may run meanwhile
            slots.release()
        assert not slots.acquire(blocking=False)  # taken back to finish
    assert call_arrival() is None
    assert slots.acquire(blocking=False)


def test_bodies_past_the_worker_buffer_get_503_and_the_buffer_is_given_back() -> None:
    import asyncio

    from cds_service.commands.front import BufferedWsgi
    from cds_service.settings import Settings

    bodies: list[bytes] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        bodies.append(environ["wsgi.input"].read())
        start_response("200 OK", [("Content-Type", "application/json")])
        return [b"{}"]

    front = BufferedWsgi(app, Settings().with_overrides(threads=1))
    front.buffer_bytes = 10_000  # instead of 64 MiB, so a test can fill it
    scope = {"type": "http", "method": "POST", "path": PATH, "headers": []}

    def request(*chunks: bytes) -> tuple[Any, Any, list[dict[str, Any]]]:
        messages = [
            {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
            for i, chunk in enumerate(chunks)
        ]
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return messages.pop(0)

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        return receive, send, sent

    async def scenario() -> list[list[dict[str, Any]]]:
        slow: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        slow_sent: list[dict[str, Any]] = []

        async def send_slow(message: dict[str, Any]) -> None:
            slow_sent.append(message)

        # A client that sent 8,000 bytes and is still sending holds them in the buffer.
        first = asyncio.create_task(front(scope, slow.get, send_slow))
        await slow.put({"type": "http.request", "body": b"a" * 8000, "more_body": True})
        await asyncio.sleep(0.05)
        receive, send, refused = request(b"b" * 4000)
        await front(scope, receive, send)  # 12,000 > 10,000: refused, nothing kept
        await slow.put({"type": "http.request", "body": b"a" * 1000, "more_body": False})
        await first
        receive, send, later = request(b"c" * 6000, b"c" * 3000)  # fits once the first is done
        await front(scope, receive, send)
        # Every byte was given back: a body the size of the whole buffer fits (one byte still
        # held by an earlier request would refuse it).
        receive, send, whole = request(b"d" * front.buffer_bytes)
        await front(scope, receive, send)
        return [refused, slow_sent, later, whole]

    try:
        refused, first, later, whole = asyncio.run(scenario())
    finally:
        front.executor().shutdown()
    assert refused[0]["status"] == 503
    assert (b"retry-after", b"1") in refused[0]["headers"]
    assert json.loads(refused[1]["body"])["resourceType"] == "OperationOutcome"
    assert first[0]["status"] == 200 and later[0]["status"] == 200
    assert whole[0]["status"] == 200
    assert bodies == [b"a" * 9000, b"c" * 9000, b"d" * 10_000]
