"""DNS rebinding: a fhirServer connection goes only to an address the allow-list checked.

A stand-in resolver (``socket.getaddrinfo`` patched for made-up ``.test`` names only) answers a
public address to the check and 127.0.0.1 afterwards, the way a hostile DNS server would. A
listening socket on 127.0.0.1 stands for the internal service the attacker wants reached and
records every connection it gets. The FHIR client dials through a recording dialer (httpcore's
network backend, given to ``FhirClient``): it records every dial and refuses anything but
loopback, so the public address is never really dialled and no test leaves the machine.
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpcore
import httpx
import pytest

from cds_service.errors import DataUnavailable, FhirServerRefused
from cds_service.fhir.allow import EgressPolicy
from cds_service.fhir.client import FhirClient
from cds_service.fhir.gather import gather
from cds_service.fhir.pinned import system_lookup
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
ANYWHERE = EgressPolicy(issuer_bases=None)  # authentication off: no issuer restricts the call


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


@dataclass
class Dialer(httpcore.NetworkBackend):
    """The TCP dials of the client: recorded; loopback really dialled (or ``redirect``ed to a
    loopback port), anything else refused."""

    dials: list[tuple[str, int]] = field(default_factory=list)
    redirect: int | None = None  # dial this loopback port instead, whatever was asked

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        self.dials.append((host, port))
        system = httpcore.SyncBackend()
        if self.redirect is not None:
            return system.connect_tcp("127.0.0.1", self.redirect, timeout)
        if host == "127.0.0.1" or host.endswith(".test"):  # a .test name: the stand-in DNS
            return system.connect_tcp(host, port, timeout, local_address, socket_options)
        raise httpcore.ConnectError("test: no connections beyond 127.0.0.1")


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
def dialer() -> Dialer:
    return Dialer()


@pytest.fixture
def client(dialer: Dialer) -> Iterator[FhirClient]:
    fhir = FhirClient(pool_size=4, dialer=dialer)
    yield fhir
    fhir.close(wait_for_fetches=True)


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
    assert system_lookup(HOST, listener.port) == [PUBLIC]
    with httpx.Client(trust_env=False) as plain:
        plain.get(f"http://{HOST}:{listener.port}/r4/metadata", timeout=2)
    assert len(listener.received) == 1


def test_rebinding_after_the_check_never_reaches_loopback(
    dns: Rebinding, listener: Listener, dialer: Dialer, client: FhirClient
) -> None:
    with pytest.raises(DataUnavailable) as info:
        gather(REVIEW, _body(listener.port), SETTINGS, client=client, egress=ANYWHERE)
    client.close(wait_for_fetches=True)  # every fetch of the call has stopped
    assert info.value.status == 412 and "prefetch key '" in info.value.message
    assert listener.received == []
    assert dialer.dials and all(d == (PUBLIC, listener.port) for d in dialer.dials)
    assert dns.lookups == 1  # the check's; the connections used its answer


def test_a_new_connection_without_a_current_pin_is_checked_again(
    dns: Rebinding, listener: Listener, dialer: Dialer
) -> None:
    # Pins expire at once: every connection resolves again and meets the rebound 127.0.0.1.
    client = FhirClient(pool_size=4, dialer=dialer, pin_seconds=0.0)
    try:
        with pytest.raises(DataUnavailable) as info:
            gather(REVIEW, _body(listener.port), SETTINGS, client=client, egress=ANYWHERE)
    finally:
        client.close(wait_for_fetches=True)
    assert info.value.status == 412
    assert "may not be called" in info.value.message
    assert "loopback" in info.value.message
    assert listener.received == [] and dialer.dials == []
    assert dns.lookups >= 2


def test_a_refused_address_is_never_pinned(dns: Rebinding, client: FhirClient) -> None:
    with pytest.raises(FhirServerRefused, match="loopback"):
        client.pins.addresses(LOOPBACK_HOST, 443, timeout=1.0)
    with pytest.raises(FhirServerRefused, match="loopback"):
        client.pins.addresses(LOOPBACK_HOST, 443, timeout=1.0)
    assert dns.loopback_lookups == 2  # nothing was remembered from the refused answer


def test_the_check_pins_what_it_checked(dns: Rebinding, client: FhirClient) -> None:
    pin = client.pins.check(ANYWHERE, f"https://{HOST}/r4", timeout=2.0, seconds=30.0)
    assert pin.addresses == (PUBLIC,)
    assert client.pins.addresses(HOST.upper() + ".", 443, timeout=1.0) == (PUBLIC,)
    assert dns.lookups == 1


def test_an_allow_listed_origin_resolves_as_usual(
    dns: Rebinding, listener: Listener, dialer: Dialer, client: FhirClient
) -> None:
    # MYOCDS_FHIR_ALLOW (development, in-cluster servers) skips the address checks as before.
    base = f"http://{HOST}:{listener.port}/r4"
    policy = EgressPolicy(exempt_bases=(base,), issuer_bases=None)
    assert client.pins.check(policy, base, timeout=2.0, seconds=30.0).addresses is None
    dns.lookups = 1  # so the connection's own lookup answers 127.0.0.1
    client.http.get(f"{base}/Condition", timeout=2)
    assert dialer.dials == [(HOST, listener.port)]  # the name, resolved by the system
    assert len(listener.received) == 1


def test_a_pinned_connection_keeps_the_host_name_in_the_host_header(
    dns: Rebinding, listener: Listener, dialer: Dialer, client: FhirClient
) -> None:
    client.pins.record(HOST, listener.port, ("127.0.0.1",), 60.0)
    response = client.http.get(f"http://{HOST}:{listener.port}/r4/x", timeout=2)
    assert response.status_code == 200
    assert dialer.dials == [("127.0.0.1", listener.port)] and dns.lookups == 0
    assert f"\r\nHost: {HOST}:{listener.port}\r\n".encode() in listener.received[0]


def test_pooled_connections_are_reused_through_a_pin(
    dns: Rebinding, dialer: Dialer, client: FhirClient
) -> None:
    server = FhirTestServer(
        record={"resourceType": "Bundle", "type": "collection", "entry": []}
    ).start()
    try:
        port = int(server.origin.rsplit(":", 1)[1])
        base = server.base_url.replace("127.0.0.1", HOST)
        client.pins.record(HOST, port, ("127.0.0.1",), 60.0)
        for _ in range(3):
            response = client.http.get(f"{base}/Condition?patient=p-1", timeout=2)
            assert response.status_code == 200 and response.json()["resourceType"] == "Bundle"
        assert server.wait_until_idle(timeout=2.0)
        assert len(server.requests) == 3
        assert len({r.client_port for r in server.requests}) == 1  # one kept-alive connection
        assert dialer.dials == [("127.0.0.1", port)] and dns.lookups == 0
    finally:
        server.stop()


def test_https_connections_send_the_host_name_as_sni_and_verify_it(
    listener: Listener, dialer: Dialer, client: FhirClient
) -> None:
    # Certificates and host names are verified (httpx's default context).
    assert client.ssl_context.verify_mode == ssl.CERT_REQUIRED
    assert client.ssl_context.check_hostname
    # The pinned (public) address is "dialled" on the loopback listener, which reads the
    # ClientHello the connection sends and answers nonsense, so the handshake fails.
    dialer.redirect = listener.port
    client.pins.record("fhir.example.org", 443, (PUBLIC,), 60.0)
    with pytest.raises(httpx.HTTPError):
        client.http.get("https://fhir.example.org/r4/Patient/1", timeout=1.0)
    assert dialer.dials == [(PUBLIC, 443)]
    hello = listener.received[0]
    assert hello[:1] == b"\x16"  # a TLS handshake record
    assert b"fhir.example.org" in hello and PUBLIC.encode() not in hello
