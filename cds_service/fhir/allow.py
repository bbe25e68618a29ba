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
   are caught because the resolved addresses are what gets checked. An IPv6 address that embeds
   an IPv4 address (IPv4-mapped, IPv4-compatible ``::a.b.c.d``, NAT64 ``64:ff9b::/96`` and
   ``64:ff9b:1::/48``, 6to4 ``2002::/16``, Teredo ``2001::/32``) is refused when the embedded
   address would be: a translator or tunnel on the way may deliver it there. Path segments are
   checked after percent-decoding (``..%2f``, ``%2e%2e``).

"Lies within" compares parsed parts: same scheme, host and port, and the path equal to the base
path or below it on a ``/`` boundary; so ``https://fhir.example.org`` does not admit
``https://fhir.example.org.evil.com`` and ``/fhir`` does not admit ``/fhir-other``.

DNS rebinding: the addresses a host resolved to in check 3 are recorded as the origin's pin
(``Pin``, kept ``PIN_SECONDS``), and the transport (``cds_service/fhir/pinned.py``) dials only
pinned addresses, keeping the host name for ``Host``, TLS SNI and certificate verification. A
connection opened with no current pin resolves and checks the host again before dialling
(``pinned_addresses``), so no connection ever goes to an address that was not checked. A host
answering a public address to the check and a private one a moment later gets the public one.
Pins are per origin (scheme, host, port): an origin checked through a ``MYOCDS_FHIR_ALLOW``
prefix is pinned as exempt and its connections resolve as usual.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import threading
import time
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
# How long a check's addresses serve new connections to the origin. Every hook call that fetches
# checks (and re-pins) its fhirServer first; a connection opened after the pin expired resolves and
# checks again. Short, so a server that moves is followed, and a pin always outlives the call that
# made it (see _pin_seconds).
PIN_SECONDS = 30.0
_MAX_PINS = 4096


@dataclass(frozen=True)
class Pin:
    """What a connection to one origin may dial: checked addresses, or ``None`` for an origin
    allowed by a ``MYOCDS_FHIR_ALLOW`` prefix (its addresses are not checked)."""

    addresses: tuple[str, ...] | None
    expires: float  # time.monotonic() value


_Origin = tuple[str, str, int]
_pins: dict[_Origin, Pin] = {}
_pins_lock = threading.Lock()


@dataclass(frozen=True)
class _Base:
    scheme: str
    host: str
    port: int
    path: str  # without trailing slash


def has_dot_segment(path: str) -> bool:
    """Does ``path`` hold a ``.`` or ``..`` segment once percent-decoded?

    Decoded before it is split, and again while it still changes: ``..%2f``, ``%2e%2e`` and
    ``%252e%252e`` are all ``..`` to some server or proxy on the way. A backslash counts as a
    separator (some servers treat it as one).
    """
    decoded = path
    for _ in range(4):
        once = unquote(decoded)
        if once == decoded:
            break
        decoded = once
    return any(segment in (".", "..") for segment in re.split(r"[/\\]", decoded))


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
    if has_dot_segment(parts.path):
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


# IPv6 forms that carry an IPv4 address a translator, relay or tunnel may deliver to: NAT64 with
# the well-known prefix (RFC 6052) and the local-use prefix (RFC 8215), and the deprecated
# IPv4-compatible form (RFC 4291 §2.5.5.1). 6to4 and Teredo have ipaddress properties.
_NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL_USE = ipaddress.IPv6Network("64:ff9b:1::/48")
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
_IPV4_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")  # SIIT (RFC 2765)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> list[tuple[str, ipaddress.IPv4Address]]:
    """The IPv4 addresses an IPv6 address embeds, each with the form's name."""
    value = int(address)
    found: list[tuple[str, ipaddress.IPv4Address]] = []
    if address.ipv4_mapped is not None:
        found.append(("IPv4-mapped", address.ipv4_mapped))
    compatible = address in _IPV4_COMPATIBLE and value > 1  # not :: nor ::1 (their own kind)
    if compatible or address in _IPV4_TRANSLATED or address in _NAT64_WELL_KNOWN:
        name = "NAT64" if address in _NAT64_WELL_KNOWN else "IPv4-compatible"
        found.append((name, ipaddress.IPv4Address(value & 0xFFFFFFFF)))
    if address in _NAT64_LOCAL_USE:
        # A /48 prefix puts the IPv4 address in bits 48-63 and 72-87 (bits 64-71 are "u").
        high = (value >> 64) & 0xFFFF
        low = (value >> 40) & 0xFFFF
        found.append(("NAT64", ipaddress.IPv4Address((high << 16) | low)))
    if address.sixtofour is not None:
        found.append(("6to4", address.sixtofour))
    if address.teredo is not None:
        server, client = address.teredo
        found.extend((("Teredo", server), ("Teredo", client)))
    return found


