"""DNS rebinding: a fhirServer connection goes only to an address the allow-list checked.

A stand-in resolver (``socket.getaddrinfo`` patched for made-up ``.test`` names only) answers a
public address to the check and 127.0.0.1 afterwards, the way a hostile DNS server would. A
listening socket on 127.0.0.1 stands for the internal service the attacker wants reached and
records every connection it gets; the public address is never really dialled (``pinned.dial`` is
wrapped: it records, and refuses anything but loopback, so no test leaves the machine).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests

from cds_service.errors import DataUnavailable
from cds_service.fhir import allow, pinned
from cds_service.fhir.allow import check_fhir_server, forget_pins, pinned_addresses
from cds_service.fhir.gather import _transport, gather
from cds_service.fhir.pinned import PinnedAdapter, PinnedHTTPSConnection
from cds_service.protocol.auth import ANONYMOUS
from cds_service.settings import Settings
from tests.fhir.conftest import declared_service
from tests.support.fhir_server import FhirTestServer

REVIEW = declared_service("myopathy-review", "patient-view")
PUBLIC = "93.184.215.14"  # a global unicast address; never actually dialled here
HOST = "fhir.rebind.test"
LOOPBACK_HOST = "fhir.loopback.test"  # always 127.0.0.1; its own count (no stray lookups)
CONTEXT = {"patientId": "p-1", "userId": "Practitioner/u"}
SETTINGS = Settings().with_overrides(
    auth="off", fhir_timeout_seconds=2.0, hook_deadline_seconds=4.0
)


@dataclass
class Listener:
    """A TCP server on 127.0.0.1 that records each connection and the first bytes sent on it."""

    sock: socket.socket = field(default_factory=socket.socket)
    received: list[bytes] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)

    def start(self) -> Listener:
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.05)
        threading.Thread(target=self._serve, daemon=True).start()
        return self

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def _serve(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(1.0)
                try:
                    data = conn.recv(4096)
                except OSError:
                    data = b""
                self.received.append(data)
                body = b'{"resourceType":"Bundle","type":"searchset","entry":[]}'
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/fhir+json\r\n"
                    + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                    + body
                )

    def stop(self) -> None:
        self.stopping.set()
        self.sock.close()


@dataclass
class Rebinding:
    """The hostile DNS: the first lookup of ``HOST`` is public, every later one is 127.0.0.1."""

    lookups: int = 0
    loopback_lookups: int = 0

    def answer(self) -> str:
        self.lookups += 1
        return PUBLIC if self.lookups == 1 else "127.0.0.1"


@pytest.fixture(autouse=True)
def fresh_pins() -> Iterator[None]:
    forget_pins()
    yield
    forget_pins()


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener().start()
    yield server
    server.stop()


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> Rebinding:
    rebinding = Rebinding()
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name.endswith(".test"):
            if name == LOOPBACK_HOST:
                rebinding.loopback_lookups += 1
                address = "127.0.0.1"
            elif name == HOST:
                address = rebinding.answer()
            else:
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
            sockaddr = (address, int(port))
            return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", sockaddr)]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return rebinding


@pytest.fixture
def dials(monkeypatch: pytest.MonkeyPatch) -> list[tuple[tuple[str, ...], int]]:
    """Every ``pinned.dial``; loopback is really dialled, anything else refused (no network)."""
    seen: list[tuple[tuple[str, ...], int]] = []
    real = pinned.dial

    def dial(addresses: Any, port: int, timeout: Any, options: Any) -> socket.socket:
        seen.append((tuple(addresses), port))
        if all(a == "127.0.0.1" for a in addresses):
            return real(addresses, port, timeout, options)
        raise ConnectionRefusedError("test: no connections beyond 127.0.0.1")

    monkeypatch.setattr(pinned, "dial", dial)
    return seen


def _wait_for_idle_fetches(settings: Settings) -> None:
    """Return once no fetch of an earlier gather is still running (they stop at their next step
    after a failure): one task per worker meeting at a barrier means every worker is free, so no
    straggler resolves names under the next test's resolver."""
    size = settings.fhir_pool_size
    barrier = threading.Barrier(size + 1)
    for _ in range(size):
        _transport(settings).executor.submit(barrier.wait, 5.0)
    barrier.wait(5.0)


def _body(port: int, scheme: str = "https") -> dict[str, Any]:
    return {
        "hook": "patient-view",
        "hookInstance": "h-1",
        "fhirServer": f"{scheme}://{HOST}:{port}/r4",
        "context": dict(CONTEXT),
    }


def test_the_test_setup_detects_rebinding_when_nothing_pins(
    dns: Rebinding, listener: Listener
) -> None:
    # Without pinning, a client resolving the name again lands on the listener: what the tests
    # below show does not happen through the fhirServer transport.
    assert allow.system_resolver(HOST, listener.port) == [PUBLIC]
    plain = requests.Session()
    plain.trust_env = False
    plain.get(f"http://{HOST}:{listener.port}/r4/metadata", timeout=2).close()
    assert len(listener.received) == 1


def test_rebinding_after_the_check_never_reaches_loopback(
    dns: Rebinding, listener: Listener, dials: list[tuple[tuple[str, ...], int]]
) -> None:
    with pytest.raises(DataUnavailable) as info:
        gather(REVIEW, _body(listener.port), SETTINGS)
    _wait_for_idle_fetches(SETTINGS)
    assert info.value.status == 412 and "prefetch key '" in info.value.message
    assert listener.received == []
    assert dials and all(d == ((PUBLIC,), listener.port) for d in dials)
    assert dns.lookups == 1  # the check's; the connections used its answer


