"""Issued cards and the feedback on them, through SQLAlchemy Core (SQLite by default, any URL).

Nothing about the patient is stored: a card row is its uuid, service, hook, rule topic, indicator
and time; a feedback row is the outcome the clinician chose, the suggestion ids, the override
reason code and when. The free-text ``userComment`` is not stored (only whether there was one):
a clinician may type a name or a record number into it.

Feedback is idempotent: a client may send the same feedback twice (CDS Hooks 2.0 §Feedback), so
each row carries a key over card uuid, outcome, timestamp and accepted suggestion ids, unique in
the table, and rows are inserted with "insert or ignore" (``ON CONFLICT DO NOTHING``). Each
item is checked against the sizes of the columns it goes into before it is stored
(``feedback_problems``), and stored or refused on its own.

The schema comes from the migrations in ``cds_service.migrations`` (``myocds migrate``), never
from start-up. Opening a ``Store`` touches no database: a database that is down at start-up
makes the calls that need it answer 503 (``StoreUnavailable``) until it is back; the first use
after that finds the schema (and brings it to head if nobody has), without a restart.

Seen JWT ids (``seen_tokens``) live here too when Redis is not configured: one row per
``(iss, jti)`` hash with its expiry, so every worker, restart and replica shares them.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import os
import threading
import time
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    DateTime,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import (
    DataError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.sql.elements import TextClause

from cds_service import migrations
from cds_service.admission import waiting
from cds_service.errors import ConfigurationError, ServiceUnavailable
from cds_service.protocol.schemas import parse_rfc3339

log = logging.getLogger("myocds.store")

# Issued cards are written behind the calls (``Store.issue``): at most ISSUE_DELAY after the
# first of them, ISSUE_TRANSACTION_CARDS a transaction (a failed one loses no more), in
# statements of CARDS_PER_STATEMENT at most; at most ISSUE_BACKLOG wait.
ISSUE_DELAY = 0.05
ISSUE_TRANSACTION_CARDS = 64
CARDS_PER_STATEMENT = 16
ISSUE_BACKLOG = 10_000
ISSUE_WRITER_IDLE = 10.0  # seconds without cards after which the writer thread stops

# INSERT ... ON CONFLICT DO NOTHING, spelled the same way by both.
_DIALECT_INSERT: dict[str, Any] = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}

# The tables as the newest migration leaves them (cds_service/migrations/versions): the queries
# are written against these; a change here needs a migration.
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
    # 0003: the rule's version and the calling site (issuer, tenant; NULL with auth off).
    Column("rule_version", String(32), nullable=True),
    Column("site_issuer", String(512), nullable=True),
    Column("site_tenant", String(256), nullable=True),
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
    Column("accepted_suggestions", Text, nullable=True),  # suggestion ids, sorted, ","
    Column("override_system", String(512), nullable=True),
    Column("override_code", String(128), nullable=True),
    Column("has_user_comment", Boolean, nullable=False, default=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    # 0003: the rule and version of the card answered (from issued_cards; NULL when this store
    # did not issue it) and the site that sent the feedback.
    Column("topic", String(64), nullable=True, index=True),
    Column("rule_version", String(32), nullable=True),
    Column("site_issuer", String(512), nullable=True),
    Column("site_tenant", String(256), nullable=True),
)

seen_tokens = Table(
    "seen_tokens",
    metadata,
    Column("token_key", String(64), primary_key=True),  # sha256 of issuer and jti
    Column("expires_at", BigInteger, nullable=False, index=True),  # Unix seconds
)

# Where each size-limited feedback column's value comes from in the posted item.
_FEEDBACK_FIELD = {
    "card_uuid": "card",
    "outcome": "outcome",
    "accepted_suggestions": "acceptedSuggestions",
    "override_system": "overrideReason.reason.system",
    "override_code": "overrideReason.reason.code",
}


class StoreUnavailable(ServiceUnavailable):
    """The feedback database cannot be reached (or its schema not brought to head) now."""

    def __init__(self, what: str = "the feedback database cannot be reached") -> None:
        super().__init__(f"{what}; try again later")


@dataclass(frozen=True)
class IssuedCard:
    card_uuid: str
    service_id: str
    hook: str
    topic: str | None
    indicator: str
    issued_at: datetime
    rule_version: str | None = None
    site_issuer: str | None = None
    site_tenant: str | None = None


@dataclass(frozen=True)
class FeedbackResult:
    stored: int  # new rows
    duplicates: int  # already stored: the same feedback sent again
    unknown_cards: int  # feedback on a card uuid this store has not recorded
    # Items the database refused, by their index in ``items`` (the others are stored).
    refused: tuple[int, ...] = ()
    # (rule topic or None, outcome) of each item newly stored (not repeats): for the metrics.
    stored_outcomes: tuple[tuple[str | None, str], ...] = ()


@dataclass
class RuleCounts:
    issued: int = 0
    accepted: int = 0
    overridden: int = 0


class Store:
    def __init__(self, database_url: str, pool_size: int | None = None) -> None:
        """``pool_size``: connections the pool keeps; the service passes its call threads per
        worker (``MYOCDS_THREADS``: each call stores its cards, so that many may be checked out at
        once). Beyond it the pool lends overflow connections, closed when returned: a pool
        smaller than the threads opened and closed a database connection every few calls under
        load. None: SQLAlchemy's default (5), for the CLI's one-thread uses."""
        # No connection yet: gunicorn forks workers from the master after this, and a database
        # that is down now must not stop start-up.
        self.engine = _engine(database_url, pool_size)
        self._schema_ready = False
        self._schema_lock = threading.Lock()
        self._cards_inserts: dict[int, TextClause] = {}  # card count -> its INSERT (_cards_insert)
        # Cards issued by this process's calls and not yet written (``issue``), their writer
        # thread (started in the process that issues, never in gunicorn's master before the
        # fork) and what wakes it.
        self._issued: list[IssuedCard] = []
        self._issued_lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._issued_waiting = threading.Event()
        self._writer_pid: int | None = None
        self._exit_pid: int | None = None  # the process that will write what waits at its exit

    def ensure_schema(self) -> None:
        """The schema at head, migrated here if nobody has yet (``StoreUnavailable`` if the
        database cannot be reached). Checked once per process, again after a failure."""
        if self._schema_ready:
            return
        # Migrating takes a while; and a call must never wait for this lock holding its work
        # slot, which the lock's holder needs back to finish (cds_service.admission).
        with waiting(), self._schema_lock:
            if self._schema_ready:
                return
            try:
                if migrations.needs_upgrade(self.engine):
                    before, after = migrations.upgrade(self.engine)
                    log.warning("feedback database migrated from %s to %s", before, after)
            except (OperationalError, InterfaceError) as exc:
                log.warning("feedback database unavailable (%s)", type(exc.orig).__name__)
                raise StoreUnavailable() from None
            except OSError as exc:  # the SQLite migration lock file cannot be opened
                log.warning("feedback database unavailable (%s)", type(exc).__name__)
                raise StoreUnavailable() from None
            self._schema_ready = True

    @contextmanager
    def _connection(self, *, transaction: bool, autocommit: bool = False) -> Iterator[Connection]:
        """A connection (in a transaction when asked; ``autocommit``: each statement its own
        transaction, committed when it returns) to a database with the schema at head; a lost or
        unreachable database is ``StoreUnavailable``, and the schema is looked at again on the
        next use (the database that comes back may be a new one)."""
        self.ensure_schema()
        try:
            if transaction:
                with self.engine.begin() as connection:
                    yield connection
                return
            with self.engine.connect() as connection:
                if autocommit:  # reset when the connection goes back to the pool
                    connection.execution_options(isolation_level="AUTOCOMMIT")
                yield connection
        except (OperationalError, InterfaceError) as exc:
            self._schema_ready = False
            log.warning("feedback database unavailable (%s)", type(exc.orig).__name__)
            raise StoreUnavailable() from None

    def issue(self, cards: Sequence[IssuedCard]) -> None:
        """Record the cards a call issued, soon: written behind the call by this process's writer
        thread, in one statement with the cards other calls issued meanwhile (``ISSUE_DELAY``).

        A hook call never waits on the database for them, nor holds its work slot while they
        are written (``cds_service.admission``), and one statement serves several calls. What
        reads issued cards in this process writes the waiting ones first (``flush_issued``), so
        it sees every card issued before; another process sees them within ``ISSUE_DELAY``
        (a clinician's feedback comes seconds later). The waiting cards are written at exit too;
        a process killed outright loses at most ``ISSUE_DELAY`` of them, and with them only the
        rule of their feedback (``save_feedback``) and their count in the report. When the
        database is down, or ``ISSUE_BACKLOG`` cards already wait, they are dropped and logged,
        as a failed write always was; the call's advice is never held back for them."""
        if not cards:
            return
        with self._issued_lock:
            if len(self._issued) + len(cards) > ISSUE_BACKLOG:
                log.error("could not record %d issued card(s): %d already waiting to be "
                          "written", len(cards), len(self._issued))
                return
            self._issued.extend(cards)
            if self._writer_pid != os.getpid():  # none yet, or it stopped, or a forked copy
                if self._exit_pid != os.getpid():
                    self._exit_pid = os.getpid()
                    atexit.register(_flush_at_exit, weakref.ref(self))
                self._writer_pid = os.getpid()
                threading.Thread(
                    target=self._write_behind, name="myocds-issued-cards", daemon=True
                ).start()
        self._issued_waiting.set()

    def flush_issued(self) -> None:
        """Write every card this process issued and has not written yet, now."""
        with self._flush_lock:
            with self._issued_lock:
                waiting, self._issued = self._issued, []
            for start in range(0, len(waiting), ISSUE_TRANSACTION_CARDS):
                batch = waiting[start : start + ISSUE_TRANSACTION_CARDS]
                try:
                    self.record_cards(batch)
                except Exception as exc:
                    # The clinicians had their advice; only the feedback join for these is lost.
                    log.error(
                        "could not record %d issued card(s): %s", len(batch), type(exc).__name__
                    )

    def _write_behind(self) -> None:
        while True:
            if not self._issued_waiting.wait(timeout=ISSUE_WRITER_IDLE):
                with self._issued_lock:
                    if not self._issued:  # idle: stop; the next ``issue`` starts another
                        self._writer_pid = None
                        return
                continue
            self._issued_waiting.clear()
            time.sleep(ISSUE_DELAY)  # the cards of the calls that come meanwhile join these
            self.flush_issued()

    def record_cards(self, cards: Iterable[IssuedCard]) -> None:
        """Write ``cards`` now (``issue`` writes behind the calls); a card already stored is
        left as it is."""
        rows = [vars(card) for card in cards]
        if not rows:
            return
        dialect = self.engine.dialect.name
        if dialect not in _DIALECT_INSERT:
            with self._connection(transaction=True) as connection:
                self._insert_ignoring_duplicates(connection, issued_cards, rows, "card_uuid")
            return
        # The cards in a few statements of CARDS_PER_STATEMENT rows or a power of two fewer
        # (where the feedback path asks row by row which went in): a card already stored is
        # left as it is. Few sizes, so few statements to compile and keep (each of 64 rows has
        # 576 parameters): 13 cards are 8 + 4 + 1.
        chunks = []
        start = 0
        while start < len(rows):
            size = min(CARDS_PER_STATEMENT, 1 << (len(rows) - start).bit_length() - 1)
            chunks.append(rows[start : start + size])
            start += size
        # One statement is atomic on its own: on PostgreSQL a single one runs in autocommit,
        # committed when it returns (as durable as in a transaction) without the BEGIN and COMMIT
        # round trips. SQLite has no round trip to save, and resetting a connection's isolation
        # level costs it a PRAGMA: a transaction there (as for several statements).
        autocommit = dialect == "postgresql" and len(chunks) == 1
        with self._connection(transaction=not autocommit, autocommit=autocommit) as connection:
            for chunk in chunks:
                values = {
                    f"{name}_{i}": value
                    for i, row in enumerate(chunk)
                    for name, value in row.items()
                }
                connection.execute(self._cards_insert(len(chunk)), values)

    def _cards_insert(self, count: int) -> TextClause:
        """``INSERT INTO issued_cards ... VALUES (...), (...) ON CONFLICT DO NOTHING`` for
        ``count`` cards (parameters ``<column>_<index>``, typed as the columns), made once per
        count. SQLAlchemy compiles a multi-row ``insert().values()`` anew on every execution (it
        does not cache those); a text statement is compiled once and cached like any other.
        SQLite and PostgreSQL spell it the same way."""
        statement = self._cards_inserts.get(count)
        if statement is None:
            columns = list(issued_cards.columns)
            names = ", ".join(column.name for column in columns)
            rows = ", ".join(
                "(" + ", ".join(f":{column.name}_{i}" for column in columns) + ")"
                for i in range(count)
            )
            statement = text(
                f"INSERT INTO {issued_cards.name} ({names}) VALUES {rows} "
                "ON CONFLICT (card_uuid) DO NOTHING"
            ).bindparams(
                *(
                    bindparam(f"{column.name}_{i}", type_=column.type)
                    for i in range(count)
                    for column in columns
                )
            )
            self._cards_inserts[count] = statement
        return statement

    def save_feedback(
        self,
        service_id: str,
        items: Sequence[Mapping[str, Any]],
        received_at: datetime,
        site: tuple[str | None, str | None] = (None, None),
    ) -> FeedbackResult:
        """Store each feedback item once, with the rule and rule version of its card (from the
        issued cards) and the ``site`` (issuer, tenant) that sent it. ``items`` passed
        feedback.json and ``feedback_problems``; one the database still refuses is left out on
        its own."""
        self.flush_issued()  # the rule of a card issued a moment ago, by this process
        rows = [_feedback_row(service_id, item, received_at) for item in items]
        card_ids = {row["card_uuid"] for row in rows}
        with self._connection(transaction=False) as connection:
            known = {
                card: (topic, version)
                for card, topic, version in connection.execute(
                    select(
                        issued_cards.c.card_uuid, issued_cards.c.topic,
                        issued_cards.c.rule_version,
                    ).where(issued_cards.c.card_uuid.in_(card_ids))
                )
            }
        for row in rows:
            row["topic"], row["rule_version"] = known.get(row["card_uuid"], (None, None))
            row["site_issuer"], row["site_tenant"] = site
        refused: list[int] = []
        inserted: list[int] = []
        try:
            with self._connection(transaction=True) as connection:
                inserted = self._insert_rows_ignoring_duplicates(
                    connection, feedback, rows, "dedup_key"
                )
        except (DataError, IntegrityError):
            # One item the database would not take (the checks above should prevent it): find
            # it with one transaction per item, so the others are stored all the same.
            inserted = []
            for index, row in enumerate(rows):
                try:
                    with self._connection(transaction=True) as connection:
                        if self._insert_ignoring_duplicates(
                            connection, feedback, [row], "dedup_key"
                        ):
                            inserted.append(index)
                except (DataError, IntegrityError) as exc:
                    log.error("feedback item refused by the database: %s", type(exc.orig).__name__)
                    refused.append(index)
        unknown = sum(
            1 for i, row in enumerate(rows) if row["card_uuid"] not in known and i not in refused
        )
        return FeedbackResult(
            stored=len(inserted),
            duplicates=len(rows) - len(refused) - len(inserted),
            unknown_cards=unknown,
            refused=tuple(refused),
            stored_outcomes=tuple((rows[i]["topic"], rows[i]["outcome"]) for i in inserted),
        )

    def remember_token(self, token_key: str, expires_at: int, now: int) -> bool:
        """Record a token id until ``expires_at`` (Unix seconds); False when it is recorded
        already and not expired (a replay). One atomic statement, whoever else inserts it."""
        dialect = self.engine.dialect.name
        with self._connection(transaction=True) as connection:
            if dialect in ("sqlite", "postgresql"):
                statement = _DIALECT_INSERT[dialect](seen_tokens).values(
                    token_key=token_key, expires_at=expires_at
                )
                # An expired row is the same id used again after its token died: take it over.
                statement = statement.on_conflict_do_update(
                    index_elements=["token_key"],
                    set_={"expires_at": statement.excluded.expires_at},
                    where=seen_tokens.c.expires_at <= now,
                ).returning(seen_tokens.c.token_key)
                return connection.execute(statement).first() is not None
            try:
                with connection.begin_nested():
                    connection.execute(
                        insert(seen_tokens), {"token_key": token_key, "expires_at": expires_at}
                    )
                return True
            except IntegrityError:
                taken = connection.execute(
                    update(seen_tokens)
                    .where(seen_tokens.c.token_key == token_key, seen_tokens.c.expires_at <= now)
                    .values(expires_at=expires_at)
                )
                return bool(taken.rowcount)

    def purge_tokens(self, now: int) -> int:
        """Forget token ids whose tokens have expired; returns how many."""
        with self._connection(transaction=True) as connection:
            result = connection.execute(delete(seen_tokens).where(seen_tokens.c.expires_at < now))
            return int(result.rowcount or 0)

    def issued_card(self, card_uuid: str) -> IssuedCard | None:
        self.flush_issued()
        with self._connection(transaction=False) as connection:
            row = connection.execute(
                select(issued_cards).where(issued_cards.c.card_uuid == card_uuid)
            ).mappings().first()
        return IssuedCard(**row) if row else None

    def feedback_rows(self, card_uuid: str | None = None) -> list[dict[str, Any]]:
        query = select(feedback).order_by(feedback.c.id)
        if card_uuid is not None:
            query = query.where(feedback.c.card_uuid == card_uuid)
        with self._connection(transaction=False) as connection:
            return [dict(row) for row in connection.execute(query).mappings()]

    def rule_report(self) -> dict[str | None, RuleCounts]:
        """Cards issued and feedback outcomes per rule topic (``None``: feedback on a card this
        store did not record). Each feedback row counts once, whatever its suggestions."""
        self.flush_issued()
        report: dict[str | None, RuleCounts] = {}
        with self._connection(transaction=False) as connection:
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
        """Can the database be reached now, with its schema at head? (readiness; never raises)"""
        try:
            with self._connection(transaction=False) as connection:
                connection.execute(select(1))
        except (StoreUnavailable, SQLAlchemyError):
            return False
        return True

    def count_feedback(self) -> int:
        with self._connection(transaction=False) as connection:
            return int(connection.execute(select(func.count()).select_from(feedback)).scalar_one())

    def _insert_ignoring_duplicates(
        self, connection: Any, table: Table, rows: list[dict[str, Any]], key: str
    ) -> int:
        return len(self._insert_rows_ignoring_duplicates(connection, table, rows, key))

    def _insert_rows_ignoring_duplicates(
        self, connection: Any, table: Table, rows: list[dict[str, Any]], key: str
    ) -> list[int]:
        """The indexes of the rows that went in (the others were there already)."""
        if not rows:
            return []
        dialect = self.engine.dialect.name
        if dialect in ("sqlite", "postgresql"):
            statement = (
                _DIALECT_INSERT[dialect](table)
                .on_conflict_do_nothing(index_elements=[key])
                .returning(table.c[key])
            )
            # RETURNING says which rows went in (rowcount is -1 here with psycopg 3); one
            # statement per row keeps that exact on every driver.
            return [
                index for index, row in enumerate(rows)
                if connection.execute(statement, row).fetchall()
            ]
        inserted = []
        for index, row in enumerate(rows):  # other databases: a savepoint per row
            try:
                with connection.begin_nested():
                    connection.execute(insert(table), row)
                inserted.append(index)
            except IntegrityError:
                pass  # a duplicate rolls back alone
        return inserted

    def dispose(self) -> None:
        self.flush_issued()
        self.engine.dispose()


def _flush_at_exit(store: weakref.ref[Store]) -> None:
    alive = store()
    if alive is not None:
        alive.flush_issued()


def feedback_problems(item: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Why one schema-valid feedback item cannot be stored, as (field, reason): a value longer
    than its column. (An instant outside years 0001-9999 in UTC already fails the schema's
    date-time format: ``schemas.parse_rfc3339``.)"""
    row = _feedback_row("", item, datetime.min)
    problems = []
    for name, field in _FEEDBACK_FIELD.items():
        length = getattr(feedback.c[name].type, "length", None)
        value = row[name]
        if length is not None and isinstance(value, str) and len(value) > length:
            problems.append((field, f"is longer than the {length} characters stored"))
    return problems


def dedup_key(item: Mapping[str, Any]) -> str:
    """Identity of one feedback: card, outcome, instant (normalised to UTC), suggestion ids."""
    instant = parse_rfc3339(item["outcomeTimestamp"]).isoformat()
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
        "outcome_at": parse_rfc3339(item["outcomeTimestamp"]),
        "accepted_suggestions": ",".join(suggestions) or None,
        "override_system": reason.get("system"),
        "override_code": reason.get("code"),
        "has_user_comment": bool(override.get("userComment")),
        "received_at": received_at,
    }


def _engine(database_url: str, pool_size: int | None = None) -> Engine:
    try:
        url = make_url(database_url)
    except Exception:  # any parse failure is a configuration error
        raise ConfigurationError("MYOCDS_DATABASE_URL is not a valid SQLAlchemy URL") from None
    pool: dict[str, Any] = {"pool_size": pool_size} if pool_size is not None else {}
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:" and not url.database.startswith("file:"):
            try:
                Path(url.database).parent.mkdir(parents=True, exist_ok=True)
            except OSError:
                pass  # not usable now: the calls that need it say 503 until it is
        engine = create_engine(url, connect_args={"timeout": 15}, **pool)
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        try:
            # A database that does not answer must not hold a worker thread for minutes.
            connect_args = {"connect_timeout": 5} if url.get_backend_name() == "postgresql" else {}
            engine = create_engine(url, pool_pre_ping=True, connect_args=connect_args, **pool)
        except Exception as exc:  # e.g. the driver is not installed
            raise ConfigurationError(
                f"cannot use MYOCDS_DATABASE_URL ({type(exc).__name__}: {exc})"
            ) from None
    event.listen(engine, "do_connect", _connect_without_a_slot)
    return engine


def _connect_without_a_slot(
    dialect: Any, _record: Any, cargs: tuple[Any, ...], cparams: dict[str, Any]
) -> Any:
    """Open a database connection with the call's work slot given back (cds_service.admission):
    a database that does not answer takes up to its connect timeout, and the worker's other
    calls compute meanwhile. A statement on an open connection keeps the slot: its round trip
    is short, and giving the slot back and taking it again costs more than it waits (measured
    on PostgreSQL over loopback: BENCHMARKS.md, issue 14)."""
    with waiting():
        return dialect.connect(*cargs, **cparams)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets gunicorn workers read while one writes; the busy timeout queues writers instead
    # of failing them with "database is locked".
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=15000")
    cursor.close()
