"""The feedback store keeps a database connection for every call thread of a worker.

Each hook call stores its cards, so a worker serving ``MYOCDS_THREADS`` calls at once checks out
that many connections. A pool smaller than that lends the extra threads overflow connections,
which are closed when returned: under load the service opened and closed a PostgreSQL
connection every few calls (132 sessions in 8 s of the benchmark's patient-view with the default
5, against 19 with 16). These tests count the connections opened, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

from sqlalchemy import event

from cds_service import create_app
from cds_service.protocol.store import Store
from cds_service.settings import Settings
from tests.support.concurrency import all_at_once
from tests.support.records import call_body, issued_card

# A patient-view that gives a card (CK monitoring overdue), so every call stores one.
SCENARIO = Path(__file__).resolve().parents[1] / "scenarios" / "cont02-ck-overdue.json"

THREADS = 8
ROUNDS = 6



def _count_connects(store: Store) -> list[int]:
    opened: list[int] = []
    event.listen(store.engine, "connect", lambda *_: opened.append(1))
    return opened


def test_a_pool_of_the_thread_count_opens_a_connection_per_thread_at_most(
    store_url: str,
) -> None:
    store = Store(store_url, pool_size=THREADS)
    try:
        store.ensure_schema()
        opened = _count_connects(store)
        for _ in range(ROUNDS):
            all_at_once([lambda: store.record_cards([issued_card()]) for _ in range(THREADS)])
        # The pool grows to the threads that overlapped and never closes one to open another.
        assert len(opened) <= THREADS, f"{len(opened)} connections opened for {THREADS} threads"
    finally:
        store.dispose()


def test_the_default_pool_is_too_small_for_the_threads(store_url: str) -> None:
    # What the pool size fixes: with SQLAlchemy's default (5) and 8 threads storing at once,
    # the overflow connections are closed and opened again every round.
    store = Store(store_url)
    try:
        store.ensure_schema()
        opened = _count_connects(store)
        for _ in range(ROUNDS):
            all_at_once([lambda: store.record_cards([issued_card()]) for _ in range(THREADS)])
        assert len(opened) > THREADS
    finally:
        store.dispose()


def test_the_service_sizes_its_pool_to_its_threads(settings: Settings, store_url: str) -> None:
    # Through HTTP: an app of 8 threads answers rounds of 8 concurrent hook calls, each storing
    # its cards, opening at most one connection per thread in all (none closed and reopened).
    scenario = json.loads(SCENARIO.read_text())
    app = create_app(settings.with_overrides(
        threads=THREADS, database_url=store_url, today=date.fromisoformat(scenario["today"])))
    try:
        client = app.test_client()
        store: Store = app.extensions["myocds"].store
        body = json.dumps(call_body(scenario, prefetch=True))

        def call() -> int:
            answer = client.post("/cds-services/myopathy-review", data=body,
                                 content_type="application/json")
            assert answer.get_json()["cards"], "the scenario's call stores no card"
            return answer.status_code

        assert call() == 200  # the schema checked, one connection in the pool
        opened = _count_connects(store)
        for _ in range(ROUNDS):
            assert set(all_at_once([call] * THREADS)) == {200}
        assert len(opened) < THREADS, f"{len(opened)} connections opened for {THREADS} threads"
    finally:
        app.extensions["myocds"].store.dispose()
