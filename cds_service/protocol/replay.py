"""JWT replay protection: each ``(iss, jti)`` is accepted once until the token has expired.

CDS Hooks best practice: "store processed jtis for the max JWT lifetime". The memory must be
shared by every worker, restart and replica, or a token could be replayed once per worker:
with ``MYOCDS_REDIS_URL`` set, Redis ``SET NX EX``; otherwise the feedback database (table
``seen_tokens``: a unique key and an expiry, insert-or-conflict is a replay, expired rows
purged). ``MemoryReplayGuard`` (one process) is for tests and library use only.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from typing import Protocol

import redis

from cds_service.protocol.store import Store, StoreUnavailable


class ReplayStoreUnavailable(Exception):
    """The shared store could not be asked: the caller refuses the token (fail closed)."""


class ReplayGuard(Protocol):
    def first_use(self, issuer: str, jti: str, ttl_seconds: int) -> bool:
        """Record the token id; False when it was already recorded and has not expired."""
        ...


def _digest(issuer: str, jti: str) -> str:
    # Hashed: bounded key length whatever the client sends, and no raw token ids at rest.
    return hashlib.sha256(issuer.encode() + b"\x00" + jti.encode()).hexdigest()


def _key(issuer: str, jti: str) -> str:
    return f"myocds:jti:{_digest(issuer, jti)}"


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
            # One short round trip, bounded by the timeouts above: the call keeps its work slot
            # (cds_service.admission), as for a statement on an open database connection.
            stored = self._client.set(_key(issuer, jti), b"1", nx=True, ex=max(ttl_seconds, 1))
        except redis.RedisError as exc:
            raise ReplayStoreUnavailable(type(exc).__name__) from None
        return bool(stored)


class DatabaseReplayGuard:
    """Seen token ids in the feedback database, shared by every process that opens it."""

    PURGE_EVERY_SECONDS = 60

    def __init__(self, store: Store, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock  # wall clock: the expiry is compared across processes and restarts
        self._next_purge = 0.0
        self._purge_lock = threading.Lock()

    def first_use(self, issuer: str, jti: str, ttl_seconds: int) -> bool:
        now = self._clock()
        try:
            self._purge_now_and_then(now)
            return self._store.remember_token(
                _digest(issuer, jti), int(now) + max(ttl_seconds, 1), int(now)
            )
        except StoreUnavailable:
            raise ReplayStoreUnavailable("database") from None

    def _purge_now_and_then(self, now: float) -> None:
        # Amortized: at most once a minute per process, by whichever call comes first.
        with self._purge_lock:
            if now < self._next_purge:
                return
            self._next_purge = now + self.PURGE_EVERY_SECONDS
        self._store.purge_tokens(int(now))


def replay_guard_for(redis_url: str | None, store: Store | None = None) -> ReplayGuard:
    """Redis when configured, else the feedback database; one process's memory only when
    neither is given (tests, library use)."""
    if redis_url:
        return RedisReplayGuard(redis_url)
    return DatabaseReplayGuard(store) if store is not None else MemoryReplayGuard()
