"""The fhirServer transport: connections dial only addresses the egress policy checked.

If the HTTP client resolved the fhirServer host itself after our check, a hostile DNS server could
answer a public address to the check and 127.0.0.1 or 169.254.169.254 to the connection (DNS
rebinding). So the addresses the check resolved and accepted are recorded as the origin's pin
(``Pins``) and the transport dials only those, through httpcore's public network-backend interface
(``PinnedBackend.connect_tcp``): httpcore then wraps TLS around the socket with the host name, so
the ``Host`` header, TLS SNI and certificate verification name the host, never the address;
pooling, keep-alive, timeouts and streaming stay httpcore's and httpx's own. A connection opened
without a current pin resolves and checks the host again before it dials; an origin admitted
through an exempt base (``MYOCDS_FHIR_ALLOW``) is pinned as exempt and resolves as usual.

Reads are cut to the time the hook call has left (``time_left``, set around each request by the
client), so a server that trickles bytes or stalls cannot hold a fetch past the call's deadline.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import httpcore
import httpx

from cds_service.errors import FhirServerRefused
from cds_service.fhir.allow import EgressPolicy, IPAddress, host_key, refuse_addresses

Lookup = Callable[[str, int], Iterable[str]]
_Key = tuple[str, int]  # host (as host_key writes it), port: the scheme does not change where


def _key(host: str, port: int) -> _Key:
    return host_key(host), port


# How long a check's addresses serve new connections to the origin. Every hook call that fetches
# checks (and re-pins) its fhirServer first; a connection opened after the pin expired resolves and
# checks again. Short, so a server that moves is followed; the client makes a pin outlive the
# call that made it (hook deadline plus one request timeout).
PIN_SECONDS = 30.0
_MAX_PINS = 4096
# Resolution wait when httpcore gives the connection no timeout.
_RESOLVE_TIMEOUT = 2.0

# The time the current hook call has left (seconds; <= 0 once it passed or was abandoned): set by
# the client around each request, read by every socket wait of the request on this thread.
time_left: ContextVar[Callable[[], float] | None] = ContextVar("fhir_time_left", default=None)


def system_lookup(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


@dataclass(frozen=True)
class Pin:
    """What a connection to one origin may dial: checked addresses, or ``None`` for an origin
    admitted through an exempt base (its addresses are not checked)."""

    addresses: tuple[str, ...] | None
    expires: float  # time.monotonic() value


class Pins:
    """The checked addresses of each origin, for the connections of one FHIR client.

    Names are resolved on a small pool of their own, so a stalled resolver cannot hold a request
    past its timeout.
    """

    def __init__(self, lookup: Lookup = system_lookup, *, seconds: float = PIN_SECONDS) -> None:
        self._lookup = lookup
        self.seconds = seconds
        self._pins: dict[_Key, Pin] = {}
        self._lock = threading.Lock()
        self._resolver = ThreadPoolExecutor(max_workers=4, thread_name_prefix="fhir-dns")

    def check(self, policy: EgressPolicy, url: str, *, timeout: float, seconds: float) -> Pin:
        """Raise ``FhirServerRefused`` unless ``policy`` lets us send requests (and a token) to
        ``url``; returns (and records for the transport, ``seconds`` long) the origin's pin."""
        admitted = policy.admit(url)
        key = (admitted.host, admitted.port)
        if admitted.exempt:
            return self._record(key, None, seconds)
        return self._record(key, self._checked(admitted.host, admitted.port, timeout), seconds)

    def addresses(self, host: str, port: int, *, timeout: float) -> tuple[str, ...] | None:
        """The addresses a new connection to ``host:port`` may dial; ``None``: resolve as usual.
        A current pin answers; without one the host is resolved and checked now (strictly: only a
        check through a policy can exempt an origin) and the result pinned."""
        key = _key(host, port)
        with self._lock:
            pin = self._pins.get(key)
        if pin is not None and pin.expires > time.monotonic():
            return pin.addresses
        return self._record(key, self._checked(key[0], port, timeout), self.seconds).addresses

    def record(
        self, host: str, port: int, addresses: tuple[str, ...] | None, seconds: float
    ) -> Pin:
        """Pin ``host:port`` to ``addresses`` (already checked) for ``seconds``."""
        return self._record(_key(host, port), addresses, seconds)

    def clear(self) -> None:
        """Drop every pin: the next connection to any origin resolves and checks again."""
        with self._lock:
            self._pins.clear()

    def close(self) -> None:
        self._resolver.shutdown(wait=False, cancel_futures=True)

    def _record(self, key: _Key, addresses: tuple[str, ...] | None, seconds: float) -> Pin:
        pin = Pin(addresses=addresses, expires=time.monotonic() + seconds)
        with self._lock:
            if key not in self._pins and len(self._pins) >= _MAX_PINS:
                now = time.monotonic()
                stale = [k for k, p in self._pins.items() if p.expires <= now]
                for key in stale or list(self._pins)[:1]:
                    del self._pins[key]
            self._pins[key] = pin
        return pin

    def _checked(self, host: str, port: int, timeout: float) -> tuple[str, ...]:
        """The host's addresses, each one checked; ``FhirServerRefused`` if any is not public."""
        addresses = self._resolve(host, port, timeout)
        refuse_addresses(addresses)
        # Dial order = resolver order; duplicates (one per socket type or family answer) dropped.
        return tuple(dict.fromkeys(str(a) for a in addresses))

    def _resolve(self, host: str, port: int, timeout: float) -> list[IPAddress]:
        try:
            # An IP literal needs no resolver (and must not be sent to one).
            return [ipaddress.ip_address(host.strip("[]"))]
        except ValueError:
            pass
        future = self._resolver.submit(lambda: list(self._lookup(host, port)))
        try:
            raw = future.result(timeout=timeout)
        except FutureTimeout:
            raise FhirServerRefused(
                "fhirServer host name did not resolve in time", expression="fhirServer"
            ) from None
        except (OSError, UnicodeError):
            raise FhirServerRefused(
                "fhirServer host name does not resolve", expression="fhirServer"
            ) from None
        addresses: list[IPAddress] = []
        for text in raw:
            try:
                addresses.append(ipaddress.ip_address(text.split("%", 1)[0]))
            except ValueError:
                continue
        if not addresses:
            raise FhirServerRefused(
                "fhirServer host name does not resolve", expression="fhirServer"
            )
        return addresses


