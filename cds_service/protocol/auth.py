"""Client authentication: the CDS Hooks 2.0 JWT bearer token (cds-hooks-2.0.md §6.2).

Interface used by the HTTP layer: ``Authenticator(settings).verify(authorization_header,
audience_url) -> Caller`` raising ``Unauthorized``. Every discovery, service and feedback call is
verified when ``MYOCDS_AUTH=required`` (the default).

Trusted issuers come from the JSON file named by ``MYOCDS_ISSUERS_FILE`` (shape:
``config/issuers.example.json``) plus, only with ``MYOCDS_TRUST_SANDBOX=on``, the public CDS Hooks
Sandbox (``cds_service/data/sandbox-issuer.json``; its private key is published, so trusting it is
for testing only). Per issuer: ``iss``, allowed ``jku`` URLs and/or a static ``jwks``, the
``fhirServers`` we may call for it, optional ``tenant``, and the site's policy (``settings``,
``disabledRules``: ``cds_service.policy``). Several entries may share an ``iss``, one per tenant
(at most one without): a token's ``tenant`` claim picks its site.

What a token must satisfy, each failure a bare 401 (the reason is logged at INFO, never the token):
header ``alg`` one of RS/PS/ES 256/384/512 (never ``none`` or HMAC: CDS Hooks forbids symmetric
algorithms) and the key's type and curve fit the alg; ``typ`` JWT when present; ``kid`` present
and found in the issuer's static set or the set fetched from an allow-listed https ``jku``;
signature; ``iss`` trusted; ``aud`` equal to the URL called (a string or a one-element array),
that is ``MYOCDS_PUBLIC_BASE_URL`` + the path, never a URL built from the request's Host or
forwarded headers (``audience``);
``exp``, ``nbf``, ``iat`` within ``clock_skew_seconds`` (Epic sends ``nbf`` 5 min before ``iat``,
clients.md §5); a lifetime of at most an hour (best practice); ``jti`` present and never seen
before for that issuer (``protocol.replay``: Redis or the feedback database, shared by every
worker; when that store cannot be reached the call is a 503, never accepted); ``tenant`` as
configured.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from cds_service.errors import ConfigurationError, ServiceUnavailable, Unauthorized
from cds_service.policy import DEFAULT_POLICY, POLICY_FIELDS, SitePolicy, parse_policy
from cds_service.protocol.jwks import JwksCache, JwksUnavailable, index_jwks
from cds_service.protocol.replay import (
    MemoryReplayGuard,
    ReplayGuard,
    ReplayStoreUnavailable,
    replay_guard_for,
)
from cds_service.protocol.store import Store
from cds_service.settings import Settings

log = logging.getLogger(__name__)

SANDBOX_ISSUER_FILE = Path(__file__).resolve().parent.parent / "data" / "sandbox-issuer.json"

# CDS Hooks 2.0 §6.2: asymmetric only; ES384 and RS384 RECOMMENDED. Never "none", never HS*.
_EC_CURVES = {"ES256": ec.SECP256R1, "ES384": ec.SECP384R1, "ES512": ec.SECP521R1}
_RSA_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
ALLOWED_ALGORITHMS = frozenset(_RSA_ALGORITHMS) | frozenset(_EC_CURVES)
# NIST SP 800-131A: RSA keys below 2048 bits are not acceptable for signatures.
MIN_RSA_BITS = 2048
# Best practice (cds-hooks-2.0.md §6.2 [BP]): JWT lifetime "no more than an hour"; this also
# bounds how long a jti must be remembered.
MAX_LIFETIME_SECONDS = 3600
# A CDS Hooks JWT is a few hundred bytes; refuse megabyte headers before any parsing.
MAX_TOKEN_BYTES = 16 * 1024


@dataclass(frozen=True)
class Caller:
    issuer: str | None
    tenant: str | None
    # fhirServer base URLs this issuer may have us call (empty when authentication is off).
    fhir_allow: tuple[str, ...] = ()
    # The site's clinical settings and disabled rules (cds_service.policy; the issuers file).
    policy: SitePolicy = DEFAULT_POLICY


ANONYMOUS = Caller(issuer=None, tenant=None)


@dataclass(frozen=True)
class TrustedIssuer:
    iss: str
    jku: tuple[str, ...] = ()
    jwks: Mapping[str, dict[str, Any]] = field(default_factory=dict)  # static keys by kid
    fhir_servers: tuple[str, ...] = ()
    tenant: str | None = None
    policy: SitePolicy = DEFAULT_POLICY


_ISSUER_FIELDS = {"iss", "jku", "jwks", "fhirServers", "tenant", "name", "comment", *POLICY_FIELDS}


def _parse_issuer(entry: object, where: str, faults: list[str]) -> TrustedIssuer:
    if not isinstance(entry, Mapping):
        raise ConfigurationError(f"{where}: each issuer must be a JSON object")
    unknown = set(entry) - _ISSUER_FIELDS
    if unknown:
        raise ConfigurationError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    iss = entry.get("iss")
    if not isinstance(iss, str) or not iss:
        raise ConfigurationError(f"{where}: 'iss' must be a non-empty string")
    where = f"{where} ({iss})"

    def url_list(name: str) -> tuple[str, ...]:
        value = entry.get(name, [])
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise ConfigurationError(f"{where}: '{name}' must be a URL or a list of URLs")
        return tuple(value)

    jku = url_list("jku")
    for url in jku:
        if urlsplit(url).scheme != "https":
            raise ConfigurationError(f"{where}: jku {url!r} must use https")
    jwks: dict[str, dict[str, Any]] = {}
    if "jwks" in entry:
        try:
            jwks = index_jwks(entry["jwks"])
        except JwksUnavailable as exc:
            raise ConfigurationError(f"{where}: 'jwks' {exc}") from None
        for kid, jwk in jwks.items():
            if "d" in jwk or jwk.get("kty") == "oct":
                raise ConfigurationError(f"{where}: jwks key {kid!r} is not a public key")
    if not jku and not jwks:
        raise ConfigurationError(f"{where}: needs 'jku' URL(s) or a static 'jwks' with kids")
    fhir_servers = url_list("fhirServers")
    for url in fhir_servers:
        if urlsplit(url).scheme not in ("https", "http") or not urlsplit(url).hostname:
            raise ConfigurationError(f"{where}: fhirServers entry {url!r} is not an http(s) URL")
    tenant = entry.get("tenant")
    if tenant is not None and (not isinstance(tenant, str) or not tenant):
        raise ConfigurationError(f"{where}: 'tenant' must be a non-empty string")
    # Policy faults are collected over the whole file: start-up names every one of them.
    policy, policy_faults = parse_policy(entry, where + (f" tenant {tenant}" if tenant else ""))
    faults.extend(policy_faults)
    return TrustedIssuer(iss, jku, jwks, fhir_servers, tenant, policy)


def _read_issuers(path: Path) -> list[TrustedIssuer]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigurationError(f"issuers file {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise ConfigurationError(f"issuers file {path}: not JSON ({exc})") from None
    entries = document.get("issuers") if isinstance(document, Mapping) else None
    if not isinstance(entries, list):
        raise ConfigurationError(f'issuers file {path}: expected {{"issuers": [...]}}')
    faults: list[str] = []
    issuers = [
        _parse_issuer(e, f"issuers file {path} entry {i}", faults) for i, e in enumerate(entries)
    ]
    if faults:
        raise ConfigurationError(
            "site policy fault(s), the service cannot start:\n- " + "\n- ".join(faults)
        )
    return issuers


def load_trusted_issuers(settings: Settings) -> dict[str, tuple[TrustedIssuer, ...]]:
    """Every trusted issuer's entries by ``iss``: one per tenant (a site), at most one without a
    tenant (any other tenant of that issuer). A broken file stops start-up
    (``ConfigurationError``)."""
    issuers: list[TrustedIssuer] = []
    if settings.issuers_file:
        issuers.extend(_read_issuers(Path(settings.issuers_file)))
    if settings.sandbox_issuer:
        issuers.extend(_read_issuers(SANDBOX_ISSUER_FILE))
    by_iss: dict[str, tuple[TrustedIssuer, ...]] = {}
    for issuer in issuers:
        entries = by_iss.get(issuer.iss, ())
        if any(entry.tenant == issuer.tenant for entry in entries):
            site = f"tenant {issuer.tenant!r}" if issuer.tenant else "without a tenant"
            raise ConfigurationError(f"issuer {issuer.iss!r} {site} is configured twice")
        by_iss[issuer.iss] = (*entries, issuer)
    return by_iss


def _entry_for(entries: tuple[TrustedIssuer, ...], tenant: object) -> TrustedIssuer | None:
    """The issuer entry of the token's tenant, else the issuer's entry without a tenant."""
    for entry in entries:
        if entry.tenant is not None and entry.tenant == tenant:
            return entry
    return next((entry for entry in entries if entry.tenant is None), None)


class _Refused(Exception):
    """One failed check; ``check`` is logged, the caller only ever sees a bare 401."""

    def __init__(self, check: str, issuer: str | None = None) -> None:
        super().__init__(check)
        self.check = check
        self.issuer = issuer


def _public_key(jwk: Mapping[str, Any], alg: str) -> Any:
    """The key as a cryptography object, only if its type (and curve) fit ``alg``.

    Checked here rather than trusting the library's dispatch: a token's alg must never decide how
    a key is used (the RS256/HS256 key-confusion attack).
    """
    if "alg" in jwk and jwk["alg"] != alg:
        raise _Refused("key-alg-mismatch")
    try:
        if alg in _RSA_ALGORITHMS:
            if jwk.get("kty") != "RSA":
                raise _Refused("key-type")
            rsa_key = RSAAlgorithm.from_jwk(dict(jwk))
            if isinstance(rsa_key, rsa.RSAPrivateKey):
                rsa_key = rsa_key.public_key()
            if not isinstance(rsa_key, rsa.RSAPublicKey) or rsa_key.key_size < MIN_RSA_BITS:
                raise _Refused("key-type")
            return rsa_key
        if jwk.get("kty") != "EC":
            raise _Refused("key-type")
        ec_key = ECAlgorithm.from_jwk(dict(jwk))
        if isinstance(ec_key, ec.EllipticCurvePrivateKey):
            ec_key = ec_key.public_key()
        if not isinstance(ec_key, ec.EllipticCurvePublicKey) or not isinstance(
            ec_key.curve, _EC_CURVES[alg]
        ):
            raise _Refused("key-type")
        return ec_key
    except (jwt.InvalidKeyError, ValueError, TypeError, KeyError):
        raise _Refused("key-invalid") from None


def _bearer_token(authorization: str | None) -> str:
    if authorization is None or not authorization.strip():
        raise _Refused("header-missing")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        raise _Refused("header-malformed")
    if len(token) > MAX_TOKEN_BYTES:
        raise _Refused("token-too-large")
    return token


def audience(settings: Settings, path: str) -> str:
    """The ``aud`` a token for ``path`` must carry: the configured public base URL + the path.
    Never derived from the request (Host, X-Forwarded-*): a client chooses those."""
    if not settings.public_base_url:
        # create_app refuses to start like this; a caller that skipped it gets no fallback.
        raise ConfigurationError(PUBLIC_BASE_URL_REQUIRED)
    return settings.public_base_url.rstrip("/") + path


PUBLIC_BASE_URL_REQUIRED = (
    "MYOCDS_AUTH=required needs MYOCDS_PUBLIC_BASE_URL, the base URL clients call (e.g. "
    "https://cds.example.org): the JWT aud is checked against it"
)


def _audience_matches(aud: object, expected: str) -> bool:
    # CDS Hooks 2.0 §6.2: aud is the URL called, "string or one-element array".
    if isinstance(aud, list) and len(aud) == 1:
        aud = aud[0]
    return isinstance(aud, str) and aud == expected


class Authenticator:
    """Verifies the bearer JWT of each call (one instance per application; thread-safe)."""

    def __init__(
        self,
        settings: Settings,
        *,
        jwks_cache: JwksCache | None = None,
        replay_guard: ReplayGuard | None = None,
        store: Store | None = None,
    ) -> None:
        self.settings = settings
        self.issuers = load_trusted_issuers(settings) if settings.auth_required else {}
        self.jwks_cache = jwks_cache or JwksCache(timeout_seconds=settings.fhir_timeout_seconds)
        # The service passes its store: seen jtis shared through the feedback database.
        self.replay_guard = replay_guard or replay_guard_for(settings.redis_url, store)
        if (
            settings.auth_required
            and isinstance(self.replay_guard, MemoryReplayGuard)
            and settings.workers > 1
        ):
            log.warning(
                "JWT replay protection is per worker process: with %d workers a token could be "
                "replayed once per worker",
                settings.workers,
            )
        if settings.auth_required and not self.issuers:
            log.warning(
                "authentication is required but no issuer is trusted: every call will get 401 "
                "(set MYOCDS_ISSUERS_FILE, or MYOCDS_AUTH=off for development)"
            )

    def verify(self, authorization: str | None, audience: str) -> Caller:
        if not self.settings.auth_required:
            return ANONYMOUS
        try:
            return self._verify(authorization, audience)
        except _Refused as refused:
            log.info(
                "authentication refused",
                extra={"check": refused.check, "iss": refused.issuer},
            )
            raise Unauthorized("authentication failed") from None

    def _verify(self, authorization: str | None, audience: str) -> Caller:
        token = _bearer_token(authorization)
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise _Refused("token-malformed") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in ALLOWED_ALGORITHMS:
            raise _Refused("alg")
        typ = header.get("typ")
        if typ is not None and (not isinstance(typ, str) or typ.upper() != "JWT"):
            raise _Refused("typ")
        if "crit" in header:
            # RFC 7515 §4.1.11: we understand no critical extension, so we must refuse.
            raise _Refused("crit")
        iss = unverified.get("iss")
        entries = self.issuers.get(iss) if isinstance(iss, str) else None
        if not entries:
            raise _Refused("iss-unknown")
        # The entry (site) is picked by the claimed tenant and verified with that entry's keys;
        # the signed tenant claim is checked against it below.
        issuer = _entry_for(entries, unverified.get("tenant"))
        if issuer is None:
            raise _Refused("tenant", entries[0].iss)
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise _Refused("kid-missing", issuer.iss)
        jwk = self._find_key(issuer, header.get("jku"), kid)
        key = _public_key(jwk, alg)
        skew = self.settings.clock_skew_seconds
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                issuer=issuer.iss,
                leeway=skew,
                options={
                    "require": ["iss", "aud", "exp", "iat", "jti"],
                    "verify_aud": False,  # checked below: string or one-element array, exact
                },
            )
        except jwt.InvalidSignatureError:
            raise _Refused("signature", issuer.iss) from None
        except jwt.ExpiredSignatureError:
            raise _Refused("exp", issuer.iss) from None
        except jwt.ImmatureSignatureError:
            raise _Refused("nbf-or-iat", issuer.iss) from None
        except jwt.MissingRequiredClaimError as exc:
            raise _Refused(f"missing-{exc.claim}", issuer.iss) from None
        except jwt.PyJWTError:
            raise _Refused("claims-invalid", issuer.iss) from None
        if not _audience_matches(claims.get("aud"), audience):
            raise _Refused("aud", issuer.iss)
        now = time.time()
        exp, iat = claims["exp"], claims["iat"]
        if not isinstance(exp, int | float) or not isinstance(iat, int | float):
            raise _Refused("claims-invalid", issuer.iss)
        if iat > now + skew:
            raise _Refused("nbf-or-iat", issuer.iss)
        if exp - iat > MAX_LIFETIME_SECONDS:
            raise _Refused("lifetime", issuer.iss)
        tenant = claims.get("tenant")
        if tenant is not None and not isinstance(tenant, str):
            raise _Refused("tenant", issuer.iss)
        if issuer.tenant is not None and tenant != issuer.tenant:
            raise _Refused("tenant", issuer.iss)
        jti = claims["jti"]
        if not isinstance(jti, str) or not jti or len(jti) > 256:
            raise _Refused("jti", issuer.iss)
        # Last, so a token failing any other check does not burn its jti.
        ttl = int(exp - now) + skew + 1
        try:
            if not self.replay_guard.first_use(issuer.iss, jti, ttl):
                raise _Refused("jti-replayed", issuer.iss)
        except ReplayStoreUnavailable as exc:
            # Fail closed, but say so: the token may be fine, the store is not (503, not 401).
            log.error("replay store (%s) unavailable: refusing tokens until it is back", exc)
            raise ServiceUnavailable(
                "the store of seen token ids cannot be reached; try again later"
            ) from None
        return Caller(
            issuer=issuer.iss, tenant=tenant, fhir_allow=issuer.fhir_servers, policy=issuer.policy
        )

    def _find_key(self, issuer: TrustedIssuer, jku: object, kid: str) -> dict[str, Any]:
        if jku is not None:
            # Never fetch a URL the token names unless the administrator listed it (SSRF).
            if not isinstance(jku, str) or jku not in issuer.jku:
                raise _Refused("jku-not-allowed", issuer.iss)
        # Static keys are pinned: they win, and spare a fetch (the Sandbox works offline).
        if kid in issuer.jwks:
            return issuer.jwks[kid]
        # Without a jku header the set is "communicated out-of-band" (CDS Hooks 2.0 §6.2): the
        # issuer's configured jku URLs.
        for url in (jku,) if isinstance(jku, str) else issuer.jku:
            jwk = self.jwks_cache.key(url, kid)
            if jwk is not None:
                return jwk
        raise _Refused("kid-unknown", issuer.iss)
