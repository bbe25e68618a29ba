"""JWT replay protection without Redis: the seen ``jti``s live in the feedback database, so two
workers (two app instances on one database) accept a token once, and a new instance after a
restart still refuses it; on SQLite and PostgreSQL. With that database down, a call is a 503
(fail closed, saying why), and it works again when the database is back."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import func, select

from cds_service.protocol.replay import DatabaseReplayGuard
from cds_service.protocol.store import Store, seen_tokens
from cds_service.settings import Settings
from tests.support.signing import BASE_URL, SigningKey

DISCOVERY = "/cds-services"
TOKENS = 20


@pytest.fixture
def worker(
    settings: Settings,
    make_app: Callable[[Settings], Flask],
    issuers_file: Callable[..., str],
    es384: SigningKey,
) -> Callable[[str], Flask]:
    """A new "worker" (its own app, store and connections) on the given database."""
    issuers = issuers_file(jku=[], jwks=es384.jwks())

    def start(database_url: str) -> Flask:
        return make_app(settings.with_overrides(
            auth="required", issuers_file=issuers, public_base_url=BASE_URL,
            database_url=database_url, redis_url=None,
        ))

    return start


def _call(app: Flask, token: str) -> int:
    response = app.test_client().get(DISCOVERY, headers={"Authorization": f"Bearer {token}"})
    return response.status_code


def _token(key: SigningKey) -> str:
    return key.token(aud=BASE_URL + DISCOVERY, header={"jku": None})


def test_two_workers_accept_each_token_once_and_a_restart_remembers(
    worker: Callable[[str], Flask], store_url: str, es384: SigningKey
) -> None:
    first, second = worker(store_url), worker(store_url)
    tokens = [_token(es384) for _ in range(TOKENS)]
    statuses = [(_call(first, t), _call(second, t)) for t in tokens]
    assert statuses == [(200, 401)] * TOKENS
    restarted = worker(store_url)
    assert [_call(restarted, t) for t in tokens] == [401] * TOKENS
    assert [_call(first, t) for t in tokens] == [401] * TOKENS


def test_one_token_sent_to_both_workers_at_once_is_accepted_once(
    worker: Callable[[str], Flask], store_url: str, es384: SigningKey
) -> None:
    # The schema is migrated before workers start, as `myocds serve` does: this test is about
    # the seen-jti insert, not about eight first-use migrations racing on a fresh SQLite file
    # (which, on a loaded machine, could exceed the busy wait and answer 503).
    migrated = Store(store_url)
    migrated.ensure_schema()
    migrated.dispose()
    workers = [worker(store_url), worker(store_url)] * 4
    token = _token(es384)
    barrier = threading.Barrier(len(workers))
    statuses: list[int] = []

    def send(app: Flask) -> None:
        barrier.wait(timeout=30)
        statuses.append(_call(app, token))

    threads = [threading.Thread(target=send, args=(app,)) for app in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(statuses) == [200] + [401] * (len(workers) - 1)


def test_with_the_database_down_calls_are_503_until_it_is_back(
    worker: Callable[[str], Flask], tmp_path: Path, es384: SigningKey
) -> None:
    blocker = tmp_path / "data"
    blocker.write_text("a file where the database directory should be")
    app = worker(f"sqlite:///{blocker / 'db.sqlite3'}")
    token = _token(es384)
    response = app.test_client().get(DISCOVERY, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 503
    [issue] = response.get_json()["issue"]
    assert issue["code"] == "transient"
    assert issue["diagnostics"] == "the store of seen token ids cannot be reached; try again later"
    blocker.unlink()
    blocker.mkdir()
    assert _call(app, token) == 200  # not burned by the 503: accepted once, now
    assert _call(app, token) == 401


def test_expired_token_ids_are_purged(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    now = [1_000_000.0]
    guard = DatabaseReplayGuard(store, clock=lambda: now[0])
    try:
        assert guard.first_use("iss", "a", ttl_seconds=30)
        assert guard.first_use("iss", "b", ttl_seconds=600)
        assert not guard.first_use("iss", "a", ttl_seconds=30)

        def rows() -> int:
            with store.engine.connect() as connection:
                return int(connection.execute(
                    select(func.count()).select_from(seen_tokens)).scalar_one())

        assert rows() == 2
        now[0] += DatabaseReplayGuard.PURGE_EVERY_SECONDS + 1  # "a" has expired
        assert guard.first_use("iss", "c", ttl_seconds=30)
        assert rows() == 2  # "a" purged, "c" added
        assert not guard.first_use("iss", "b", ttl_seconds=600)  # "b" kept
    finally:
        store.dispose()