def _cut(timeout: float | None) -> float | None:
    """A socket wait no longer than the time the current call has left."""
    left = time_left.get()
    if left is None:
        return timeout
    remaining = max(left(), 0.001)
    return remaining if timeout is None else min(timeout, remaining)


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose every wait is cut to the current call's time left."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _cut(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _cut(timeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        return _DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, _cut(timeout)))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class PinnedBackend(httpcore.NetworkBackend):
    """httpcore's network backend, dialling only pinned (checked) addresses.

    ``dialer`` opens the TCP connection to one address (httpcore's own ``SyncBackend`` unless a
    test records the dials); it is never given a host name to resolve, except for an exempt
    origin.
    """

    def __init__(self, pins: Pins, dialer: httpcore.NetworkBackend | None = None) -> None:
        self._pins = pins
        self._dialer = dialer if dialer is not None else httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        timeout = _cut(timeout)
        wait = timeout if timeout is not None else _RESOLVE_TIMEOUT
        addresses = self._pins.addresses(host, port, timeout=wait)
        if addresses is None:  # an exempt origin (MYOCDS_FHIR_ALLOW): resolved as usual
            addresses = (host,)
        error: Exception | None = None
        for address in addresses:
            try:
                stream = self._dialer.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
                continue
            return _DeadlineStream(stream)
        assert error is not None
        raise error

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


# httpcore's exceptions as httpx's (the mapping httpx's own HTTPTransport applies), most specific
# first. ``FhirServerRefused`` (a connection the pins refused) passes through as it is.
_ERRORS: tuple[tuple[type[Exception], type[httpx.HTTPError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
)


@contextmanager
def _as_httpx_errors() -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        for source, target in _ERRORS:
            if isinstance(exc, source):
                raise target(str(exc)) from exc
        raise


class _ResponseStream(httpx.SyncByteStream):
    def __init__(self, stream: Iterable[bytes]) -> None:
        self._stream = stream

    def __iter__(self) -> Iterator[bytes]:
        with _as_httpx_errors():
            yield from self._stream

    def close(self) -> None:
        close = getattr(self._stream, "close", None)
        if close is not None:
            close()


class PinnedTransport(httpx.BaseTransport):
    """An httpx transport (httpx's documented custom-transport interface) over httpcore's
    connection pool with the pinned backend. No proxy: a proxy would resolve the name itself."""

    def __init__(
        self, backend: PinnedBackend, ssl_context: ssl.SSLContext, *, keepalive: int
    ) -> None:
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context,
            max_connections=None,  # bounded by the fetch threads, one request each at a time
            max_keepalive_connections=keepalive,
            keepalive_expiry=60.0,
            retries=0,
            network_backend=backend,
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.SyncByteStream)
        core = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _as_httpx_errors():
            response = self._pool.handle_request(core)
        assert isinstance(response.stream, Iterable)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_ResponseStream(response.stream),
            extensions=response.extensions,
        )

    def close(self) -> None:
        self._pool.close()
