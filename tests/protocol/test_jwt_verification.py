"""The JWT verifier against each attack, and valid RS384/ES384 tokens (CDS Hooks 2.0 §6.2).

Each refused token must fail for the intended reason: the test reads the check the verifier
logged (never sent to the caller), so a token refused for an unrelated defect would not pass.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis
import responses
from cryptography.hazmat.primitives import serialization

from cds_service.errors import ConfigurationError, ServiceUnavailable, Unauthorized
from cds_service.protocol.auth import Authenticator, Caller, load_trusted_issuers
from cds_service.protocol.jwks import JwksCache
from cds_service.protocol.replay import MemoryReplayGuard, RedisReplayGuard
from cds_service.settings import Settings
from tests.support.signing import BASE_URL, FHIR_SERVER, ISS, JKU, SigningKey

AUD = f"{BASE_URL}/cds-services"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _segments(token: str) -> list[str]:
    return token.split(".")


def _refused_check(
    caplog: pytest.LogCaptureFixture, authenticator: Authenticator, header: str | None, aud: str
) -> str:
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="cds_service.protocol.auth"):
        with pytest.raises(Unauthorized) as refused:
            authenticator.verify(header, aud)
    # The exception says nothing specific; only the log names the check.
    assert refused.value.message == "authentication failed"
    checks = [r.check for r in caplog.records if hasattr(r, "check")]
    assert len(checks) == 1
    return checks[0]


@pytest.fixture
def served_jwks(rs384: SigningKey, es384: SigningKey):
    """The client's JWKS served at its jku (``responses`` intercepts the https fetch)."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get(JKU, json={"keys": [rs384.jwk, es384.jwk]})
        yield mock


@pytest.fixture
def authenticator(issuers_file: Callable[..., str], served_jwks: responses.RequestsMock):
    settings = Settings(issuers_file=issuers_file())
    return Authenticator(settings, replay_guard=MemoryReplayGuard())


@pytest.mark.parametrize("key_name", ["rs384", "es384"])
def test_valid_token_from_jku_is_accepted(
    request: pytest.FixtureRequest, authenticator: Authenticator, key_name: str
) -> None:
    key: SigningKey = request.getfixturevalue(key_name)
    caller = authenticator.verify(f"Bearer {key.token()}", AUD)
    assert caller == Caller(issuer=ISS, tenant=None, fhir_allow=(FHIR_SERVER,))


@pytest.mark.parametrize("key_name", ["rs384", "es384"])
def test_valid_token_with_static_jwks_needs_no_fetch(
    request: pytest.FixtureRequest, issuers_file: Callable[..., str], key_name: str
) -> None:
    key: SigningKey = request.getfixturevalue(key_name)
    path = issuers_file(jku=[], jwks=key.jwks())
    authenticator = Authenticator(Settings(issuers_file=path))
    with responses.RequestsMock() as mock:  # any fetch would fail: none registered
        caller = authenticator.verify(f"Bearer {key.token(header={'jku': None})}", AUD)
        assert len(mock.calls) == 0
    assert caller.issuer == ISS


@pytest.mark.parametrize("alg", ["RS256", "RS512", "PS256", "PS384", "PS512", "ES256", "ES512"])
def test_other_asymmetric_algorithms_are_accepted(
    issuers_file: Callable[..., str], alg: str
) -> None:
    key = SigningKey.generate(alg)
    authenticator = Authenticator(Settings(issuers_file=issuers_file(jku=[], jwks=key.jwks())))
    assert authenticator.verify(f"Bearer {key.token(header={'jku': None})}", AUD).issuer == ISS


def test_tenant_claim_is_passed_on_and_checked_when_configured(
    issuers_file: Callable[..., str], es384: SigningKey, caplog: pytest.LogCaptureFixture
) -> None:
    path = issuers_file(jku=[], jwks=es384.jwks(), tenant="hospital-a")
    authenticator = Authenticator(Settings(issuers_file=path))
    good = es384.token(header={"jku": None}, tenant="hospital-a")
    assert authenticator.verify(f"Bearer {good}", AUD).tenant == "hospital-a"
    other = es384.token(header={"jku": None}, tenant="hospital-b")
    assert _refused_check(caplog, authenticator, f"Bearer {other}", AUD) == "tenant"


