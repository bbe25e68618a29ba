"""Which fhirServer we may call: the egress policy, checked before any request or token leaves.

``EgressPolicy(exempt_bases, issuer_bases).admit(url)`` raises ``FhirServerRefused`` (412, a clear
reason) unless the URL passes the checks that need no network; ``refuse_addresses`` then checks
the addresses its host resolves to (``cds_service/fhir/pinned.py`` resolves, pins and dials):

1. The URL is a plain http(s) base URL: no userinfo (``https://allowed.example@evil`` names the
   host ``evil``), no query or fragment, no ``.``/``..`` path segments, no whitespace, control
   characters or backslashes (parsers disagree about those: how allow-lists get bypassed).
2. With ``issuer_bases`` given (authentication on: the calling issuer's ``fhirServers``), it lies
   within one of them. An EHR can only send us to its own FHIR servers, never to someone else's
   or to our network.
3. Unless it lies within an ``exempt_bases`` prefix (``MYOCDS_FHIR_ALLOW``: development,
   in-cluster servers): the scheme is https (CDS Hooks 2.0 §6.1), and the host resolves only to
   public addresses: not loopback, link-local (169.254/16 with the cloud metadata service
   169.254.169.254, fe80::/10), private (10/8, 172.16/12, 192.168/16, fc00::/7), unspecified,
   multicast or otherwise non-global. IP literals in any notation (``2130706433``, ``0x7f.1``,
   ``[::ffff:127.0.0.1]``) are caught because the resolved addresses are what gets checked. An
   IPv6 address that embeds an IPv4 address (IPv4-mapped, IPv4-compatible ``::a.b.c.d``, NAT64
   ``64:ff9b::/96`` and ``64:ff9b:1::/48``, 6to4 ``2002::/16``, Teredo ``2001::/32``) is refused
   when the embedded address would be: a translator or tunnel on the way may deliver it there.
   Path segments are checked after percent-decoding (``..%2f``, ``%2e%2e``).

"Lies within" compares parsed parts: same scheme, host and port, and the path equal to the base
path or below it on a ``/`` boundary; so ``https://fhir.example.org`` does not admit
``https://fhir.example.org.evil.com`` and ``/fhir`` does not admit ``/fhir-other``.

The policy takes plain values (the allowed bases), not a caller object: ``fhir`` knows nothing of
how a caller was authenticated.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from cds_service.errors import FhirServerRefused

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_DEFAULT_PORTS = {"http": 80, "https": 443}
_MAX_URL_LENGTH = 2048


@dataclass(frozen=True)
class _Base:
    scheme: str
    host: str
    port: int
    path: str  # without trailing slash


@dataclass(frozen=True)
class Admitted:
    """A fhirServer the policy admits: its host and port, and whether its addresses go unchecked."""

    host: str  # as host_key writes it
    port: int
    exempt: bool  # within an exempt base (MYOCDS_FHIR_ALLOW): resolved as usual, never pinned


@dataclass(frozen=True)
class EgressPolicy:
    """Where one hook call may send requests (and its token).

    ``exempt_bases``: ``MYOCDS_FHIR_ALLOW``, prefixes called without the https and address checks.
    ``issuer_bases``: the calling issuer's ``fhirServers``; ``None`` when no issuer restricts the
    call (authentication off), ``()`` when nothing is allowed.
    """

    exempt_bases: tuple[str, ...] = ()
    issuer_bases: tuple[str, ...] | None = ()

    def admit(self, url: str) -> Admitted:
        """Checks 1, 2 and the https part of 3; ``FhirServerRefused`` when one fails."""
        target = _parse(url)
        if self.issuer_bases is not None and not _within(target, self.issuer_bases):
            raise FhirServerRefused(
                "fhirServer is not on the allow-list of the calling issuer", expression="fhirServer"
            )
        host = host_key(target.host)
        if _within(target, self.exempt_bases):
            return Admitted(host, target.port, exempt=True)
        if target.scheme != "https":
            raise FhirServerRefused(
                "fhirServer must use https (or be listed in MYOCDS_FHIR_ALLOW)",
                expression="fhirServer",
            )
        return Admitted(host, target.port, exempt=False)


def host_key(host: str) -> str:
    """The comparable form of a host name: lower case, no brackets or final dot, IDNA (the
    transport sees the ASCII form of an internationalized name; a form that still differs only
    misses its pin, and the connection is then checked afresh)."""
    name = host.strip("[]").rstrip(".").lower()
    try:
        name = name.encode("idna").decode("ascii")
    except UnicodeError:
        pass
    return name


def refuse_addresses(addresses: Iterable[IPAddress]) -> None:
    """``FhirServerRefused`` naming the first address that is not public."""
    for address in addresses:
        reason = _refusal_reason(address)
        if reason is not None:
            raise FhirServerRefused(
                f"fhirServer host resolves to {reason}; "
                "such servers must be listed in MYOCDS_FHIR_ALLOW",
                expression="fhirServer",
            )


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


def _parse(url: str) -> _Base:
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
    return _Base(scheme, host.lower(), port, parts.path.rstrip("/"))


def _parse_base(base: str) -> _Base | None:
    try:
        return _parse(base)
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
