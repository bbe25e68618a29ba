"""The feedback database for tests: a SQLite file, or a fresh schema on the PostgreSQL server
at 127.0.0.1:5432 (database ``test``, trust auth; this machine and CI), dropped afterwards so
parallel runs never see each other's rows. Without that server the PostgreSQL half skips."""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, create_engine, text

from cds_service import migrations

POSTGRES_SERVER = "postgresql+psycopg://@127.0.0.1:5432/test"
# Nothing listens on port 1: "the database is down".
POSTGRES_DOWN = "postgresql+psycopg://myocds@127.0.0.1:1/gone"


@cache
def postgres_unreachable_reason() -> str | None:
    try:
        engine = create_engine(POSTGRES_SERVER, connect_args={"connect_timeout": 3})
        with engine.connect() as connection:
            connection.execute(text("select 1"))
        engine.dispose()
        return None
    except Exception as exc:
        return f"PostgreSQL not reachable at 127.0.0.1:5432/test ({type(exc).__name__})"


@contextmanager
def postgres_schema_url() -> Iterator[str]:
    """A URL whose ``search_path`` is a new, empty schema (dropped on exit)."""
    schema = f"myocds_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_SERVER)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{POSTGRES_SERVER}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def upgrade_to(connection: Connection, revision: str) -> None:
    """Bring the database of ``connection`` to ``revision`` of the shipped migrations, as an
    earlier version of the service left it (``migrations.upgrade`` only goes to head). The
    Alembic configuration is this test's own, so the service's cached one is never touched."""
    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).resolve().parent))
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Forwarder:
    """A TCP forwarder from ``127.0.0.1:port`` to the PostgreSQL server: until ``start`` the
    port is closed (the database is "down"); after ``start`` it answers (the database is back)."""

    def __init__(self, port: int, target: tuple[str, int] = ("127.0.0.1", 5432)) -> None:
        self.port = port
        self.target = target
        self._listener: socket.socket | None = None
        self._sockets: list[socket.socket] = []

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self._listener = listener
        threading.Thread(target=self._accept, daemon=True).start()

    def stop(self) -> None:
        for sock in [*self._sockets, *([self._listener] if self._listener else [])]:
            with suppress(OSError):
                sock.close()

    def _accept(self) -> None:
        assert self._listener is not None
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self._sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with suppress(OSError):
            sink.shutdown(socket.SHUT_WR)