def test_a_new_connection_without_a_current_pin_is_checked_again(
    dns: Rebinding,
    listener: Listener,
    dials: list[tuple[tuple[str, ...], int]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Pins expire at once: every connection resolves again and meets the rebound 127.0.0.1.
    monkeypatch.setattr(allow, "_pin_seconds", lambda settings: 0.0)
    monkeypatch.setattr(allow, "PIN_SECONDS", 0.0)
    with pytest.raises(DataUnavailable) as info:
        gather(REVIEW, _body(listener.port), SETTINGS)
    _wait_for_idle_fetches(SETTINGS)
    assert info.value.status == 412
    assert "may not be called" in info.value.message
    assert "loopback" in info.value.message
    assert listener.received == [] and dials == []
    assert dns.lookups >= 2


def test_a_refused_address_is_never_pinned(dns: Rebinding) -> None:
    with pytest.raises(allow.FhirServerRefused, match="loopback"):
        pinned_addresses("https", LOOPBACK_HOST, 443, timeout=1.0)
    with pytest.raises(allow.FhirServerRefused, match="loopback"):
        pinned_addresses("https", LOOPBACK_HOST, 443, timeout=1.0)
    assert dns.loopback_lookups == 2  # nothing was remembered from the refused answer


def test_the_check_pins_what_it_checked(dns: Rebinding) -> None:
    pin = check_fhir_server(f"https://{HOST}/r4", SETTINGS, ANONYMOUS)
    assert pin.addresses == (PUBLIC,)
    assert pinned_addresses("https", HOST.upper() + ".", 443, timeout=1.0) == (PUBLIC,)
    assert dns.lookups == 1


def test_an_allow_listed_origin_resolves_as_usual(
    dns: Rebinding, listener: Listener, dials: list[tuple[tuple[str, ...], int]]
) -> None:
    # MYOCDS_FHIR_ALLOW (development, in-cluster servers) skips the address checks as before.
    base = f"http://{HOST}:{listener.port}/r4"
    settings = SETTINGS.with_overrides(fhir_allow=(base,))
    assert check_fhir_server(base, settings, ANONYMOUS).addresses is None
    dns.lookups = 1  # so the connection's own lookup answers 127.0.0.1
    _transport(settings).session.get(f"{base}/Condition", timeout=2).close()
    assert dials == [] and len(listener.received) == 1


def test_a_pinned_connection_keeps_the_host_name_in_the_host_header(
    dns: Rebinding, listener: Listener, dials: list[tuple[tuple[str, ...], int]]
) -> None:
    allow._record_pin(("http", HOST, listener.port), ("127.0.0.1",), 60.0)
    response = _transport(SETTINGS).session.get(f"http://{HOST}:{listener.port}/r4/x", timeout=2)
    assert response.status_code == 200
    assert dials == [(("127.0.0.1",), listener.port)] and dns.lookups == 0
    assert f"\r\nHost: {HOST}:{listener.port}\r\n".encode() in listener.received[0]


def test_pooled_connections_are_reused_through_a_pin(
    dns: Rebinding, dials: list[tuple[tuple[str, ...], int]]
) -> None:
    server = FhirTestServer(
        record={"resourceType": "Bundle", "type": "collection", "entry": []}
    ).start()
    try:
        port = int(server.origin.rsplit(":", 1)[1])
        base = server.base_url.replace("127.0.0.1", HOST)
        allow._record_pin(("http", HOST, port), ("127.0.0.1",), 60.0)
        session = _transport(SETTINGS).session
        for _ in range(3):
            response = session.get(f"{base}/Condition?patient=p-1", timeout=2)
            assert response.status_code == 200 and response.json()["resourceType"] == "Bundle"
            response.close()
        assert server.wait_until_idle(timeout=2.0)
        assert len(server.requests) == 3
        assert len({r.client_port for r in server.requests}) == 1  # one kept-alive connection
        assert dials == [(("127.0.0.1",), port)] and dns.lookups == 0
    finally:
        server.stop()


def test_https_connections_send_the_host_name_as_sni_and_verify_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    adapter = PinnedAdapter(max_retries=0)
    prepared = requests.Request("GET", "https://fhir.example.org/r4/Patient/1").prepare()
    pool = adapter.get_connection_with_tls_context(prepared, verify=True)
    conn = pool._new_conn()
    assert isinstance(conn, PinnedHTTPSConnection)
    assert (conn.host, conn.port) == ("fhir.example.org", 443)
    # No override of the name TLS uses: SNI and certificate matching take conn.host.
    assert conn.server_hostname is None and conn.assert_hostname is None
    assert conn.cert_reqs == "CERT_REQUIRED"

    # Dial a socketpair instead of the network and read the ClientHello the connection sends.
    ours, theirs = socket.socketpair()
    dialled: list[tuple[str, ...]] = []

    def dial(addresses: Any, port: int, timeout: Any, options: Any) -> socket.socket:
        dialled.append(tuple(addresses))
        ours.settimeout(0.3)
        return ours

    monkeypatch.setattr(pinned, "dial", dial)
    allow._record_pin(("https", "fhir.example.org", 443), (PUBLIC,), 60.0)
    conn.timeout = 0.3
    with pytest.raises(OSError):  # ssl.SSLError and timeouts are OSErrors
        conn.connect()  # no server answers the handshake
    theirs.settimeout(1.0)
    hello = theirs.recv(65536)
    theirs.close()
    assert dialled == [(PUBLIC,)]
    assert hello[:1] == b"\x16"  # a TLS handshake record
    assert b"fhir.example.org" in hello and PUBLIC.encode() not in hello
