"""Fuzz the service through its HTTP interface: 20,000 generated requests by default.

Same strategies and oracle as the suite's fuzz tests (``tests/support/strategies.py``): CDS Hooks
calls mutated from the patient scenarios, hostile calls, feedback, and raw non-JSON requests,
sent through the Flask test client to an app with authentication off and a pinned date. Unlike
the suite it does not stop at the first failure: it runs them all and reports every distinct
failure (status >= 500 with where the service logged the error, or a schema-invalid answer),
with one request body per failure for reproduction.

    .venv/bin/python scripts/fuzz.py [--requests 20000] [--seed 0] [--report fuzz-report.json]

Exit status 0 when every response passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import logging
import socket
import sys
import tempfile
import time
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))


class _ErrorCapture(logging.Handler):
    """Keeps the last ERROR line of the service (where an unexpected exception happened)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.last: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if record.name != "myocds.call":
            self.last = record.getMessage()


def _local_dns_only() -> None:
    from tests.support.strategies import local_only_getaddrinfo

    socket.getaddrinfo = local_only_getaddrinfo(socket.getaddrinfo, "fuzz")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--report", type=Path, help="write the full report as JSON here")
    parser.add_argument(
        "--sweep",
        action="store_true",
        help="then replace every member of every scenario request by each odd JSON type in turn",
    )
    args = parser.parse_args(argv)

    from hypothesis import HealthCheck, given, seed, settings

    from cds_service import create_app
    from cds_service.settings import Settings
    from tests.support.strategies import (
        DEAD_FHIR,
        Call,
        any_call,
        check_response,
        type_confusion_calls,
    )

    _local_dns_only()
    logging.getLogger().setLevel(logging.WARNING)
    database = Path(tempfile.mkdtemp(prefix="myocds-fuzz-")) / "fuzz.sqlite3"
    app = create_app(
        Settings().with_overrides(
            auth="off",
            database_url=f"sqlite:///{database}",
            today=date(2026, 1, 15),
            fhir_allow=(DEAD_FHIR,),
            fhir_timeout_seconds=0.5,
            hook_deadline_seconds=1.0,
            log_level="WARNING",
        )
    )
    # The JSON call lines are the service's business; here they would only drown the report.
    logging.getLogger("myocds.call").setLevel(logging.WARNING)
    capture = _ErrorCapture()
    logging.getLogger().addHandler(capture)
    client = app.test_client()

    statuses: Counter[int] = Counter()
    failures: dict[str, dict[str, Any]] = {}
    slowest = [0.0]

    def send(call: Call) -> None:
        capture.last = None
        started = time.perf_counter()
        response = call.send(client)
        slowest[0] = max(slowest[0], time.perf_counter() - started)
        statuses[response.status_code] += 1
        try:
            check_response(call, response)
        except (AssertionError, ValueError) as exc:
            where = capture.last or str(exc).splitlines()[0]
            key = f"{response.status_code} {where}"
            entry = failures.setdefault(key, {"count": 0, "example": None})
            entry["count"] += 1
            if entry["example"] is None:
                entry["example"] = {
                    "method": call.method,
                    "path": call.path,
                    "content_type": call.content_type,
                    "body": (call.body or b"")[:500000].decode("utf-8", "replace"),
                    "problem": str(exc)[:2000],
                }

    @seed(args.seed)
    @settings(
        max_examples=max(args.requests, 1),
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        phases=[__import__("hypothesis").Phase.generate],
    )
    @given(call=any_call)
    def run(call: Call) -> None:
        send(call)

    started = time.perf_counter()
    if args.requests > 0:
        run()
    if args.sweep:
        for call in type_confusion_calls():
            send(call)
    elapsed = time.perf_counter() - started
    total = sum(statuses.values())
    report = {
        "requests": total,
        "seconds": round(elapsed, 1),
        "requests_per_second": round(total / elapsed, 1) if elapsed else None,
        "slowest_request_seconds": round(slowest[0], 3),
        "statuses": dict(sorted(statuses.items())),
        "failures": failures,
    }
    print(
        f"{total} requests in {elapsed:.1f} s ({report['requests_per_second']}/s), "
        f"slowest {slowest[0]:.3f} s; statuses {report['statuses']}"
    )
    for key, entry in sorted(failures.items(), key=lambda kv: -kv[1]["count"]):
        print(f"FAIL x{entry['count']}: {key}")
    if args.report:
        args.report.write_text(json.dumps(report, indent=2))
    app.extensions["myocds"].store.dispose()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
