"""The feedback store on SQLite (the default) and PostgreSQL (by URL), the same tests on both.

PostgreSQL runs on 127.0.0.1:5432, database ``test``, trust auth (this machine and CI); when it
is not reachable the PostgreSQL half skips and says so. Each test gets its own PostgreSQL schema
(``search_path`` in the URL), dropped afterwards, so parallel runs never see each other's rows.

Concurrency is real: threads released together by a barrier, through the store API and through
the HTTP app, and two stores on one database (two replicas). 200 distinct feedback posts must
store exactly 200 rows; 200 posts of one feedback must store exactly one.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar

import pytest
from flask import Flask
from sqlalchemy import inspect, text

from cds_service.protocol.store import FeedbackResult, IssuedCard, Store
from cds_service.settings import Settings
from tests.support.concurrency import all_at_once

CONCURRENT = 200
NOW = datetime(2025, 7, 1, 10, 0, tzinfo=UTC)
SERVICE = "myopathy-review"
T = TypeVar("T")


@pytest.fixture
def database_url(store_url: str) -> str:
    return store_url


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    instance = Store(database_url)
    yield instance
    instance.dispose()


def feedback_item(card: str, outcome: str = "overridden") -> dict[str, Any]:
    item: dict[str, Any] = {"card": card, "outcome": outcome,
                            "outcomeTimestamp": "2025-07-01T10:15:00Z"}
    if outcome == "overridden":
        item["overrideReason"] = {"reason": {
            "system": "https://myocds.dev/fhir/CodeSystem/override-reason",
            "code": "not-statin-related"}}
    else:
        item["acceptedSuggestions"] = [{"id": str(uuid.uuid4())}]
    return item


def test_schema_is_created_on_start_and_start_is_repeatable(database_url: str) -> None:
    first = Store(database_url)
    first.ensure_schema()  # what ``myocds migrate`` (and the first use) does
    names = set(inspect(first.engine).get_table_names())
    assert {"issued_cards", "feedback"} <= names
    first.record_cards([IssuedCard(str(uuid.uuid4()), SERVICE, "patient-view", "STAT-01",
                                   "critical", NOW)])
    first.dispose()
    again = Store(database_url)  # a restart (or another replica) finds the tables and the row
    with again.engine.connect() as connection:
        assert connection.execute(text("select count(*) from issued_cards")).scalar_one() == 1
    again.dispose()


def test_a_calls_cards_go_in_together_and_a_stored_card_is_left_as_it_is(store: Store) -> None:
    first, second, third = (str(uuid.uuid4()) for _ in range(3))
    store.record_cards([
        IssuedCard(first, SERVICE, "patient-view", "STAT-01", "critical", NOW),
        IssuedCard(second, SERVICE, "patient-view", "CONT-01", "warning", NOW),
    ])
    # The same card again (a retried write) beside a new one: the new one goes in, the stored
    # one keeps its row.
    store.record_cards([
        IssuedCard(second, SERVICE, "patient-view", "DOSE-02", "info", NOW),
        IssuedCard(third, SERVICE, "order-sign", "DOSE-01", "info", NOW),
    ])
    with store.engine.connect() as connection:
        rows = dict(connection.execute(text("select card_uuid, topic from issued_cards")).all())
    assert rows == {first: "STAT-01", second: "CONT-01", third: "DOSE-01"}


def test_200_concurrent_posts_store_200_rows(store: Store) -> None:
    cards = [str(uuid.uuid4()) for _ in range(CONCURRENT)]
    results: list[FeedbackResult] = all_at_once(
        [partial(store.save_feedback, SERVICE, [feedback_item(card)], NOW) for card in cards]
    )
    assert sum(r.stored for r in results) == CONCURRENT
    assert sum(r.duplicates for r in results) == 0
    rows = store.feedback_rows()
    assert len(rows) == CONCURRENT
    assert sorted(row["card_uuid"] for row in rows) == sorted(cards)


def test_200_concurrent_repeats_of_one_feedback_store_one_row(store: Store) -> None:
    card = str(uuid.uuid4())
    item = feedback_item(card, "accepted")
    results = all_at_once([lambda: store.save_feedback(SERVICE, [item], NOW)] * CONCURRENT)
    assert [r.stored for r in results].count(1) == 1
    assert sum(r.duplicates for r in results) == CONCURRENT - 1
    assert len(store.feedback_rows(card)) == 1


def test_two_replicas_on_one_database_store_each_feedback_once(database_url: str) -> None:
    # Migrated before the replicas start, as `myocds serve` and `myocds migrate` do: this test
    # is about storing each feedback once, not about two first-use migrations racing on a fresh
    # SQLite file (one may find the file locked: "database is locked", a 503).
    migrated = Store(database_url)
    migrated.ensure_schema()
    migrated.dispose()
    replicas = [Store(database_url), Store(database_url)]
    try:
        cards = [str(uuid.uuid4()) for _ in range(CONCURRENT // 2)]
        # Every feedback posted once to each replica, all at once.
        jobs = [
            partial(replica.save_feedback, SERVICE, [feedback_item(card)], NOW)
            for card in cards
            for replica in replicas
        ]
        results = all_at_once(jobs)
        assert sum(r.stored for r in results) == len(cards)
        assert replicas[0].count_feedback() == len(cards)
    finally:
        for replica in replicas:
            replica.dispose()


# --- through the HTTP app --------------------------------------------------------------------


@pytest.fixture
def http_app(
    settings: Settings, make_app: Callable[[Settings], Flask], database_url: str
) -> Flask:
    return make_app(settings.with_overrides(database_url=database_url))


def _post(app: Flask, body: dict[str, Any]) -> int:
    # A test client per request: each thread its own, like separate client connections.
    response = app.test_client().post(
        f"/cds-services/{SERVICE}/feedback", data=json.dumps(body),
        content_type="application/json",
    )
    return response.status_code


def test_200_concurrent_http_posts_store_200_rows(http_app: Flask) -> None:
    cards = [str(uuid.uuid4()) for _ in range(CONCURRENT)]
    statuses = all_at_once(
        [partial(_post, http_app, {"feedback": [feedback_item(card)]}) for card in cards]
    )
    assert statuses == [200] * CONCURRENT
    store: Store = http_app.extensions["myocds"].store
    rows = store.feedback_rows()
    assert len(rows) == CONCURRENT
    assert sorted(row["card_uuid"] for row in rows) == sorted(cards)
    assert {row["override_code"] for row in rows} == {"not-statin-related"}


def test_200_concurrent_http_repeats_store_one_row(http_app: Flask) -> None:
    card = str(uuid.uuid4())
    body = {"feedback": [feedback_item(card, "accepted")]}
    statuses = all_at_once([lambda: _post(http_app, body)] * CONCURRENT)
    assert statuses == [200] * CONCURRENT  # a repeat is accepted (CDS Hooks), not stored again
    store: Store = http_app.extensions["myocds"].store
    assert store.count_feedback() == 1
    assert len(store.feedback_rows(card)) == 1
