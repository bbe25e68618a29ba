"""Alembic environment: always run by ``cds_service.migrations.upgrade`` (``myocds migrate``),
which hands over a connection it has already locked; there is no alembic.ini and no URL here."""

from __future__ import annotations

from alembic import context

connection = context.config.attributes["connection"]
# Batch mode: SQLite cannot ALTER a column in place; alembic copies the table instead.
context.configure(connection=connection, render_as_batch=True, compare_type=True)
with context.begin_transaction():
    context.run_migrations()
