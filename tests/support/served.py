"""A service started as a user starts it (a command in a subprocess), on a free loopback port,
waited for on ``/healthz`` and stopped with its whole process group; or an app of this process
served on a loopback port (``on_loopback``) for a client that must reach it over HTTP."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from werkzeug.serving import make_server

START_TIMEOUT = 90.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without the service's settings and import paths, plus
    ``extra``: what a user's shell would give a freshly installed service."""
    env = {
        k: v for k, v in os.environ.items()
        if not k.startswith(("MYOCDS_", "PROMETHEUS_")) and k not in ("PYTHONPATH", "PYTHONHOME")
    }
    env.update(extra)
    return env


def get(port: int, path: str, timeout: float = 10.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@contextmanager
def serving(
    argv: Sequence[str], *, port: int, cwd: Path, env: Mapping[str, str], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``argv`` until ``GET /healthz`` on ``port`` answers 200; stop it (SIGTERM to its
    process group: ``make run`` execs the server, gunicorn forks workers) when the block ends."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            list(argv), cwd=cwd, env=dict(env), stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while True:
                try:
                    if get(port, "/healthz", timeout=2)[0] == 200:
                        break
                except OSError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    said = log.read_text(errors="replace")[-3000:]
                    raise AssertionError(f"{' '.join(argv)} did not start:\n{said}")
                time.sleep(0.1)  # polling for start-up, not for correctness
            yield process
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(timeout=10)


@contextmanager
def on_loopback(app: Any, port: int = 0) -> Iterator[str]:
    """``app`` served by werkzeug (threaded) on 127.0.0.1; yields its base URL."""
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
