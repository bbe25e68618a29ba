"""JWT replay protection: each ``(iss, jti)`` is accepted once until the token has expired.

CDS Hooks best practice: "store processed jtis for the max JWT lifetime". In-process by default;
with ``MYOCDS_REDIS_URL`` set, Redis ``SET NX EX`` so every worker and replica shares one memory
(the in-process store protects one worker only: gunicorn runs several).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from typing import Protocol

import redis


class ReplayStoreUnavailable(Exception):
    """The shared store could not be asked: the caller refuses the token (fail closed)."""


class ReplayGuard(Protocol):
    def first_use(self, issuer: str, jti: str, ttl_seconds: int) -> bool:
        """Record the token id; False when it was already recorded and has not expired."""
        ...


def _key(issuer: str, jti: str) -> str:
    # Hashed: bounded key length whatever the client sends, and no raw token ids in Redis.
    digest = hashlib.sha256(issuer.encode() + b"\x00" + jti.encode()).hexdigest()
    return f"myocds:jti:{digest}"


class MemoryReplayGuard:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._expiry: dict[str, float] = {}
        self._lock = threading.Lock()
        self._next_sweep = 0.0

    def first_use(self, issuer: str, jti: str, ttl_seconds: int) -> bool:
        key = _key(issuer, jti)
        now = self._clock()
        with self._lock:
            if now >= self._next_sweep:
                # Amortized purge: expired ids go at most once a minute, never per call.
                self._expiry = {k: t for k, t in self._expiry.items() if t > now}
                self._next_sweep = now + 60
            expires = self._expiry.get(key)
            if expires is not None and expires > now:
                return False
            self._expiry[key] = now + max(ttl_seconds, 1)
            return True

    def __len__(self) -> int:
        return len(self._expiry)


class RedisReplayGuard:
    def __init__(self, url: str, *, timeout_seconds: float = 0.5) -> None:
        self._client = redis.Redis.from_url(
            url, socket_timeout=timeout_seconds, socket_connect_timeout=timeout_seconds
        )

    def first_use(self, issuer: str, jti: str, ttl_seconds: int) -> bool:
        try:
            stored = self._client.set(_key(issuer, jti), b"1", nx=True, ex=max(ttl_seconds, 1))
        except redis.RedisError as exc:
            raise ReplayStoreUnavailable(type(exc).__name__) from None
        return bool(stored)


def replay_guard_for(redis_url: str | None) -> ReplayGuard:
    return RedisReplayGuard(redis_url) if redis_url else MemoryReplayGuard()
