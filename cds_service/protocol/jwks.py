"""JSON Web Key Sets of trusted CDS clients: fetched over https from allow-listed ``jku`` URLs.

Only URLs an administrator listed for an issuer ever reach this module (``auth.py`` checks the
token's ``jku`` against the issuer entry first), so a token can never make us fetch an arbitrary
URL. Sets are cached for ``ttl_seconds``; a ``kid`` we have not seen triggers at most one refetch
per ``min_refetch_seconds`` per URL (key rotation without letting forged kids hammer the client's
key server). When a refetch fails, the keys we already hold stay in use until the next attempt:
a flaky key server should not lock out a client whose keys we know.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests

from cds_service.admission import waiting

log = logging.getLogger(__name__)

# A JWKS is a few keys; anything larger is a misconfiguration or an attack on our memory.
MAX_JWKS_BYTES = 256 * 1024


class JwksUnavailable(Exception):
    """The key set could not be fetched or parsed (reason is safe to log)."""


def index_jwks(document: object) -> dict[str, dict[str, Any]]:
    """The signing keys of a JWK Set by ``kid``; keys without a kid or for encryption are skipped.

    CDS Hooks 2.0 §Security: the ``kid`` is REQUIRED and MUST be unique within the client's set.
    """
    if not isinstance(document, Mapping) or not isinstance(document.get("keys"), list):
        raise JwksUnavailable("not a JWK Set (no 'keys' array)")
    keys: dict[str, dict[str, Any]] = {}
    for jwk in document["keys"]:
        if not isinstance(jwk, Mapping):
            continue
        kid = jwk.get("kid")
        if not isinstance(kid, str) or not kid:
            continue
        if jwk.get("use", "sig") != "sig":
            continue
        keys[kid] = dict(jwk)
    return keys


@dataclass
class _Entry:
    keys: dict[str, dict[str, Any]]
    fetched_at: float  # monotonic time of the last successful fetch (-inf: never)
    attempted_at: float  # monotonic time of the last fetch attempt, successful or not


class JwksCache:
    """Thread-safe cache of JWK Sets by URL (one instance per application)."""

    def __init__(
        self,
        *,
        ttl_seconds: float = 3600.0,
        min_refetch_seconds: float = 60.0,
        timeout_seconds: float = 2.0,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_seconds = ttl_seconds
        self.min_refetch_seconds = min_refetch_seconds
        self.timeout_seconds = timeout_seconds
        self._session = session or requests.Session()
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()
        self._url_locks: dict[str, threading.Lock] = {}

    def key(self, url: str, kid: str) -> dict[str, Any] | None:
        """The JWK with this ``kid`` from the set at ``url``, fetching when stale or unknown."""
        known = self._fresh_key(self._entries.get(url), kid, self._clock())
        if known is not None:
            return known  # nothing to wait for
        # A fetch may follow, or a wait for another call's fetch of the same set, which needs a
        # work slot to finish: this call gives its own back meanwhile (cds_service.admission).
        with waiting():
            return self._key_fetched(url, kid)

    def _key_fetched(self, url: str, kid: str) -> dict[str, Any] | None:
        with self._lock:
            url_lock = self._url_locks.setdefault(url, threading.Lock())
        # One fetch per URL at a time: concurrent calls with a new kid wait for the same fetch.
        with url_lock:
            entry = self._entries.get(url)
            now = self._clock()
            if entry is not None:
                known = self._fresh_key(entry, kid, now)
                if known is not None:
                    return known
                if now - entry.attempted_at < self.min_refetch_seconds:
                    return entry.keys.get(kid)
            try:
                keys = self._fetch(url)
            except JwksUnavailable as exc:
                log.warning("jwks fetch failed", extra={"jku": url, "reason": str(exc)})
                if entry is None:
                    self._entries[url] = _Entry({}, float("-inf"), now)
                    return None
                entry.attempted_at = now
                return entry.keys.get(kid)
            self._entries[url] = _Entry(keys, now, now)
            return keys.get(kid)

    def _fresh_key(self, entry: _Entry | None, kid: str, now: float) -> dict[str, Any] | None:
        """The JWK ``kid`` of a key set fetched less than ``ttl_seconds`` ago, if it has one."""
        if entry is None or now - entry.fetched_at >= self.ttl_seconds:
            return None
        return entry.keys.get(kid)

    def _fetch(self, url: str) -> dict[str, dict[str, Any]]:
        if urlsplit(url).scheme != "https":
            raise JwksUnavailable("jku must use https")
        try:
            # No redirects: a redirect could lead off the allow-listed URL.
            with self._session.get(
                url,
                timeout=self.timeout_seconds,
                allow_redirects=False,
                stream=True,
                headers={"Accept": "application/json, application/jwk-set+json"},
            ) as response:
                if response.status_code != 200:
                    raise JwksUnavailable(f"HTTP {response.status_code}")
                body = bytearray()
                for chunk in response.iter_content(chunk_size=16384):
                    body.extend(chunk)
                    if len(body) > MAX_JWKS_BYTES:
                        raise JwksUnavailable(f"larger than {MAX_JWKS_BYTES} bytes")
        except requests.RequestException as exc:
            raise JwksUnavailable(type(exc).__name__) from None
        try:
            document = json.loads(bytes(body))
        except ValueError:
            raise JwksUnavailable("not JSON") from None
        return index_jwks(document)
