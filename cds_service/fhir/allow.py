"""Which fhirServer we may call, checked before any request or token leaves the service.

``check_fhir_server(url, settings, caller)`` raises ``FhirServerRefused`` (412, a clear reason)
unless every check passes:

1. The URL is a plain http(s) base URL: no userinfo (``https://allowed.example@evil`` names the
   host ``evil``), no query or fragment, no ``.``/``..`` path segments, no whitespace, control
   characters or backslashes (parsers disagree about those: how allow-lists get bypassed).
2. With authentication on, it lies within a ``fhirServers`` base URL of the caller's issuer. An
   EHR can only send us to its own FHIR servers, never to someone else's or to our network.
3. Unless it lies within a ``MYOCDS_FHIR_ALLOW`` prefix (development, in-cluster servers): the
   scheme is https (CDS Hooks 2.0 §6.1), and the host resolves only to public addresses: not
   loopback, link-local (169.254/16 with the cloud metadata service 169.254.169.254, fe80::/10),
   private (10/8, 172.16/12, 192.168/16, fc00::/7), unspecified, multicast or otherwise
   non-global. IP literals in any notation (``2130706433``, ``0x7f.1``, ``[::ffff:127.0.0.1]``)
   are caught because the resolved addresses are what gets checked.

"Lies within" compares parsed parts: same scheme, host and port, and the path equal to the base
path or below it on a ``/`` boundary; so ``https://fhir.example.org`` does not admit
``https://fhir.example.org.evil.com`` and ``/fhir`` does not admit ``/fhir-other``.

Limit: the address check runs on a resolution made now; the HTTP client resolves again when it
connects. A hostile DNS server answering a public address here and a private one a moment later
(DNS rebinding) is not stopped by this check alone. Closing that gap needs connecting to the
checked address (pinning) or an egress proxy/network policy; deployments that trust issuers'
allow-lists to name only their own public servers are protected by check 2 regardless.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from urllib.parse import SplitResult, unquote, urlsplit

from cds_service.errors import FhirServerRefused
from cds_service.protocol.auth import Caller
from cds_service.settings import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Iterable[str]]

_DEFAULT_PORTS = {"http": 80, "https": 443}
_MAX_URL_LENGTH = 2048
# Resolution runs in a small pool so a stalled resolver cannot hold a request past its deadline.
_RESOLVER_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="fhir-allow-dns")


@dataclass(frozen=True)
class _Base:
    scheme: str
    host: str
    port: int
    path: str  # without trailing slash


def _parse(url: str) -> tuple[_Base, SplitResult]:
    if not isinstance(url, str) or not url:
        raise FhirServerRefused("fhirServer is not a URL", expression="fhirServer")
    if len(url) > _MAX_URL_LENGTH:
        raise FhirServerRefused("fhirServer URL is too long", expression="fhirServer")
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F or c == "\\" for c in url):
        raise FhirServerRefused(
            "fhirServer URL contains whitespace, control characters or backslashes",
            expression="fhirServer",
        )
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise FhirServerRefused("fhirServer must be an http(s) URL", expression="fhirServer")
    if "@" in parts.netloc:
        raise FhirServerRefused(
            "fhirServer URL must not contain user information ('user@host')",
            expression="fhirServer",
        )
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        raise FhirServerRefused(
            "fhirServer must be a base URL without query or fragment", expression="fhirServer"
        )
    if any(unquote(segment) in (".", "..") for segment in parts.path.split("/")):
        # "/fhir/../admin" passes a prefix test, then the server normalizes it away.
        raise FhirServerRefused(
            "fhirServer URL must not contain '.' or '..' path segments", expression="fhirServer"
        )
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise FhirServerRefused("fhirServer URL has no host", expression="fhirServer")
    try:
        port = parts.port or _DEFAULT_PORTS[scheme]
    except ValueError:
        raise FhirServerRefused(
            "fhirServer URL has an invalid port", expression="fhirServer"
        ) from None
    return _Base(scheme, host.lower(), port, parts.path.rstrip("/")), parts


def _parse_base(base: str) -> _Base | None:
    try:
        return _parse(base)[0]
    except FhirServerRefused:
        return None  # a malformed allow-list entry admits nothing


def _within(target: _Base, bases: Iterable[str]) -> bool:
    for raw in bases:
        base = _parse_base(raw)
        if base is None:
            continue
        if (base.scheme, base.host, base.port) != (target.scheme, target.host, target.port):
            continue
        # A configured base ending in "/" (e.g. ".../v/") admits everything below it.
        if base.path == "" or target.path == base.path or target.path.startswith(base.path + "/"):
            return True
    return False


def _refusal_reason(address: IPAddress) -> str | None:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address (169.254.0.0/16, fe80::/10, cloud metadata)"
    if address.is_private:
        return "a private address (10/8, 172.16/12, 192.168/16, fc00::/7 and similar)"
    if address.is_multicast:
        return "a multicast address"
    if not address.is_global:
        return "a non-public address"
    return None


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def _addresses(host: str, port: int, resolve: Resolver, timeout: float) -> list[IPAddress]:
    try:
        # An IP literal needs no resolver (and must not be sent to one).
        return [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        pass
    future = _RESOLVER_POOL.submit(lambda: list(resolve(host, port)))
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
        raise FhirServerRefused("fhirServer host name does not resolve", expression="fhirServer")
    return addresses


def check_fhir_server(
    url: str, settings: Settings, caller: Caller, *, resolve: Resolver = system_resolver
) -> None:
    """Raise ``FhirServerRefused`` unless we may send requests (and a token) to ``url``."""
    target, _ = _parse(url)
    if settings.auth_required and not _within(target, caller.fhir_allow):
        raise FhirServerRefused(
            "fhirServer is not on the allow-list of the calling issuer", expression="fhirServer"
        )
    if _within(target, settings.fhir_allow):
        return
    if target.scheme != "https":
        raise FhirServerRefused(
            "fhirServer must use https (or be listed in MYOCDS_FHIR_ALLOW)",
            expression="fhirServer",
        )
    for address in _addresses(target.host, target.port, resolve, settings.fhir_timeout_seconds):
        reason = _refusal_reason(address)
        if reason is not None:
            raise FhirServerRefused(
                f"fhirServer host resolves to {reason}; "
                "such servers must be listed in MYOCDS_FHIR_ALLOW",
                expression="fhirServer",
            )
