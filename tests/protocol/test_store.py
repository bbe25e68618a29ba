"""protocol.store on SQLite and PostgreSQL: the schema by migrations (at once from several
processes, a pre-migration database adopted), insert-or-ignore feedback, no row lost or doubled
under concurrent posts, an item the database refuses refused alone, seen token ids."""

from __future__ import annotations

import subprocess
import sys
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from cds_service import migrations
from cds_service.errors import ConfigurationError
from cds_service.protocol.store import IssuedCard, Store, dedup_key, feedback_problems
from tests.support.databases import postgres_schema_url, postgres_unreachable_reason, upgrade_to

NOW = datetime(2025, 7, 1, 10, 0, tzinfo=UTC)
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def store(store_url):
    instance = Store(store_url)
    yield instance
    instance.dispose()


def item(card: str, outcome: str = "accepted", at: str = "2025-07-01T10:15:00Z",
         suggestions: tuple[str, ...] = ("s-1",)) -> dict:
    feedback = {"card": card, "outcome": outcome, "outcomeTimestamp": at}
    if suggestions:
        feedback["acceptedSuggestions"] = [{"id": s} for s in suggestions]
    return feedback


def test_sqlite_directory_is_created(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'var' / 'myocds.sqlite3'}")
    assert not (tmp_path / "var" / "myocds.sqlite3").exists()  # opening touches no database
    store.ensure_schema()
    store.dispose()
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


# --- migrations ------------------------------------------------------------------------------


def _revision(store: Store) -> str | None:
    with store.engine.connect() as connection:
        return migrations.current(connection)


def test_migrations_bring_an_empty_database_to_head_once(store):
    assert _revision(store) is None
    assert migrations.upgrade(store.engine) == (None, migrations.head())
    assert migrations.upgrade(store.engine) == (migrations.head(), migrations.head())
    tables = set(inspect(store.engine).get_table_names())
    assert {"issued_cards", "feedback", "seen_tokens", "alembic_version"} <= tables


def test_a_database_made_before_migrations_is_adopted_with_its_rows(store):
    # What create_all made: the tables of revision 0001 without alembic_version.
    with store.engine.connect() as connection:
        upgrade_to(connection, migrations.BASELINE)
        connection.execute(text("DROP TABLE alembic_version"))
        connection.execute(text(
            "INSERT INTO feedback (dedup_key, card_uuid, service_id, outcome, outcome_at, "
            "has_user_comment, received_at) VALUES ('k', 'c', 's', 'overridden', "
            "'2025-07-01 10:00:00+00:00', false, '2025-07-01 10:00:00+00:00')"
        ))
        connection.commit()
    assert migrations.upgrade(store.engine) == (None, migrations.head())
    assert store.count_feedback() == 1
    long_ids = tuple("x" * 128 + str(i) for i in range(16))
    card = str(uuid.uuid4())
    assert store.save_feedback("s", [item(card, suggestions=long_ids)], NOW).stored == 1


def test_a_database_at_a_newer_revision_is_left_as_is_and_used(store):
    # A rolling update: a newer version migrated the database; this one still starts and works.
    migrations.upgrade(store.engine)
    with store.engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = 'f00d'"))
    assert migrations.upgrade(store.engine) == ("f00d", "f00d")
    assert not migrations.needs_upgrade(store.engine)
    assert store.save_feedback("s", [item(str(uuid.uuid4()))], NOW).stored == 1
    from cds_service.commands.migrate import migrate_database

    assert migrate_database(str(store.engine.url.render_as_string(hide_password=False))) == (
        f"feedback database at revision f00d, newer than this version's {migrations.head()}: "
        "left as is"
    )


def test_concurrent_migrations_all_succeed_and_migrate_once(store_url, caplog):
    stores = [Store(store_url) for _ in range(4)]
    barrier = threading.Barrier(len(stores))

    def migrate(store: Store) -> tuple[str | None, str]:
        barrier.wait(timeout=30)
        return migrations.upgrade(store.engine)

    try:
        with ThreadPoolExecutor(max_workers=len(stores)) as pool:
            results = list(pool.map(migrate, stores))
    finally:
        for each in stores:
            each.dispose()
    head = migrations.head()
    assert sorted(results, key=str) == sorted(
        [(None, head)] + [(head, head)] * (len(stores) - 1), key=str
    )


