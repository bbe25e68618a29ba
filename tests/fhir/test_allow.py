"""fhirServer allow-list: the service never sends a request or token where it should not."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from cds_service.errors import FhirServerRefused
from cds_service.fhir.pinned import Lookup, Pin, Pins, system_lookup
from cds_service.pipeline import egress_policy
from cds_service.protocol.auth import ANONYMOUS, Caller
from cds_service.settings import Settings

AUTH_ON = Settings()
AUTH_OFF = Settings(auth="off")
EHR = Caller(
    issuer="https://ehr.test.example", tenant=None, fhir_allow=("https://fhir.test.example/r4",)
)
PUBLIC = "93.184.215.14"  # a global unicast address


def check_fhir_server(
    url: str, settings: Settings, caller: Caller, *, resolve: Lookup | None = None
) -> Pin:
    """The check a hook call makes before it fetches: the egress policy of its settings and
    caller (``pipeline.egress_policy``), names resolved by ``resolve`` (else the system's)."""
    pins = Pins(resolve or system_lookup)
    try:
        policy = egress_policy(settings, caller)
        return pins.check(policy, url, timeout=settings.fhir_timeout_seconds, seconds=30.0)
    finally:
        pins.close()


def resolver(*addresses: str):
    """A DNS stand-in: every name resolves to ``addresses`` (no network in tests)."""

    def resolve(host: str, port: int) -> Iterable[str]:
        if not addresses:
            raise OSError("Name or service not known")
        return addresses

    return resolve


def refused(
    url: str,
    settings: Settings = AUTH_OFF,
    caller: Caller = ANONYMOUS,
    addresses: tuple[str, ...] = (PUBLIC,),
) -> str:
    with pytest.raises(FhirServerRefused) as info:
        check_fhir_server(url, settings, caller, resolve=resolver(*addresses))
    assert info.value.status == 412
    return info.value.message


def test_issuer_allow_listed_https_server_is_allowed() -> None:
    check_fhir_server("https://fhir.test.example/r4", AUTH_ON, EHR, resolve=resolver(PUBLIC))
    check_fhir_server("https://fhir.test.example/r4/", AUTH_ON, EHR, resolve=resolver(PUBLIC))
    check_fhir_server(
        "https://FHIR.test.example:443/r4/sub", AUTH_ON, EHR, resolve=resolver(PUBLIC)
    )


@pytest.mark.parametrize(
    "url",
    [
        "https://other.example/r4",
        "https://fhir.test.example/r4-other",  # path prefix without a segment boundary
        "https://fhir.test.example/r5",
        "https://fhir.test.example.evil.com/r4",  # host prefix
        "https://fhir.test.example:8443/r4",  # another port
        "http://fhir.test.example/r4",  # another scheme
    ],
)
def test_server_outside_the_issuer_allow_list_is_refused(url: str) -> None:
    assert "allow-list of the calling issuer" in refused(url, AUTH_ON, EHR)


def test_with_auth_on_an_anonymous_caller_may_call_nothing() -> None:
    assert "allow-list" in refused("https://fhir.test.example/r4", AUTH_ON, ANONYMOUS)


def test_http_is_refused_unless_allowed_by_prefix() -> None:
    assert "https" in refused("http://fhir.test.example/r4")
    dev = AUTH_OFF.with_overrides(fhir_allow=("http://127.0.0.1:8081/fhir",))
    check_fhir_server("http://127.0.0.1:8081/fhir", dev, ANONYMOUS, resolve=resolver())
    check_fhir_server("http://127.0.0.1:8081/fhir/", dev, ANONYMOUS, resolve=resolver())
    assert "https" in refused("http://127.0.0.1:8081/fhirx", dev)
    assert "https" in refused("http://127.0.0.1:8082/fhir", dev)


def test_prefix_allow_still_requires_the_issuer_allow_list_when_auth_is_on() -> None:
    settings = AUTH_ON.with_overrides(fhir_allow=("http://127.0.0.1:8081/fhir",))
    local = Caller(issuer="x", tenant=None, fhir_allow=("http://127.0.0.1:8081/fhir",))
    check_fhir_server("http://127.0.0.1:8081/fhir", settings, local, resolve=resolver())
    assert "allow-list" in refused("http://127.0.0.1:8081/fhir", settings, EHR)


@pytest.mark.parametrize(
    "address,kind",
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("169.254.169.254", "link-local"),  # cloud metadata service
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.254", "private"),
        ("192.168.1.1", "private"),
        ("fc00::1", "private"),
        ("fd12:3456::1", "private"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped IPv6
        ("::ffff:169.254.169.254", "link-local"),
        ("100.64.0.1", "non-public"),  # carrier-grade NAT
        ("224.0.0.1", "multicast"),
    ],
)
def test_host_resolving_to_a_non_public_address_is_refused(address: str, kind: str) -> None:
    assert kind in refused("https://fhir.test.example/r4", addresses=(address,))


def test_one_non_public_address_among_public_ones_is_enough_to_refuse() -> None:
    assert "private" in refused("https://fhir.test.example/r4", addresses=(PUBLIC, "10.0.0.1"))


@pytest.mark.parametrize(
    "url,kind",
    [
        ("https://127.0.0.1/fhir", "loopback"),
        ("https://[::1]/fhir", "loopback"),
        ("https://[::ffff:7f00:1]/fhir", "loopback"),
        ("https://169.254.169.254/latest/meta-data", "link-local"),
        ("https://10.0.0.5:8443/fhir", "private"),
        ("https://[fd00::5]/fhir", "private"),
    ],
)
def test_ip_literals_are_checked_without_dns(url: str, kind: str) -> None:
    assert kind in refused(url, addresses=())  # the resolver would fail if it were asked


@pytest.mark.parametrize(
    "url", ["https://2130706433/fhir", "https://0x7f.1/fhir", "https://localhost/fhir"]
)
def test_other_spellings_of_loopback_are_refused_by_the_real_resolver(url: str) -> None:
    # These resolve locally (inet_aton notations, /etc/hosts), no network needed.
    with pytest.raises(FhirServerRefused, match="loopback"):
        check_fhir_server(url, AUTH_OFF, ANONYMOUS)


@pytest.mark.parametrize(
    "url,reason",
    [
        ("https://fhir.test.example@evil.example/r4", "user information"),
        ("https://user:pass@fhir.test.example/r4", "user information"),
        ("https://fhir.test.example\\@evil.example/r4", "backslash"),
        ("https://fhir.test.example/r4?x=1", "query"),
        ("https://fhir.test.example/r4#frag", "fragment"),
        ("https://fhir.test.example/r4/../../admin", "'..'"),
        ("https://fhir.test.example/r4/%2e%2e/admin", "'..'"),
        ("https://fhir.test.example/r4\n", "whitespace"),
        ("https://fhir.test.example:99999/r4", "port"),
        ("https:///r4", "no host"),
        ("file:///etc/passwd", "http(s)"),
        ("gopher://fhir.test.example/", "http(s)"),
        ("", "not a URL"),
    ],
)
def test_url_tricks_are_refused(url: str, reason: str) -> None:
    assert reason in refused(url)
    # Even an issuer that allow-lists the real host does not admit the trick.
    assert refused(url, AUTH_ON, EHR)


def test_userinfo_trick_is_refused_even_when_the_attacker_host_is_allowed() -> None:
    evil = Caller(issuer="x", tenant=None, fhir_allow=("https://evil.example",))
    assert "user information" in refused("https://fhir.test.example@evil.example/r4", AUTH_ON, evil)


def test_unresolvable_host_is_refused() -> None:
    assert "does not resolve" in refused("https://fhir.test.example/r4", addresses=())


def test_slow_resolver_is_cut_off_at_the_fhir_timeout() -> None:
    import threading

    release = threading.Event()

    def stalled(host: str, port: int) -> Iterable[str]:
        release.wait(5)
        return (PUBLIC,)

    settings = AUTH_OFF.with_overrides(fhir_timeout_seconds=0.2)
    try:
        with pytest.raises(FhirServerRefused, match="in time"):
            check_fhir_server("https://fhir.test.example/r4", settings, ANONYMOUS, resolve=stalled)
    finally:
        release.set()


def test_public_https_server_is_allowed_with_auth_off() -> None:
    check_fhir_server("https://fhir.test.example/r4", AUTH_OFF, ANONYMOUS, resolve=resolver(PUBLIC))


@pytest.mark.parametrize(
    "address,form,kind",
    [
        ("::7f00:1", "IPv4-compatible", "loopback"),  # ::127.0.0.1
        ("::a9fe:a9fe", "IPv4-compatible", "link-local"),  # ::169.254.169.254
        ("::ffff:0:a00:1", "IPv4-compatible", "private"),  # SIIT ::ffff:0:10.0.0.1
        ("64:ff9b::7f00:1", "NAT64", "loopback"),
        ("64:ff9b::a9fe:a9fe", "NAT64", "link-local"),
        ("64:ff9b:1:7f00:0:100::", "NAT64", "loopback"),  # /48 prefix: 127.0.0.1 around "u"
        ("2002:7f00:1::", "6to4", "loopback"),
        ("2002:a00:1::1", "6to4", "private"),
        ("2001:0:4136:e378:8000:63bf:80ff:fffe", "Teredo", "loopback"),  # client 127.0.0.1
        ("2001:0:7f00:1::1", "Teredo", "loopback"),  # Teredo server 127.0.0.1
    ],
)
def test_ipv6_forms_embedding_a_non_public_ipv4_address_are_refused(
    address: str, form: str, kind: str
) -> None:
    reason = refused("https://fhir.test.example/r4", addresses=(address,))
    assert form in reason and kind in reason
    # The same as a literal in the URL, which never reaches a resolver.
    literal = refused(f"https://[{address}]/r4", addresses=())
    assert form in literal and kind in literal


@pytest.mark.parametrize("address", ["64:ff9b::5db8:d70e", "2002:5db8:d70e::1", "::ffff:5db8:d70e"])
def test_ipv6_forms_embedding_a_public_ipv4_address_are_allowed(address: str) -> None:
    # 93.184.215.14 in NAT64, 6to4 and IPv4-mapped form: what it embeds is public.
    pin = check_fhir_server(
        "https://fhir.test.example/r4", AUTH_OFF, ANONYMOUS, resolve=resolver(address)
    )
    assert pin.addresses == (address,)


@pytest.mark.parametrize(
    "path",
    [
        "/r4/..%2fadmin",
        "/r4/..%2Fadmin",
        "/r4/%2e%2e%2fadmin",
        "/r4/%2E%2E/admin",
        "/r4/.%2e/admin",
        "/r4/%252e%252e/admin",  # encoded twice
        "/r4/..%5cadmin",  # a backslash, encoded
        "/r4/%2e",
    ],
)
def test_dot_segments_are_found_after_percent_decoding(path: str) -> None:
    url = f"https://fhir.test.example{path}"
    assert "'..'" in refused(url)
    assert refused(url, AUTH_ON, EHR)


def test_percent_encoded_names_that_are_not_dot_segments_pass() -> None:
    # "%2e%2e" inside a longer segment is a name, not a parent reference.
    check_fhir_server(
        "https://fhir.test.example/r4/a%2e%2eb", AUTH_OFF, ANONYMOUS, resolve=resolver(PUBLIC)
    )
