"""Issued cards and the feedback on them, through SQLAlchemy Core (SQLite by default, any URL).

Nothing about the patient is stored: a card row is its uuid, service, hook, rule topic, indicator
and time; a feedback row is the outcome the clinician chose, the suggestion ids, the override
reason code and when. The free-text ``userComment`` is not stored (only whether there was one):
a clinician may type a name or a record number into it.

Feedback is idempotent: a client may send the same feedback twice (CDS Hooks 2.0 §Feedback), so
each row carries a key over card uuid, outcome, timestamp and accepted suggestion ids, unique in
the table, and rows are inserted with "insert or ignore" (``ON CONFLICT DO NOTHING``).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    event,
    func,
    insert,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError, SQLAlchemyError

from cds_service.errors import ConfigurationError
from cds_service.protocol.schemas import parse_rfc3339

log = logging.getLogger("myocds.store")

# INSERT ... ON CONFLICT DO NOTHING, spelled the same way by both.
_DIALECT_INSERT: dict[str, Any] = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}

metadata = MetaData()

issued_cards = Table(
    "issued_cards",
    metadata,
    Column("card_uuid", String(36), primary_key=True),
    Column("service_id", String(100), nullable=False),
    Column("hook", String(100), nullable=False),
    Column("topic", String(64), nullable=True, index=True),  # rule id, e.g. "STAT-01"
    Column("indicator", String(16), nullable=False),
    Column("issued_at", DateTime(timezone=True), nullable=False),
)

feedback = Table(
    "feedback",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("dedup_key", String(64), nullable=False, unique=True),
    Column("card_uuid", String(36), nullable=False, index=True),
    Column("service_id", String(100), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("outcome_at", DateTime(timezone=True), nullable=False),
    Column("accepted_suggestions", String(2000), nullable=True),  # suggestion uuids, sorted, ","
    Column("override_system", String(512), nullable=True),
    Column("override_code", String(128), nullable=True),
    Column("has_user_comment", Boolean, nullable=False, default=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
)


@dataclass(frozen=True)
class IssuedCard:
    card_uuid: str
    service_id: str
    hook: str
    topic: str | None
    indicator: str
    issued_at: datetime


@dataclass(frozen=True)
class FeedbackResult:
    stored: int  # new rows
    duplicates: int  # already stored: the same feedback sent again
    unknown_cards: int  # feedback on a card uuid this store has not recorded


@dataclass
class RuleCounts:
    issued: int = 0
    accepted: int = 0
    overridden: int = 0


class Store:
    def __init__(self, database_url: str) -> None:
        self.engine = _engine(database_url)
        self._create_tables()
        # gunicorn preloads the app in its master and forks the workers: no pooled connection
        # may be inherited, so each worker opens its own.
        self.engine.dispose()

    def _create_tables(self) -> None:
        try:
            metadata.create_all(self.engine)
        except (IntegrityError, ProgrammingError):
            # Several workers starting at once on PostgreSQL race on CREATE TABLE; the loser
            # finds the tables on a second look.
            metadata.create_all(self.engine)
        except OperationalError as exc:
            raise ConfigurationError(
                f"cannot open the feedback database ({type(exc.orig).__name__}); "
                "check MYOCDS_DATABASE_URL"
            ) from None

    def record_cards(self, cards: Iterable[IssuedCard]) -> None:
        rows = [vars(card) for card in cards]
        if rows:
            with self.engine.begin() as connection:
                self._insert_ignoring_duplicates(connection, issued_cards, rows, "card_uuid")

    def save_feedback(
        self, service_id: str, items: Sequence[Mapping[str, Any]], received_at: datetime
    ) -> FeedbackResult:
        """Store each feedback item once; ``items`` already validated against feedback.json."""
        rows = [_feedback_row(service_id, item, received_at) for item in items]
        # The same item twice in one post counts as a duplicate too.
        unique_rows = list({row["dedup_key"]: row for row in rows}.values())
        card_ids = {row["card_uuid"] for row in rows}
        with self.engine.begin() as connection:
            stored = self._insert_ignoring_duplicates(
                connection, feedback, unique_rows, "dedup_key"
            )
            known = set(
                connection.execute(
                    select(issued_cards.c.card_uuid).where(issued_cards.c.card_uuid.in_(card_ids))
                ).scalars()
            )
        unknown = sum(1 for row in rows if row["card_uuid"] not in known)
        return FeedbackResult(stored=stored, duplicates=len(rows) - stored, unknown_cards=unknown)

    def issued_card(self, card_uuid: str) -> IssuedCard | None:
        with self.engine.connect() as connection:
            row = connection.execute(
                select(issued_cards).where(issued_cards.c.card_uuid == card_uuid)
            ).mappings().first()
        return IssuedCard(**row) if row else None

    def feedback_rows(self, card_uuid: str | None = None) -> list[dict[str, Any]]:
        query = select(feedback).order_by(feedback.c.id)
        if card_uuid is not None:
            query = query.where(feedback.c.card_uuid == card_uuid)
        with self.engine.connect() as connection:
            return [dict(row) for row in connection.execute(query).mappings()]

    def rule_report(self) -> dict[str | None, RuleCounts]:
        """Cards issued and feedback outcomes per rule topic (``None``: feedback on a card this
        store did not record). Each feedback row counts once, whatever its suggestions."""
        report: dict[str | None, RuleCounts] = {}
        with self.engine.connect() as connection:
            issued = connection.execute(
                select(issued_cards.c.topic, func.count()).group_by(issued_cards.c.topic)
            )
            for topic, count in issued:
                report[topic] = RuleCounts(issued=int(count))
            outcomes = connection.execute(
                select(issued_cards.c.topic, feedback.c.outcome, func.count())
                .select_from(
                    feedback.outerjoin(
                        issued_cards, issued_cards.c.card_uuid == feedback.c.card_uuid
                    )
                )
                .group_by(issued_cards.c.topic, feedback.c.outcome)
            )
            for topic, outcome, count in outcomes:
                counts = report.setdefault(topic, RuleCounts())
                if outcome == "accepted":
                    counts.accepted += int(count)
                else:
                    counts.overridden += int(count)
        return report

    def ping(self) -> bool:
        """Can the database be reached now? (readiness; never raises)"""
        try:
            with self.engine.connect() as connection:
                connection.execute(select(1))
        except SQLAlchemyError:
            return False
        return True

    def count_feedback(self) -> int:
        with self.engine.connect() as connection:
            return int(connection.execute(select(func.count()).select_from(feedback)).scalar_one())

    def _insert_ignoring_duplicates(
        self, connection: Any, table: Table, rows: list[dict[str, Any]], key: str
    ) -> int:
        if not rows:
            return 0
        dialect = self.engine.dialect.name
        if dialect in ("sqlite", "postgresql"):
            statement = (
                _DIALECT_INSERT[dialect](table)
                .on_conflict_do_nothing(index_elements=[key])
                .returning(table.c[key])
            )
            # RETURNING says which rows went in (rowcount is -1 here with psycopg 3); one
            # statement per row keeps that exact on every driver.
            return sum(
                len(connection.execute(statement, row).fetchall()) for row in rows
            )
        inserted = 0
        for row in rows:  # other databases: a savepoint per row, a duplicate rolls back alone
            try:
                with connection.begin_nested():
                    connection.execute(insert(table), row)
                inserted += 1
            except IntegrityError:
                pass
        return inserted

    def dispose(self) -> None:
        self.engine.dispose()


def dedup_key(item: Mapping[str, Any]) -> str:
    """Identity of one feedback: card, outcome, instant (normalised to UTC), suggestion ids."""
    instant = parse_rfc3339(item["outcomeTimestamp"]).astimezone(UTC).isoformat()
    suggestions = ",".join(sorted(s["id"] for s in item.get("acceptedSuggestions", ())))
    material = "\x1f".join((item["card"].lower(), item["outcome"], instant, suggestions))
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


def _feedback_row(service_id: str, item: Mapping[str, Any], received_at: datetime) -> dict:
    override = item.get("overrideReason") or {}
    reason = override.get("reason") or {}
    suggestions = sorted(s["id"] for s in item.get("acceptedSuggestions", ()))
    return {
        "dedup_key": dedup_key(item),
        "card_uuid": item["card"].lower(),
        "service_id": service_id,
        "outcome": item["outcome"],
        "outcome_at": parse_rfc3339(item["outcomeTimestamp"]).astimezone(UTC),
        "accepted_suggestions": ",".join(suggestions) or None,
        "override_system": reason.get("system"),
        "override_code": reason.get("code"),
        "has_user_comment": bool(override.get("userComment")),
        "received_at": received_at,
    }


def _engine(database_url: str) -> Engine:
    try:
        url = make_url(database_url)
    except Exception:  # any parse failure is a configuration error
        raise ConfigurationError("MYOCDS_DATABASE_URL is not a valid SQLAlchemy URL") from None
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:" and not url.database.startswith("file:"):
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 15})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    try:
        return create_engine(url, pool_pre_ping=True)
    except Exception as exc:  # e.g. the driver is not installed
        raise ConfigurationError(
            f"cannot use MYOCDS_DATABASE_URL ({type(exc).__name__}: {exc})"
        ) from None


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets gunicorn workers read while one writes; the busy timeout queues writers instead
    # of failing them with "database is locked".
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=15000")
    cursor.close()
