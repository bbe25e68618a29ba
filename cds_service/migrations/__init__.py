"""The feedback database's schema, as versioned Alembic migrations (``versions/``).

``upgrade(engine)`` brings a database to the newest revision. ``myocds migrate`` runs it, and
``myocds serve`` runs it once before the workers start. Several processes may run it at once
(two replicas starting, a worker catching up after the database came back): each takes a lock
first, on PostgreSQL an advisory lock held by the migrating transaction, on SQLite an exclusive
lock on a file next to the database; whoever comes second finds the schema at head and does
nothing.

A database made before migrations existed (tables from ``create_all``, no ``alembic_version``)
is stamped at revision 0001, the schema that path made, and upgraded from there.
"""

from __future__ import annotations

import fcntl
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, inspect, text

if TYPE_CHECKING:
    from alembic.config import Config

# Alembic says "Context impl ..." at INFO each time a process looks at the revision; what was
# migrated is logged by the caller.
logging.getLogger("alembic").setLevel(logging.WARNING)

__all__ = ["BASELINE", "HEAD", "current", "head", "needs_upgrade", "upgrade"]

BASELINE = "0001"  # the schema create_all made before migrations
# The newest revision in versions/ (tests/commands/test_migrate.py holds it to Alembic's reading
# of the scripts). A process whose database is already there never loads Alembic: each serving
# worker checks once, and Alembic with its templates is ~10 MB of every worker's memory.
HEAD = "0003"
# Any constant both sides agree on: the key of the PostgreSQL advisory lock ("myocds").
_PG_LOCK_KEY = 0x6D796F636473


@cache
def _config() -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).resolve().parent))
    return config


@cache
def head() -> str:
    """The newest revision of the migrations shipped with this version of the service."""
    from alembic.script import ScriptDirectory

    revision = ScriptDirectory.from_config(_config()).get_current_head()
    assert revision is not None
    return revision


def current(connection: Connection) -> str | None:
    """The revision the database is at (``None``: never migrated): Alembic's version table, read
    as Alembic reads it (one row), without loading Alembic."""
    if not inspect(connection).has_table("alembic_version"):
        return None
    revisions = connection.execute(text("SELECT version_num FROM alembic_version")).scalars()
    found = list(revisions)
    if len(found) > 1:
        raise RuntimeError("the feedback database has more than one Alembic head")
    return found[0] if found else None


def needs_upgrade(engine: Engine) -> bool:
    """True when the database is behind this version's head. A revision this version does not
    know is a newer deployment's (rolling update): migrations only add, so it is left as is."""
    with engine.connect() as connection:
        revision = current(connection)
    if revision == HEAD:
        return False
    return revision is None or (revision != head() and revision in _known_revisions())


@cache
def _known_revisions() -> frozenset[str]:
    from alembic.script import ScriptDirectory

    return frozenset(s.revision for s in ScriptDirectory.from_config(_config()).walk_revisions())


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Migrate to head under the lock; returns (revision before, revision after)."""
    with _locked(engine) as connection:
        before = current(connection)
        if before == head() or (before is not None and before not in _known_revisions()):
            return before, before  # at head, or a newer deployment's revision: left as is
        from alembic import command

        config = _config()
        config.attributes["connection"] = connection
        if before is None and inspect(connection).has_table("issued_cards"):
            command.stamp(config, BASELINE)
        command.upgrade(config, "head")
        connection.commit()
        return before, head()


@contextmanager
def _locked(engine: Engine) -> Iterator[Connection]:
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            # Held until the migrating transaction commits (PostgreSQL DDL is transactional).
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
            yield connection
        return
    lock_path = _sqlite_lock_path(engine)
    if lock_path is None:  # in memory, or another database: one process only
        with engine.connect() as connection:
            yield connection
        return
    with open(lock_path, "a+b") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)  # released when the file is closed
        with engine.connect() as connection:
            yield connection


def _sqlite_lock_path(engine: Engine) -> Path | None:
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        return None
    if database.startswith("file:"):
        return None
    return Path(database).with_name(Path(database).name + ".migrate-lock")
