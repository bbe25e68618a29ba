"""``myocds serve``: gunicorn options from the settings, refusals at start-up, and one real server
(2 workers on a loopback port) whose ``/metrics`` sums every worker's counts."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cds_service.commands.serve import gunicorn_options, prepare_metrics_directory
from cds_service.settings import Settings
from tests.support.metrics import value
from tests.support.served import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 60.0  # seconds; a loaded shared machine can be slow to import and fork


def test_gunicorn_options_come_from_the_settings() -> None:
    settings = Settings().with_overrides(host="0.0.0.0", port=9000, workers=3, threads=4)
    options = gunicorn_options(settings)
    assert options["bind"] == "0.0.0.0:9000"
    assert (options["workers"], options["threads"]) == (3, 4)
    # Each worker serves through the buffering front end (commands/front.py).
    assert options["worker_class"] == "cds_service.commands.front.FrontWorker"
    assert options["preload_app"] is True
    # A worker must outlive the longest hook call (the FHIR deadline) before being killed.
    assert options["timeout"] > settings.hook_deadline_seconds


def test_a_given_metrics_directory_is_emptied(tmp_path: Path) -> None:
    stale = tmp_path / "counter_123.db"
    stale.write_bytes(b"old values")
    environ = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    try:
        assert prepare_metrics_directory(Settings(), environ) == str(tmp_path)
        assert not stale.exists()
    finally:
        from prometheus_client import values

        values.ValueClass = values.MutexValue  # this test process keeps single-process metrics


def test_one_worker_needs_no_metrics_directory() -> None:
    environ: dict[str, str] = {}
    assert prepare_metrics_directory(Settings().with_overrides(workers=1), environ) is None
    assert environ == {}


def serve_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a ``myocds serve`` under test: none of this process's settings, a
    SQLite store in ``tmp_path``, plus ``extra`` (also used by test_front.py)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MYOCDS_", "PROMETHEUS_"))}
    env.update(
        MYOCDS_DATABASE_URL=f"sqlite:///{tmp_path / 'serve.sqlite3'}",
        MYOCDS_LOG_LEVEL="WARNING",
        PYTHONPATH=str(REPO_ROOT),
        **extra,
    )
    return env


def start_serve(
    env: dict[str, str], *args: str, stderr: Any = subprocess.PIPE
) -> subprocess.Popen:
    """``myocds serve *args`` started in the repository, not waited for."""
    return subprocess.Popen(
        [sys.executable, "-m", "cds_service.cli", "serve", *args],
        cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=stderr, text=True,
    )


@pytest.mark.parametrize(
    ("env", "args", "message"),
    [
        ({"MYOCDS_WORKERS": "0"}, (), "MYOCDS_WORKERS=0 is below the minimum 1"),
        ({"MYOCDS_AUTH": "maybe"}, (), "MYOCDS_AUTH"),
        ({"MYOCDS_AUTH": "off"}, ("--threads", "0"), "--threads must be at least 1"),
        ({"MYOCDS_AUTH": "off", "MYOCDS_DATABASE_URL": "nosuchdialect://x"}, (), "cannot start"),
        (
            {"MYOCDS_LOG_LEVEL": "VERBOSE"},
            (),
            "MYOCDS_LOG_LEVEL='VERBOSE' is not one of DEBUG, INFO, WARNING, ERROR, CRITICAL",
        ),
        ({"MYOCDS_PORT": "70000"}, (), "MYOCDS_PORT=70000 is above the maximum 65535"),
        ({"MYOCDS_HOOK_DEADLINE_SECONDS": "inf"}, (), "MYOCDS_HOOK_DEADLINE_SECONDS='inf'"),
    ],
)
def test_bad_configuration_stops_start_up_with_a_message(
    tmp_path: Path, env: dict[str, str], args: tuple[str, ...], message: str
) -> None:
    merged = serve_env(tmp_path)
    merged.update(env)
    process = start_serve(merged, "--port", str(free_port()), *args)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 2
    assert message in stderr
    assert "Traceback" not in stderr
    # One line saying what is wrong (the serve banner aside).
    assert len([line for line in stderr.splitlines() if message in line]) == 1


def _request(port: int, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        payload = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if payload is not None else {}
        conn.request(method, path, payload, headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, subprocess.Popen]]:
    tmp = tmp_path_factory.mktemp("serve")
    port = free_port()
    log = (tmp / "serve.log").open("w")
    process = start_serve(
        serve_env(tmp, MYOCDS_AUTH="off", MYOCDS_WORKERS="2", MYOCDS_THREADS="2"),
        "--port", str(port), stderr=log,
    )
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            # Ready: answering, and both workers forked (the first may answer before the second).
            if _request(port, "GET", "/healthz")[0] == 200 and len(_workers(process.pid)) == 2:
                break
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"myocds serve did not start: {(tmp / 'serve.log').read_text()[-2000:]}")
        time.sleep(0.1)  # polling for start-up, not for correctness
    yield port, process
    process.terminate()
    process.wait(timeout=30)
    log.close()


def test_served_metrics_sum_every_worker(
    served: tuple[int, subprocess.Popen], pv_body: dict[str, Any]
) -> None:
    port, process = served
    assert len(_workers(process.pid)) == 2
    calls = 24
    for _ in range(calls):
        status, _ = _request(port, "POST", "/cds-services/myopathy-review", pv_body)
        assert status == 200
    labels = {"service": "myopathy-review", "hook": "patient-view", "status": "200"}
    # Whichever worker answers the scrape, the count is the sum over both workers.
    for _ in range(6):
        status, text = _request(port, "GET", "/metrics")
        assert status == 200
        assert value(text.decode(), "myocds_calls_total", **labels) == calls


def test_development_mode_is_said_at_start_up(
    served: tuple[int, subprocess.Popen], tmp_path: Path
) -> None:
    port, _ = served
    assert _request(port, "GET", "/cds-services")[0] == 200  # auth off: no token needed
    # The banner is checked on a second, short-lived server to read its stderr to the end.
    process = start_serve(serve_env(tmp_path, MYOCDS_AUTH="off", MYOCDS_WORKERS="1"),
                          "--port", str(free_port()))
    deadline = time.monotonic() + START_TIMEOUT
    assert process.stderr is not None
    seen = ""
    while "listening on" not in seen and time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        seen += line
    process.terminate()
    process.wait(timeout=30)
    assert "DEVELOPMENT MODE - authentication is OFF" in seen


def _workers(master: int) -> set[int]:
    return {
        int(p.name) for p in Path("/proc").iterdir()
        if p.name.isdigit() and _parent(p) == master
    }


def _parent(proc_dir: Path) -> int | None:
    try:
        for line in (proc_dir / "status").read_text().splitlines():
            if line.startswith("PPid:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None
