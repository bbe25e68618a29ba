"""The fhirServer transport: connections dial only addresses the allow-list checked.

``check_fhir_server`` (allow.py) resolves the fhirServer host and checks every address; if the
HTTP client then resolved the name again, a hostile DNS server could answer a public address to
the check and 127.0.0.1 or 169.254.169.254 to the connection (DNS rebinding). ``PinnedAdapter``
gives urllib3 connection classes whose socket goes to an address from ``pinned_addresses`` (the
check's answer, or a fresh resolution checked the same way) and never through the system
resolver. Everything else is urllib3's own: the connection keeps the host name, so the ``Host``
header, TLS SNI and certificate verification (``server_hostname`` = host) name the host, not the
address; pooling, keep-alive, timeouts and streaming are unchanged.

Written against urllib3 2.x: the only override is ``HTTPConnection._new_conn`` (open the socket),
which ``HTTPSConnection.connect`` calls before wrapping TLS around it.
"""

from __future__ import annotations

import ipaddress
import socket
import sys
from collections.abc import Sequence
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from cds_service.errors import FhirServerRefused
from cds_service.fhir.allow import pinned_addresses

# Resolution wait when urllib3 gives the connection no numeric connect timeout.
_RESOLVE_TIMEOUT = 2.0


class PinRefused(NewConnectionError):
    """The host, resolved again for a new connection, now names an address we may not call."""

    def __init__(self, conn: Any, reason: str) -> None:
        super().__init__(conn, reason)
        self.reason = reason


def dial(
    addresses: Sequence[str], port: int, timeout: float | None, options: Sequence[Any]
) -> socket.socket:
    """Connect to the first of ``addresses`` that answers (all of them checked); no resolver."""
    error: OSError | None = None
    for text in addresses:
        address = ipaddress.ip_address(text)
        family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            for option in options:
                sock.setsockopt(*option)
            sock.settimeout(timeout)
            sock.connect((text, port, 0, 0) if address.version == 6 else (text, port))
            return sock
        except OSError as exc:
            error = exc
            sock.close()
    raise error if error is not None else OSError("no address to connect to")


class _PinnedConnection(HTTPConnection):
    """``_new_conn`` of urllib3's HTTPConnection, dialling a checked address."""

    _scheme = "http"

    def _new_conn(self) -> socket.socket:
        # A number, None (blocking) or urllib3's "default" token (the socket default: blocking).
        timeout = float(self.timeout) if isinstance(self.timeout, int | float) else None
        try:
            addresses = pinned_addresses(
                self._scheme,
                self.host,
                self.port,
                timeout=timeout if timeout is not None else _RESOLVE_TIMEOUT,
            )
        except FhirServerRefused as exc:
            raise PinRefused(self, exc.message) from None
        if addresses is None:  # an origin allowed by MYOCDS_FHIR_ALLOW: resolved as usual
            return super()._new_conn()
        try:
            sock = dial(addresses, self.port, timeout, self.socket_options or ())
        except TimeoutError as exc:  # socket.timeout is TimeoutError since 3.10
            raise ConnectTimeoutError(
                self, f"Connection to {self.host} timed out. (connect timeout={self.timeout})"
            ) from exc
        except OSError as exc:
            raise NewConnectionError(self, f"Failed to establish a new connection: {exc}") from exc
        sys.audit("http.client.connect", self, self.host, self.port)
        return sock


class PinnedHTTPConnection(_PinnedConnection):
    _scheme = "http"


class PinnedHTTPSConnection(_PinnedConnection, HTTPSConnection):
    _scheme = "https"


class _PinnedHTTPPool(HTTPConnectionPool):
    ConnectionCls = PinnedHTTPConnection


class _PinnedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = PinnedHTTPSConnection


class PinnedAdapter(HTTPAdapter):
    """``HTTPAdapter`` whose pools open pinned connections. Its session must not use proxies
    (``trust_env = False``): a proxy connection would be opened, and resolved, elsewhere."""

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any
    ) -> None:
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _PinnedHTTPPool,
            "https": _PinnedHTTPSPool,
        }
