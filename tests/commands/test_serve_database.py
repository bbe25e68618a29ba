"""``myocds serve`` and its feedback database as processes: it starts with the database down
(unready, not a crash loop) and becomes ready when the database is usable, without a restart;
two instances starting at once on one new database both start, every worker serving."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from tests.support.served import START_TIMEOUT, clean_env, free_port, get, serving

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVE = [sys.executable, "-m", "cds_service.cli", "serve"]


def _env(database_url: str) -> dict[str, str]:
    return clean_env(MYOCDS_AUTH="off", MYOCDS_DATABASE_URL=database_url, MYOCDS_WORKERS="2",
                     MYOCDS_THREADS="2", MYOCDS_LOG_LEVEL="WARNING")


def _post_feedback(port: int) -> int:
    body = {"feedback": [{"card": str(uuid.uuid4()), "outcome": "overridden",
                          "outcomeTimestamp": "2025-07-01T10:00:00Z"}]}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", "/cds-services/myopathy-review/feedback", json.dumps(body),
                     {"Content-Type": "application/json"})
        return conn.getresponse().status
    finally:
        conn.close()


def test_serve_starts_unready_with_the_database_down_and_becomes_ready(tmp_path: Path) -> None:
    blocker = tmp_path / "data"
    blocker.write_text("a file where the database directory should be")
    port = free_port()
    log = tmp_path / "serve.log"
    with serving([*SERVE, "--port", str(port)], port=port, cwd=REPO_ROOT,
                 env=_env(f"sqlite:///{blocker / 'db.sqlite3'}"), log=log):
        # Several calls: each may land on either worker.
        assert [get(port, "/readyz")[0] for _ in range(6)] == [503] * 6
        assert [_post_feedback(port) for _ in range(4)] == [503] * 4
        blocker.unlink()
        blocker.mkdir()
        assert [get(port, "/readyz")[0] for _ in range(6)] == [200] * 6
        assert [_post_feedback(port) for _ in range(4)] == [200] * 4
    said = log.read_text()
    assert "myocds: the feedback database cannot be reached (" in said
    assert "): starting unready, the schema is migrated when it answers" in said
    assert "Traceback" not in said


def test_two_instances_starting_at_once_on_a_new_database_both_serve(tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'shared.sqlite3'}"
    ports = [free_port(), free_port()]
    logs = [tmp_path / f"serve-{i}.log" for i in range(2)]
    processes = []
    try:
        for port, log in zip(ports, logs, strict=True):  # both started before either is up
            processes.append(subprocess.Popen(
                [*SERVE, "--port", str(port)], cwd=REPO_ROOT, env=_env(database_url),
                stdout=subprocess.DEVNULL, stderr=log.open("wb"), start_new_session=True,
            ))
        for port, process in zip(ports, processes, strict=True):
            _wait_until_up(port, process)
        for port in ports:
            assert [get(port, "/readyz")[0] for _ in range(4)] == [200] * 4
            assert [_post_feedback(port) for _ in range(4)] == [200] * 4
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=30)
    said = [log.read_text() for log in logs]
    assert all("Traceback" not in text for text in said), said
    migrated = [text.count("feedback database migrated from empty to revision") for text in said]
    already = [text.count("feedback database already at revision") for text in said]
    assert sorted(migrated) == [0, 1] and sorted(already) == [0, 1], said


def _wait_until_up(port: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if get(port, "/healthz", timeout=2)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)  # polling for start-up, not for correctness
    raise AssertionError(f"myocds serve on port {port} did not start")