def _refusal_reason(address: IPAddress) -> str | None:
    if isinstance(address, ipaddress.IPv6Address):
        for form, embedded in _embedded_ipv4(address):
            reason = _ipv4_or_ipv6_reason(embedded)
            if reason is not None:
                return f"an IPv6 address ({form}) embedding {reason}"
    return _ipv4_or_ipv6_reason(address)


def _ipv4_or_ipv6_reason(address: IPAddress) -> str | None:
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


def _origin(scheme: str, host: str, port: int) -> _Origin:
    name = host.strip("[]").rstrip(".").lower()
    try:
        # The transport sees the ASCII (punycode) form of an internationalized name; a form that
        # still differs only misses the pin, and the connection is then checked afresh.
        name = name.encode("idna").decode("ascii")
    except UnicodeError:
        pass
    return scheme.lower(), name, port


def _record_pin(origin: _Origin, addresses: tuple[str, ...] | None, seconds: float) -> Pin:
    pin = Pin(addresses=addresses, expires=time.monotonic() + seconds)
    with _pins_lock:
        if origin not in _pins and len(_pins) >= _MAX_PINS:
            now = time.monotonic()
            for key in [k for k, p in _pins.items() if p.expires <= now] or list(_pins)[:1]:
                del _pins[key]
        _pins[origin] = pin
    return pin


def forget_pins() -> None:
    """Drop every pin (tests; the next connection to any origin resolves and checks again)."""
    with _pins_lock:
        _pins.clear()


def _checked_addresses(host: str, port: int, resolve: Resolver, timeout: float) -> tuple[str, ...]:
    """The host's addresses, each one checked; ``FhirServerRefused`` if any is not public."""
    addresses = _addresses(host, port, resolve, timeout)
    for address in addresses:
        reason = _refusal_reason(address)
        if reason is not None:
            raise FhirServerRefused(
                f"fhirServer host resolves to {reason}; "
                "such servers must be listed in MYOCDS_FHIR_ALLOW",
                expression="fhirServer",
            )
    # Dial order = resolver order; duplicates (one per socket type or family answer) dropped.
    return tuple(dict.fromkeys(str(a) for a in addresses))


def pinned_addresses(
    scheme: str, host: str, port: int, *, timeout: float
) -> tuple[str, ...] | None:
    """The addresses a new connection to (scheme, host, port) may dial; ``None``: resolve as usual.

    A current pin (from the check of this hook call) answers; without one the host is resolved
    and checked now (strictly: only a check through the settings can exempt an origin) and the
    result pinned. Raises ``FhirServerRefused`` when an address is not public.
    """
    origin = _origin(scheme, host, port)
    with _pins_lock:
        pin = _pins.get(origin)
    if pin is not None and pin.expires > time.monotonic():
        return pin.addresses
    addresses = _checked_addresses(origin[1], port, system_resolver, timeout)
    return _record_pin(origin, addresses, PIN_SECONDS).addresses


def _pin_seconds(settings: Settings) -> float:
    # A call's later connections (next pages, Medication reads) must still find its pin.
    return max(PIN_SECONDS, settings.hook_deadline_seconds + settings.fhir_timeout_seconds)


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
    url: str, settings: Settings, caller: Caller, *, resolve: Resolver | None = None
) -> Pin:
    """Raise ``FhirServerRefused`` unless we may send requests (and a token) to ``url``.

    Returns (and records for the transport) the origin's pin: the checked addresses connections
    to it will dial, or no addresses for an origin allowed by a ``MYOCDS_FHIR_ALLOW`` prefix.
    """
    target, _ = _parse(url)
    if settings.auth_required and not _within(target, caller.fhir_allow):
        raise FhirServerRefused(
            "fhirServer is not on the allow-list of the calling issuer", expression="fhirServer"
        )
    origin = _origin(target.scheme, target.host, target.port)
    if _within(target, settings.fhir_allow):
        return _record_pin(origin, None, _pin_seconds(settings))
    if target.scheme != "https":
        raise FhirServerRefused(
            "fhirServer must use https (or be listed in MYOCDS_FHIR_ALLOW)",
            expression="fhirServer",
        )
    addresses = _checked_addresses(
        target.host,
        target.port,
        resolve if resolve is not None else system_resolver,
        settings.fhir_timeout_seconds,
    )
    return _record_pin(origin, addresses, _pin_seconds(settings))