def test_aud_as_one_element_array_is_accepted(
    authenticator: Authenticator, es384: SigningKey
) -> None:
    assert authenticator.verify(f"Bearer {es384.token(aud=[AUD])}", AUD).issuer == ISS


def test_auth_off_accepts_anything_as_anonymous() -> None:
    caller = Authenticator(Settings(auth="off")).verify(None, AUD)
    assert caller == Caller(issuer=None, tenant=None, fhir_allow=())


# --- attacks: each one 401 for its own reason ------------------------------------------------


def test_alg_none_is_refused(
    authenticator: Authenticator, es384: SigningKey, caplog: pytest.LogCaptureFixture
) -> None:
    _, payload, _ = _segments(es384.token())
    header = _b64(json.dumps({"alg": "none", "typ": "JWT", "kid": es384.kid}).encode())
    token = f"{header}.{payload}."
    assert _refused_check(caplog, authenticator, f"Bearer {token}", AUD) == "alg"


def test_hs256_signed_with_the_public_key_is_refused(
    issuers_file: Callable[..., str], rs384: SigningKey, caplog: pytest.LogCaptureFixture
) -> None:
    # The classic key-confusion attack: HMAC keyed with the public PEM the attacker can read.
    authenticator = Authenticator(Settings(issuers_file=issuers_file(jku=[], jwks=rs384.jwks())))
    pem = rs384.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": rs384.kid}).encode())
    _, payload, _ = _segments(rs384.token())
    signature = hmac.new(pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    token = f"{header}.{payload}.{_b64(signature)}"
    assert _refused_check(caplog, authenticator, f"Bearer {token}", AUD) == "alg"


def test_key_type_must_fit_the_algorithm(
    issuers_file: Callable[..., str], rs384: SigningKey, caplog: pytest.LogCaptureFixture
) -> None:
    # An ES384 token whose kid names an RSA key: the alg must not choose how a key is used.
    impostor = SigningKey.generate("ES384", rs384.kid)
    rsa_jwk = {k: v for k, v in rs384.jwk.items() if k != "alg"}
    path = issuers_file(jku=[], jwks={"keys": [rsa_jwk]})
    authenticator = Authenticator(Settings(issuers_file=path))
    token = impostor.token(header={"jku": None})
    assert _refused_check(caplog, authenticator, f"Bearer {token}", AUD) == "key-type"


def test_expired_token_is_refused(
    authenticator: Authenticator, es384: SigningKey, caplog: pytest.LogCaptureFixture
) -> None:
    # Expired 10 minutes ago: beyond the 5-minute skew.
    token = es384.token(now=time.time() - 900)
    assert _refused_check(caplog, authenticator, f"Bearer {token}", AUD) == "exp"


def test_expiry_within_clock_skew_is_tolerated(
    authenticator: Authenticator, es384: SigningKey
) -> None:
    token = es384.token(now=time.time() - 360)  # expired 60 s ago, skew is 300 s
    assert authenticator.verify(f"Bearer {token}", AUD).issuer == ISS


def test_not_yet_valid_token_is_refused(
    authenticator: Authenticator, es384: SigningKey, caplog: pytest.LogCaptureFixture
) -> None:
    token = es384.token(nbf=int(time.time()) + 600)
    assert _refused_check(caplog, authenticator, f"Bearer {token}", AUD) == "nbf-or-iat"


def test_iat_in_the_future_is_refused(
    authenticator: Authenticator, es384: SigningKey, caplog: pytest.LogCaptureFixture
) -> None:
    token = es384.token(now=time.time() + 900)
    assert _refused_check(caplog, authenticator, f"Bearer {token}", AUD) == "nbf-or-iat"


def test_lifetime_over_an_hour_is_refused(
    authenticator: Authenticator, es384: SigningKey, caplog: pytest.LogCaptureFixture
) -> None:
    token = es384.token(exp=int(time.time()) + 7200)
    assert _refused_check(caplog, authenticator, f"Bearer {token}", AUD) == "lifetime"


@pytest.mark.parametrize(
    "aud",
    [
        f"{BASE_URL}/cds-services/statin-order",  # another endpoint of ours
        "https://other-service.example/cds-services",
        [AUD, "https://other-service.example/cds-services"],  # not a one-element array
        f"{AUD}/",
    ],
)
def test_wrong_aud_is_refused(
    authenticator: Authenticator, es384: SigningKey, caplog: pytest.LogCaptureFixture, aud: Any
) -> None:
    token = es384.token(aud=aud)
    assert _refused_check(caplog, authenticator, f"Bearer {token}", AUD) == "aud"


def test_unknown_iss_is_refused(
    authenticator: Authenticator, es384: SigningKey, caplog: pytest.LogCaptureFixture
) -> None:
    token = es384.token(iss="https://attacker.example")
    assert _refused_check(caplog, authenticator, f"Bearer {token}", AUD) == "iss-unknown"


def test_jku_not_allowed_is_refused_without_fetching(
    authenticator: Authenticator,
    es384: SigningKey,
    served_jwks: responses.RequestsMock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    evil = "https://attacker.example/jwks.json"
    served_jwks.get(evil, json=es384.jwks())
    token = es384.token(header={"jku": evil})
    assert _refused_check(caplog, authenticator, f"Bearer {token}", AUD) == "jku-not-allowed"
    assert not any(call.request.url == evil for call in served_jwks.calls)


def test_unknown_kid_is_refused(
    authenticator: Authenticator, caplog: pytest.LogCaptureFixture
) -> None:
    stranger = SigningKey.generate("ES384", "not-in-the-jwks")
    token = stranger.token()
    assert _refused_check(caplog, authenticator, f"Bearer {token}", AUD) == "kid-unknown"


def test_missing_kid_is_refused(
    authenticator: Authenticator, es384: SigningKey, caplog: pytest.LogCaptureFixture
) -> None:
    token = es384.token(header={"kid": None})
    assert _refused_check(caplog, authenticator, f"Bearer {token}", AUD) == "kid-missing"


def test_signature_by_another_key_with_a_known_kid_is_refused(
    authenticator: Authenticator, es384: SigningKey, caplog: pytest.LogCaptureFixture
) -> None:
    forger = SigningKey.generate("ES384", es384.kid)
    token = forger.token()
    assert _refused_check(caplog, authenticator, f"Bearer {token}", AUD) == "signature"


def test_tampered_payload_is_refused(
    authenticator: Authenticator, es384: SigningKey, caplog: pytest.LogCaptureFixture
) -> None:
    header, payload, signature = _segments(es384.token())
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["tenant"] = "someone-else"
    tampered = f"{header}.{_b64(json.dumps(claims).encode())}.{signature}"
    assert _refused_check(caplog, authenticator, f"Bearer {tampered}", AUD) == "signature"


def test_replayed_jti_is_refused_in_process(
    authenticator: Authenticator, es384: SigningKey, caplog: pytest.LogCaptureFixture
) -> None:
    token = es384.token()
    assert authenticator.verify(f"Bearer {token}", AUD).issuer == ISS
    assert _refused_check(caplog, authenticator, f"Bearer {token}", AUD) == "jti-replayed"


def test_same_jti_in_a_new_token_is_refused(
    authenticator: Authenticator,
    es384: SigningKey,
    rs384: SigningKey,
    caplog: pytest.LogCaptureFixture,
) -> None:
    authenticator.verify(f"Bearer {es384.token(jti='fixed-nonce')}", AUD)
    again = rs384.token(jti="fixed-nonce")
    assert _refused_check(caplog, authenticator, f"Bearer {again}", AUD) == "jti-replayed"


def test_replayed_jti_is_refused_across_replicas_with_redis(
    issuers_file: Callable[..., str],
    served_jwks: responses.RequestsMock,
    es384: SigningKey,
    redis_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = Settings(issuers_file=issuers_file(), redis_url=redis_url)
    replica_a, replica_b = Authenticator(settings), Authenticator(settings)
    assert isinstance(replica_a.replay_guard, RedisReplayGuard)
    token = es384.token()
    assert replica_a.verify(f"Bearer {token}", AUD).issuer == ISS
    assert _refused_check(caplog, replica_b, f"Bearer {token}", AUD) == "jti-replayed"
    ttl = redis.Redis.from_url(redis_url).ttl(
        next(iter(redis.Redis.from_url(redis_url).scan_iter("myocds:jti:*", count=1000)))
    )
    assert 0 < ttl <= 300 + 300 + 1  # exp - now + skew


def test_unreachable_redis_fails_closed(
    issuers_file: Callable[..., str],
    served_jwks: responses.RequestsMock,
    es384: SigningKey,
) -> None:
    # Fail closed, and say why: the token may be good, the store of seen ids is not there (503).
    settings = Settings(issuers_file=issuers_file(), redis_url="redis://127.0.0.1:1/0")
    with pytest.raises(ServiceUnavailable, match="seen token ids cannot be reached"):
        Authenticator(settings).verify(f"Bearer {es384.token()}", AUD)


@pytest.mark.parametrize("header", [None, "", "   "])
def test_missing_header_is_refused(
    authenticator: Authenticator, header: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    assert _refused_check(caplog, authenticator, header, AUD) == "header-missing"


@pytest.mark.parametrize(
    "header,check",
    [
        ("Basic dXNlcjpwYXNz", "header-malformed"),
        ("Bearer", "header-malformed"),
        ("Bearer a b", "header-malformed"),
        ("Bearer not-a-jwt", "token-malformed"),
        ("Bearer a.b.c", "token-malformed"),
        ("Bearer " + "A" * 20000, "token-too-large"),
    ],
)
def test_malformed_header_is_refused(
    authenticator: Authenticator, header: str, check: str, caplog: pytest.LogCaptureFixture
) -> None:
    assert _refused_check(caplog, authenticator, header, AUD) == check


def test_typ_other_than_jwt_is_refused(
    authenticator: Authenticator, es384: SigningKey, caplog: pytest.LogCaptureFixture
) -> None:
    token = es384.token(header={"typ": "at+jwt"})
    assert _refused_check(caplog, authenticator, f"Bearer {token}", AUD) == "typ"


def test_missing_jti_is_refused(
    authenticator: Authenticator, es384: SigningKey, caplog: pytest.LogCaptureFixture
) -> None:
    token = es384.token(drop=("jti",))
    assert _refused_check(caplog, authenticator, f"Bearer {token}", AUD) == "missing-jti"


def test_refusal_log_never_contains_the_token(
    authenticator: Authenticator, es384: SigningKey, caplog: pytest.LogCaptureFixture
) -> None:
    token = es384.token(aud="https://elsewhere.example")
    _refused_check(caplog, authenticator, f"Bearer {token}", AUD)
    for record in caplog.records:
        assert token not in record.getMessage()
        assert all(token not in str(v) for v in vars(record).values())


# --- key sets: cache, rotation, limits ------------------------------------------------------


def test_jwks_is_cached_and_an_unknown_kid_refetches_at_most_once_a_minute(
    es384: SigningKey,
) -> None:
    clock = [1000.0]
    cache = JwksCache(clock=lambda: clock[0])
    rotated = SigningKey.generate("ES384", "rotated-in")
    with responses.RequestsMock() as mock:
        mock.get(JKU, json=es384.jwks())
        assert cache.key(JKU, es384.kid) == es384.jwk
        assert cache.key(JKU, es384.kid) == es384.jwk
        assert len(mock.calls) == 1  # cached
        assert cache.key(JKU, "rotated-in") is None
        assert len(mock.calls) == 1  # fetched a moment ago: an unknown kid waits a minute
        clock[0] += 61
        assert cache.key(JKU, "rotated-in") is None
        assert len(mock.calls) == 2  # one refetch for the unknown kid
        clock[0] += 30
        assert cache.key(JKU, "rotated-in") is None
        assert len(mock.calls) == 2  # not again within the minute
        mock.replace(responses.GET, JKU, json={"keys": [es384.jwk, rotated.jwk]})
        clock[0] += 31
        assert cache.key(JKU, "rotated-in") == rotated.jwk
        assert cache.key(JKU, es384.kid) == es384.jwk
        assert len(mock.calls) == 3


def test_jwks_fetch_failure_keeps_known_keys(es384: SigningKey) -> None:
    clock = [0.0]
    cache = JwksCache(ttl_seconds=600, clock=lambda: clock[0])
    with responses.RequestsMock() as mock:
        mock.get(JKU, json=es384.jwks())
        assert cache.key(JKU, es384.kid) == es384.jwk
        mock.replace(responses.GET, JKU, status=503)
        clock[0] += 601  # stale: refetch fails, the known key stays in use
        assert cache.key(JKU, es384.kid) == es384.jwk


@pytest.mark.parametrize(
    "kwargs",
    [
        {"status": 302, "headers": {"Location": "https://attacker.example/jwks.json"}},
        {"body": b"{" * 10 + b"x" * 300_000},
        {"body": b"not json"},
        {"json": {"no": "keys"}},
    ],
)
def test_jwks_bad_answers_give_no_key(es384: SigningKey, kwargs: dict[str, Any]) -> None:
    cache = JwksCache()
    with responses.RequestsMock() as mock:
        mock.get(JKU, **kwargs)
        assert cache.key(JKU, es384.kid) is None
        assert len(mock.calls) == 1  # the redirect was not followed


def test_jwks_over_http_is_never_fetched(es384: SigningKey) -> None:
    with responses.RequestsMock() as mock:
        assert JwksCache().key("http://ehr.test.example/jwks.json", es384.kid) is None
        assert len(mock.calls) == 0


# --- issuer configuration -------------------------------------------------------------------


def test_sandbox_issuer_is_off_by_default_and_has_the_published_key() -> None:
    assert "https://sandbox.cds-hooks.org" not in load_trusted_issuers(Settings())
    issuers = load_trusted_issuers(Settings(sandbox_issuer=True))
    (sandbox,) = issuers["https://sandbox.cds-hooks.org"]
    assert sandbox.jku == ("https://sandbox.cds-hooks.org/.well-known/jwks.json",)
    # clients.md §1.1: the JWKS the Sandbox publishes at its jku.
    key = sandbox.jwks["44823f3d-0b01-4a6c-a80e-b9d3e8a7226f"]
    assert (key["kty"], key["crv"], key["alg"]) == ("EC", "P-384", "ES384")
    assert key["x"] == "dw_JGR8nB2I6XveNxUOl2qk699ZPLM2nYI5STSdiEl9avAkrm3CkfYMbrrjr8laB"
    assert all(url.startswith("https://launch.smarthealthit.org/") for url in sandbox.fhir_servers)


def test_sandbox_issuer_verifies_with_its_static_key_when_enabled(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # We cannot sign as the Sandbox without its private key; a token naming its kid but signed by
    # another P-384 key reaches the signature check (issuer, jku and kid all accepted), and only
    # when enabled; when off, the issuer itself is unknown.
    impostor = SigningKey.generate("ES384", "44823f3d-0b01-4a6c-a80e-b9d3e8a7226f")
    token = impostor.token(
        iss="https://sandbox.cds-hooks.org",
        header={"jku": "https://sandbox.cds-hooks.org/.well-known/jwks.json"},
    )
    with responses.RequestsMock():  # the static key is used: no fetch
        on = Authenticator(Settings(sandbox_issuer=True))
        assert _refused_check(caplog, on, f"Bearer {token}", AUD) == "signature"
    off = Authenticator(Settings())
    assert _refused_check(caplog, off, f"Bearer {token}", AUD) == "iss-unknown"


def test_example_issuers_file_loads() -> None:
    from pathlib import Path

    example = Path(__file__).resolve().parents[2] / "config" / "issuers.example.json"
    issuers = load_trusted_issuers(Settings(issuers_file=str(example)))
    assert len(issuers) == 3


@pytest.mark.parametrize(
    "entry,message",
    [
        ({"jku": ["http://ehr.test.example/jwks.json"]}, "must use https"),
        ({"jku": [], "jwks": None}, "not a JWK Set"),
        ({"jku": []}, "needs 'jku'"),
        ({"fhirServers": ["ftp://x"]}, r"not an http\(s\) URL"),
        ({"jwsk": {}}, "unknown field"),
        ({"jku": [], "jwks": {"keys": [{"kty": "oct", "kid": "k", "k": "c2VjcmV0"}]}}, "public"),
    ],
)
def test_bad_issuers_file_stops_start_up(
    issuers_file: Callable[..., str], entry: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Authenticator(Settings(issuers_file=issuers_file(**entry)))
