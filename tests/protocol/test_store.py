"""protocol.store on SQLite and PostgreSQL: tables created on start, insert-or-ignore feedback,
no row lost or doubled under concurrent posts."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
from sqlalchemy import create_engine, text

from cds_service.errors import ConfigurationError
from cds_service.protocol.store import IssuedCard, Store, dedup_key

POSTGRES_URL = "postgresql+psycopg://127.0.0.1:5432/test"
NOW = datetime(2025, 7, 1, 10, 0, tzinfo=UTC)


def _postgres_reachable() -> bool:
    try:
        engine = create_engine(POSTGRES_URL, connect_args={"connect_timeout": 2})
        with engine.connect() as connection:
            connection.execute(text("select 1"))
        engine.dispose()
        return True
    except Exception:
        return False


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'nested' / 'dir' / 'store.sqlite3'}"
    else:
        if not _postgres_reachable():
            pytest.skip(f"PostgreSQL not reachable at {POSTGRES_URL}")
        url = POSTGRES_URL
    instance = Store(url)
    yield instance
    instance.dispose()


def item(card: str, outcome: str = "accepted", at: str = "2025-07-01T10:15:00Z",
         suggestions: tuple[str, ...] = ("s-1",)) -> dict:
    feedback = {"card": card, "outcome": outcome, "outcomeTimestamp": at}
    if suggestions:
        feedback["acceptedSuggestions"] = [{"id": s} for s in suggestions]
    return feedback


def test_sqlite_directory_is_created(tmp_path):
    Store(f"sqlite:///{tmp_path / 'var' / 'myocds.sqlite3'}").dispose()
    assert (tmp_path / "var" / "myocds.sqlite3").is_file()


def test_unusable_database_url_stops_start_up():
    with pytest.raises(ConfigurationError, match="MYOCDS_DATABASE_URL"):
        Store("nosuchdialect://x/y")


def test_cards_and_feedback_round_trip(store):
    card = str(uuid.uuid4())
    store.record_cards([IssuedCard(card, "ivig-order-check", "order-sign", "DOSE-02", "warning",
                                   NOW)])
    result = store.save_feedback("ivig-order-check", [item(card)], NOW)
    assert (result.stored, result.duplicates, result.unknown_cards) == (1, 0, 0)
    issued = store.issued_card(card)
    assert (issued.topic, issued.indicator, issued.hook) == ("DOSE-02", "warning", "order-sign")
    [row] = store.feedback_rows(card)
    assert row["outcome"] == "accepted" and row["accepted_suggestions"] == "s-1"


def test_repeated_feedback_is_ignored(store):
    card = str(uuid.uuid4())
    first = store.save_feedback("myopathy-review", [item(card)], NOW)
    again = store.save_feedback("myopathy-review", [item(card), item(card)], NOW)
    assert (first.stored, first.unknown_cards) == (1, 1)
    assert (again.stored, again.duplicates) == (0, 2)
    assert len(store.feedback_rows(card)) == 1


def test_concurrent_feedback_loses_and_doubles_nothing(store):
    cards = [str(uuid.uuid4()) for _ in range(40)]
    # Each card's feedback posted 3 times from different threads at once.
    jobs = [card for card in cards for _ in range(3)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(
            lambda card: store.save_feedback("myopathy-review", [item(card)], NOW), jobs))
    assert sum(r.stored for r in results) == len(cards)
    assert all(len(store.feedback_rows(card)) == 1 for card in cards)


def test_dedup_key_normalises_time_zone_and_suggestion_order():
    card = str(uuid.uuid4())
    a = item(card, at="2025-07-01T10:15:00Z", suggestions=("b", "a"))
    b = item(card, at="2025-07-01T05:15:00-05:00", suggestions=("a", "b"))
    c = item(card, at="2025-07-01T10:15:01Z", suggestions=("a", "b"))
    assert dedup_key(a) == dedup_key(b) != dedup_key(c)
    assert dedup_key(item(card, "overridden", suggestions=())) != dedup_key(a)


def test_rule_report_joins_feedback_to_the_rule_of_its_card(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'report.sqlite3'}")
    try:
        stat, dose = str(uuid.uuid4()), str(uuid.uuid4())
        store.record_cards([
            IssuedCard(stat, "myopathy-review", "patient-view", "STAT-01", "critical", NOW),
            IssuedCard(dose, "ivig-order-check", "order-sign", "DOSE-02", "warning", NOW),
            IssuedCard(str(uuid.uuid4()), "ivig-order-check", "order-sign", "DOSE-02",
                       "warning", NOW),
        ])
        store.save_feedback("myopathy-review", [item(stat), item(stat, "overridden",
                                                                suggestions=())], NOW)
        store.save_feedback("ivig-order-check", [item(dose, "overridden", suggestions=())], NOW)
        store.save_feedback("ivig-order-check", [item(str(uuid.uuid4()))], NOW)
        report = store.rule_report()
        assert vars(report["STAT-01"]) == {"issued": 1, "accepted": 1, "overridden": 1}
        assert vars(report["DOSE-02"]) == {"issued": 2, "accepted": 0, "overridden": 1}
        assert vars(report[None]) == {"issued": 0, "accepted": 1, "overridden": 0}
    finally:
        store.dispose()
