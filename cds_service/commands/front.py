"""The HTTP front end of ``myocds serve``: requests are read in full before a thread takes them.

gunicorn stays the process manager (the app loaded once in the master, ``MYOCDS_WORKERS``
workers forked from it, restarted when one dies, metrics collected across them). Each worker
(``FrontWorker``) serves its share of the listening sockets with Hypercorn, an asyncio HTTP/1.1
server, in front of ``BufferedWsgi``, an ASGI application that

1. is called once Hypercorn has the request line and headers. Hypercorn closes a connection that
   has not sent a complete request head within its ``keep_alive_timeout``, counted from the
   connection (or from the previous response): that is the *header deadline*
   (``MYOCDS_HEADER_DEADLINE_SECONDS``);
2. reads the body into memory under the *body deadline* (``MYOCDS_BODY_DEADLINE_SECONDS``,
   counted from the end of the headers; past it: 408 and the connection closed) and at most
   ``MYOCDS_MAX_BODY_BYTES`` + 1 bytes (more is left to the app's own 413);
3. only then runs the Flask app on one of its ``MYOCDS_THREADS`` threads, holding one of the
   worker's ``MYOCDS_COMPUTE_SLOTS`` work slots (``cds_service.admission.WorkSlots``: one by
   default; while all are taken the request is queued without a thread, and the thread of the
   call that finishes runs it next; a call waiting on another server gives its slot back), and
   sends the answer.

A client that dribbles its headers or body therefore holds a socket and a few kilobytes in the
event loop, never a thread: slow or stalled clients cannot starve the calls of others.
``docs/trust.md`` says why this set-up was chosen and what was measured.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_to_bytes

from gunicorn.workers.base import Worker

from cds_service.admission import WorkSlots
from cds_service.protocol.errors import operation_outcome
from cds_service.settings import Settings

log = logging.getLogger("myocds.front")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
# An answer as the app gave it: status, headers, body.
_Answer = tuple[int, list[tuple[bytes, bytes]], bytes]

# WSGI environ key with the request's arrival (time.monotonic(), the end of its headers).
ARRIVAL_KEY = "myocds.arrival"
# Threads beyond MYOCDS_THREADS: calls waiting on a FHIR server hold a thread but no slot.
WAITING_THREADS = 32
# Request bodies one worker holds at once, at least (four of the largest allowed, else more).
BUFFER_BYTES = 64 * 1024 * 1024


class _ClientGone(Exception):
    """The client disconnected before its request was complete."""


class _WorkerFull(Exception):
    """The bodies being received and handled would pass the worker's buffer budget."""


@dataclass
class _Held:
    size: int = 0  # body bytes of one request counted in the worker's buffer