def test_two_migrate_commands_at_once_both_succeed(store_url):
    command = [sys.executable, "-m", "cds_service.cli", "migrate", "--database-url", store_url]
    processes = [
        subprocess.Popen(command, stderr=subprocess.PIPE, text=True, cwd=REPO_ROOT)
        for _ in range(2)
    ]
    outputs = [process.communicate(timeout=120)[1] for process in processes]
    assert [process.returncode for process in processes] == [0, 0], outputs
    lines = sorted(out.strip().splitlines()[-1] for out in outputs)
    head = migrations.head()
    assert lines == [f"myocds: feedback database already at revision {head}",
                     f"myocds: feedback database migrated from empty to revision {head}"]


def test_migrate_command_with_the_database_down_is_one_line_and_exit_1():
    result = subprocess.run(
        [sys.executable, "-m", "cds_service.cli", "migrate", "--database-url",
         "postgresql+psycopg://myocds@127.0.0.1:1/gone"],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "myocds: cannot migrate: the feedback database cannot be reached (OperationalError)"
    ]


# --- column sizes, and the database refusing one item ----------------------------------------


def test_sixteen_suggestion_ids_of_128_characters_are_stored(store):
    ids = tuple(f"{i:02d}" + "s" * 126 for i in range(16))
    card = str(uuid.uuid4())
    assert feedback_problems(item(card, suggestions=ids)) == []
    result = store.save_feedback("myopathy-review", [item(card, suggestions=ids)], NOW)
    assert (result.stored, result.refused) == (1, ())
    [row] = store.feedback_rows(card)
    assert row["accepted_suggestions"] == ",".join(ids)


def test_values_longer_than_their_columns_are_named(store):
    long = item(str(uuid.uuid4()), "overridden", suggestions=())
    long["overrideReason"] = {"reason": {"system": "s" * 513, "code": "c" * 129}}
    assert feedback_problems(long) == [
        ("overrideReason.reason.system", "is longer than the 512 characters stored"),
        ("overrideReason.reason.code", "is longer than the 128 characters stored"),
    ]


@pytest.mark.postgres
def test_an_item_the_database_refuses_is_refused_alone():
    # Past the checks (the store API called directly) PostgreSQL enforces the column size: the
    # one item is refused, the others of the post are stored.
    reason = postgres_unreachable_reason()
    if reason is not None:
        pytest.skip(reason)
    with postgres_schema_url() as url:
        store = Store(url)
        try:
            cards = [str(uuid.uuid4()) for _ in range(3)]
            items = [item(card, "overridden", suggestions=()) for card in cards]
            items[1]["overrideReason"] = {"reason": {"code": "c" * 200}}
            result = store.save_feedback("myopathy-review", items, NOW)
            assert (result.stored, result.refused, result.duplicates) == (2, (1,), 0)
            assert {row["card_uuid"] for row in store.feedback_rows()} == {cards[0], cards[2]}
        finally:
            store.dispose()


# --- seen token ids ----------------------------------------------------------------------------


def test_a_token_id_is_remembered_until_it_expires_then_purged(store):
    assert store.remember_token("k" * 64, expires_at=1_000, now=900) is True
    assert store.remember_token("k" * 64, expires_at=1_100, now=950) is False  # a replay
    assert store.remember_token("k" * 64, expires_at=1_100, now=999) is False
    assert store.remember_token("k" * 64, expires_at=2_000, now=1_000) is True  # expired: reused
    assert store.remember_token("j" * 64, expires_at=1_500, now=1_000) is True
    assert store.purge_tokens(now=1_600) == 1
    assert store.remember_token("j" * 64, expires_at=3_000, now=1_600) is True
    assert store.remember_token("k" * 64, expires_at=3_000, now=1_600) is False


def test_concurrent_first_uses_of_one_token_id_accept_exactly_one(store):
    barrier = threading.Barrier(8)

    def first_use(_: int) -> bool:
        barrier.wait(timeout=30)
        return store.remember_token("t" * 64, expires_at=2_000, now=1_000)

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert sorted(pool.map(first_use, range(8))) == [False] * 7 + [True]
