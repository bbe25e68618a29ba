"""``myocds migrate``: bring the feedback database's schema to this version's head (Alembic
migrations in ``cds_service/migrations``). ``myocds serve`` runs the same once before its
workers start; running it from several processes at once is safe (they take a lock)."""

from __future__ import annotations

import argparse
import sys

from sqlalchemy.exc import SQLAlchemyError

from cds_service.cli import command
from cds_service.errors import ConfigurationError
from cds_service.settings import Settings


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database-url", help="SQLAlchemy URL (default MYOCDS_DATABASE_URL, the SQLite file)"
    )


def migrate_database(database_url: str) -> str:
    """Migrate to head; one line saying what was done. Raises ``SQLAlchemyError`` when the
    database cannot be reached and ``ConfigurationError`` when the URL is unusable."""
    from cds_service import migrations
    from cds_service.protocol.store import Store

    store = Store(database_url)
    try:
        before, after = migrations.upgrade(store.engine)
    finally:
        store.dispose()
    if before == after and after != migrations.head():
        return (
            f"feedback database at revision {after}, newer than this version's "
            f"{migrations.head()}: left as is"
        )
    if before == after:
        return f"feedback database already at revision {after}"
    return f"feedback database migrated from {before or 'empty'} to revision {after}"


@command("migrate", "Create or upgrade the feedback database schema.", _arguments)
def migrate(args: argparse.Namespace) -> int:
    try:
        database_url = args.database_url or Settings.from_env().database_url
        print(f"myocds: {migrate_database(database_url)}", file=sys.stderr)
    except ConfigurationError as exc:
        print(f"myocds: configuration error: {exc}", file=sys.stderr)
        return 2
    except (SQLAlchemyError, OSError) as exc:
        # The driver's message may carry the host and user: the type is enough to act on.
        print(
            f"myocds: cannot migrate: the feedback database cannot be reached "
            f"({type(getattr(exc, 'orig', None) or exc).__name__})",
            file=sys.stderr,
        )
        return 1
    return 0


def migrate_at_start(database_url: str) -> bool:
    """For ``myocds serve``, once in the master before the workers: migrate if the database
    answers; if it does not, say so and start anyway (unready: ``/readyz`` 503, and the schema
    is brought to head when it answers). False only for an unusable URL: do not start."""
    try:
        print(f"myocds: {migrate_database(database_url)}", file=sys.stderr)
    except ConfigurationError as exc:
        print(f"myocds: cannot start: {exc}", file=sys.stderr)
        return False
    except (SQLAlchemyError, OSError) as exc:
        print(
            "myocds: the feedback database cannot be reached "
            f"({type(getattr(exc, 'orig', None) or exc).__name__}): starting unready, "
            "the schema is migrated when it answers",
            file=sys.stderr,
        )
    return True