class BufferedWsgi:
    """ASGI application running a WSGI app once each request has been read in full."""

    def __init__(self, app: WsgiApp, settings: Settings) -> None:
        self.app = app
        self.body_seconds = settings.body_deadline_seconds
        self.max_body_bytes = settings.max_body_bytes
        self.threads = settings.threads
        self.compute_slots = settings.compute_slots
        # Request bodies held at once (being received, or handled), all connections together:
        # many clients sending large bodies slowly cannot take the worker's memory with them.
        # Only the event loop's thread reads and changes ``_buffered``.
        self.buffer_bytes = max(BUFFER_BYTES, 4 * settings.max_body_bytes)
        self._buffered = 0
        self._executor: ThreadPoolExecutor | None = None
        self._slots: WorkSlots | None = None

    def executor(self) -> ThreadPoolExecutor:
        # Made in the worker on first use, never in the master before the fork.
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                max_workers=self.threads + WAITING_THREADS, thread_name_prefix="myocds-call"
            )
        return self._executor

    def slots(self) -> WorkSlots:
        """The worker's work slots; a call starts on a thread of ``executor``."""
        if self._slots is None:
            self._slots = WorkSlots(self.compute_slots, self.executor().submit)
        return self._slots

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)
        # websocket: not served (Hypercorn answers the handshake with a refusal)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._executor is not None:
                    self._executor.shutdown(wait=False, cancel_futures=True)
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        arrival = time.monotonic()
        held = _Held()
        try:
            try:
                body = await self._read_body(scope, receive, arrival + self.body_seconds, held)
            except _ClientGone:
                return
            except _WorkerFull:
                log.warning("request bodies being received fill the worker's buffer: 503")
                await _send_outcome(
                    send,
                    503,
                    "transient",
                    "the service is busy receiving other requests",
                    retry_after=1,
                )
                return
            if body is None:
                log.info("request body not received within %.1f s: 408", self.body_seconds)
                await _send_outcome(send, 408, "timeout", "the request body did not arrive in time")
                return
            environ = wsgi_environ(scope, body, arrival)
            status, headers, content = await self._computed(environ)
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": content})
        finally:
            self._buffered -= held.size

    async def _computed(self, environ: dict[str, Any]) -> _Answer:
        """The app's answer, computed on a thread holding a work slot (``WorkSlots``)."""
        loop = asyncio.get_running_loop()
        answered: asyncio.Future[_Answer] = loop.create_future()

        def call() -> None:
            try:
                answer = self._call(environ)
            except Exception as exc:
                _settle_from_thread(loop, answered, None, exc)
            else:
                _settle_from_thread(loop, answered, answer, None)

        self.slots().run(environ[ARRIVAL_KEY], call)
        return await answered

    async def _read_body(
        self, scope: Scope, receive: Receive, deadline: float, held: _Held
    ) -> bytes | None:
        """The whole body, or ``None`` when the deadline passed first. A body over the size
        limit is cut at limit + 1 bytes: the app then answers its own 413. The bytes are counted
        in ``held`` and against the worker's buffer (``_WorkerFull`` when it is full)."""
        if _declared_length(scope) > self.max_body_bytes:
            return b""  # the app refuses on Content-Length alone; nothing is read
        body = bytearray()
        more = True
        while more:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            try:
                message = await asyncio.wait_for(receive(), remaining)
            except TimeoutError:
                return None
            if message["type"] == "http.disconnect":
                raise _ClientGone
            chunk = message.get("body", b"")
            if self._buffered + len(chunk) > self.buffer_bytes:
                raise _WorkerFull
            self._buffered += len(chunk)
            held.size += len(chunk)
            body += chunk
            if len(body) > self.max_body_bytes:
                return bytes(body[: self.max_body_bytes + 1])
            more = bool(message.get("more_body"))
        return bytes(body)

    def _call(self, environ: dict[str, Any]) -> _Answer:
        """Run the app on this (pool) thread, which holds a work slot; the whole answer."""
        answer: dict[str, Any] = {}

        def start_response(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Any:
            answer["status"] = int(status.split(" ", 1)[0])
            answer["headers"] = [
                (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers
            ]
            return lambda data: answer.setdefault("written", []).append(data)

        try:
            result = self.app(environ, start_response)
            try:
                content = b"".join([*answer.get("written", []), *result])
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
        except Exception:  # the app maps its own errors; this is a defect in the server glue
            log.exception("the application failed outside its error handlers")
            payload = operation_outcome("exception", "internal error")
            return (
                500,
                [(b"content-type", b"application/fhir+json")],
                json.dumps(payload).encode(),
            )
        return answer["status"], answer["headers"], content


def _settle_from_thread(
    loop: asyncio.AbstractEventLoop,
    future: asyncio.Future[_Answer],
    answer: _Answer | None,
    error: Exception | None,
) -> None:
    """From a pool thread: give the event loop the call's answer (or the glue's failure)."""

    def settle() -> None:
        if future.done():  # the request's task was cancelled (client gone, shutdown)
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(answer)  # type: ignore[arg-type]

    try:
        loop.call_soon_threadsafe(settle)
    except RuntimeError:  # the loop is closed: the worker is stopping, no one is waiting
        pass


def _declared_length(scope: Scope) -> int:
    for name, value in scope.get("headers", ()):
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return 0  # malformed: Hypercorn's parser refuses such a request before us
    return 0


async def _send_outcome(
    send: Send, status: int, code: str, text: str, *, retry_after: int | None = None
) -> None:
    body = json.dumps(operation_outcome(code, text)).encode()
    headers = [
        (b"content-type", b"application/fhir+json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    if retry_after is not None:
        headers.append((b"retry-after", str(retry_after).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def wsgi_environ(scope: Scope, body: bytes, arrival: float) -> dict[str, Any]:
    """PEP 3333 environ for an ASGI HTTP scope and its complete body."""
    server = scope.get("server") or ("localhost", 80)
    client = scope.get("client") or ("", 0)
    raw_path = scope.get("raw_path")
    if raw_path:
        path = unquote_to_bytes(bytes(raw_path).split(b"?", 1)[0]).decode("latin-1")
    else:
        path = scope["path"].encode("utf-8").decode("latin-1")
    root = scope.get("root_path", "").encode("utf-8").decode("latin-1")
    if root and path.startswith(root):
        path = path[len(root) :]
    environ: dict[str, Any] = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": root,
        "PATH_INFO": path,
        "QUERY_STRING": bytes(scope.get("query_string", b"")).decode("latin-1"),
        "SERVER_NAME": str(server[0]),
        "SERVER_PORT": str(server[1]) if server[1] is not None else "",
        "REMOTE_ADDR": str(client[0]),
        "REMOTE_PORT": str(client[1]),
        "SERVER_PROTOCOL": f"HTTP/{scope.get('http_version', '1.1')}",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.input": io.BytesIO(body),
        "wsgi.input_terminated": True,
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        ARRIVAL_KEY: arrival,
    }
    for raw_name, raw_value in scope.get("headers", ()):
        name = bytes(raw_name).decode("latin-1").upper()
        if "_" in name:
            # "X_Forwarded_For" would land on the same key as "X-Forwarded-For": dropped, as
            # gunicorn does, so no header can pass for another.
            continue
        value = bytes(raw_value).decode("latin-1")
        key = name.replace("-", "_")
        if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            key = f"HTTP_{key}"
        environ[key] = f"{environ[key]},{value}" if key in environ else value
    return environ


class FrontWorker(Worker):
    """A gunicorn worker serving its listeners with Hypercorn in front of ``BufferedWsgi``."""

    def run(self) -> None:
        from hypercorn.asyncio import serve
        from hypercorn.config import Config

        app = self.wsgi
        settings: Settings = app.config["MYOCDS_SETTINGS"]
        config = Config()
        # Our own copies of gunicorn's listening sockets (Hypercorn closes what it is given).
        config.bind = [f"fd://{os.dup(listener.sock.fileno())}" for listener in self.sockets]
        # Hypercorn's idle timer runs from the connection (and from each response) until a
        # request head is complete: the header deadline, also the keep-alive time.
        config.keep_alive_timeout = settings.header_deadline_seconds
        config.graceful_timeout = float(self.cfg.graceful_timeout)
        config.accesslog = None  # one structured line per call comes from the app itself
        config.errorlog = logging.getLogger("myocds.http")
        config.loglevel = settings.log_level
        config.include_server_header = False
        config.alpn_protocols = ["http/1.1"]
        front = BufferedWsgi(app, settings)
        asyncio.run(serve(front, config, shutdown_trigger=self._stopped))  # type: ignore[arg-type]

    async def _stopped(self) -> None:
        """Returns when the worker must stop; meanwhile tells the master it is alive."""
        while self.alive:
            self.notify()
            if self.ppid != os.getppid():
                self.log.info("Parent changed, shutting down: %s", self)
                return
            await asyncio.sleep(1.0)
