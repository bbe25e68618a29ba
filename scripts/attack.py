"""Attack run against a served instance on loopback (issue 12): measures each point and prints
the figures beside their targets.

It starts ``myocds serve`` on a free loopback port exactly as deployed (authentication required,
a test issuer whose key it made, ``MYOCDS_PUBLIC_BASE_URL``, 2 workers x 4 threads, SQLite in a
temporary directory), two loopback FHIR servers (one streaming oversized pages, one that never
answers) and runs the checks:

- ``slow-clients``: 200 connections that dribble request heads and bodies (re-opened when the
  server cuts them), while normal calls run: their p50/p99/max and failures;
- ``memory``: 4 concurrent calls, several rounds, whose fhirServer streams 64 MiB pages on every
  key: the peak and final RSS of each worker;
- ``hanging-fhir``: 12 concurrent calls to a FHIR server that never answers, while calls with
  their prefetch complete run: the prefetched calls' p99, the slowest fallback call against the
  hook deadline.

Further checks register with ``@check("name")`` (see "Checks of issue 12 points 2, 3 and 5").

    .venv/bin/python scripts/attack.py [--only slow-clients,memory] [--slow 200] [--workers 2]

Exit status 0 when every figure meets its target, 1 otherwise. Results of a run are recorded in
docs/trust.md ("Attack run").
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from tests.support.fhir_server import FhirTestServer  # noqa: E402
from tests.support.signing import SigningKey  # noqa: E402

ISS = "https://attack.test.example"
SERVICE = "/cds-services/myopathy-review"
EXAMPLE = REPO_ROOT / "examples" / "requests" / "patient-view-statin-ck.json"
HOOK_DEADLINE = 4.0  # MYOCDS_HOOK_DEADLINE_SECONDS, the default
START_TIMEOUT = 90.0
MIB = 1024 * 1024


# ---------------------------------------------------------------------------------------------
# Figures and the registry of checks


@dataclass(frozen=True)
class Figure:
    check: str
    name: str
    value: float
    unit: str
    target: str  # e.g. "<= 1.0"; "" when the figure is only reported
    ok: bool = True

    def line(self) -> str:
        verdict = "" if not self.target else ("PASS" if self.ok else "FAIL")
        value = f"{self.value:.3f}" if isinstance(self.value, float) else str(self.value)
        columns = f"{self.check:<14} {self.name:<52} {value:>10} {self.unit:<5}"
        return f"{columns} {self.target:<9} {verdict}"


def at_most(check: str, name: str, value: float, unit: str, limit: float) -> Figure:
    return Figure(check, name, value, unit, f"<= {limit:g}", value <= limit)


def report(check: str, name: str, value: float, unit: str) -> Figure:
    return Figure(check, name, value, unit, "")


CheckFn = Callable[["Target", argparse.Namespace], list[Figure]]
CHECKS: dict[str, CheckFn] = {}


def check(name: str) -> Callable[[CheckFn], CheckFn]:
    def register(fn: CheckFn) -> CheckFn:
        CHECKS[name] = fn
        return fn

    return register


# ---------------------------------------------------------------------------------------------
# The served instance


@dataclass
class Target:
    """One ``myocds serve`` on loopback with authentication on, and what a check needs of it."""

    workers: int
    threads: int
    directory: Path
    key: SigningKey = field(default_factory=lambda: SigningKey.generate("ES384", "attack-key"))
    fhir: dict[str, FhirTestServer] = field(default_factory=dict)
    port: int = 0
    process: subprocess.Popen[str] | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    worker_class: str | None = None  # None: as myocds serve chooses; "gthread" for a comparison

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def environment(self) -> dict[str, str]:
        issuers = self.directory / "issuers.json"
        issuers.write_text(
            json.dumps(
                {
                    "issuers": [
                        {
                            "iss": ISS,
                            "jwks": self.key.jwks(),
                            "fhirServers": [s.base_url for s in self.fhir.values()],
                        }
                    ]
                }
            )
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MYOCDS_", "PROMETHEUS"))}
        env.update(
            MYOCDS_AUTH="required",
            MYOCDS_ISSUERS_FILE=str(issuers),
            MYOCDS_PUBLIC_BASE_URL=self.base_url,
            MYOCDS_FHIR_ALLOW=",".join(s.base_url for s in self.fhir.values()),
            MYOCDS_DATABASE_URL=f"sqlite:///{self.directory / 'attack.sqlite3'}",
            MYOCDS_WORKERS=str(self.workers),
            MYOCDS_THREADS=str(self.threads),
            MYOCDS_HOOK_DEADLINE_SECONDS=str(HOOK_DEADLINE),
            MYOCDS_LOG_LEVEL="WARNING",
            PYTHONPATH=str(REPO_ROOT),
            **self.extra_env,
        )
        return env

    def start(self) -> None:
        if not self.port:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                self.port = int(s.getsockname()[1])
        log = (self.directory / "serve.log").open("a")
        command = [sys.executable, "-m", "cds_service.cli"]
        if self.worker_class:
            # The same command with one gunicorn option changed: the baseline of a comparison.
            command = [sys.executable, "-c", _WITH_WORKER_CLASS % self.worker_class]
        self.process = subprocess.Popen(
            [*command, "serve", "--port", str(self.port)],
            cwd=REPO_ROOT,
            env=self.environment(),
            stdout=subprocess.DEVNULL,
            stderr=log,
            text=True,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                if (
                    self.call("GET", "/healthz", auth=False)[0] == 200
                    and len(self.worker_pids()) == self.workers
                ):
                    return
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"myocds serve did not start; see {self.directory}/serve.log")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=40)

    def restart(self) -> None:
        """The same instance (port, database, issuer) stopped and started again."""
        self.stop()
        self.start()

    def worker_pids(self) -> list[int]:
        assert self.process is not None
        master = self.process.pid
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    status = (entry / "status").read_text()
                except OSError:
                    continue
                if f"\nPPid:\t{master}\n" in status:
                    found.append(int(entry.name))
        return sorted(found)

    def token(self, path: str, **claims: Any) -> str:
        payload = {"iss": ISS, "aud": self.base_url + path, **claims}
        now = time.time()
        payload.setdefault("iat", int(now))
        payload.setdefault("exp", int(now) + 300)
        payload.setdefault("jti", str(uuid.uuid4()))
        import jwt

        return jwt.encode(
            payload, self.key.private, algorithm="ES384", headers={"kid": "attack-key"}
        )

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        auth: bool = True,
        headers: dict[str, str] | None = None,
        timeout: float = 60.0,
    ) -> tuple[int, bytes, float]:
        """One request on a new connection: (status, body, seconds)."""
        sent = dict(headers or {})
        if auth:
            sent.setdefault("Authorization", f"Bearer {self.token(path)}")
        payload = None
        if body is not None:
            payload = body if isinstance(body, bytes) else json.dumps(body).encode()
            sent.setdefault("Content-Type", "application/json")
        started = time.monotonic()
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, payload, sent)
            response = conn.getresponse()
            return response.status, response.read(), time.monotonic() - started
        finally:
            conn.close()


_WITH_WORKER_CLASS = (
    "import sys; from cds_service.commands import serve; options = serve.gunicorn_options; "
    "serve.gunicorn_options = lambda s: {**options(s), 'worker_class': %r}; "
    "from cds_service.cli import main; sys.exit(main(sys.argv[1:]))"
)


def prefetched_body() -> dict[str, Any]:
    body = json.loads(EXAMPLE.read_text())
    body["hookInstance"] = str(uuid.uuid4())
    return body


def fallback_body(fhir_server: str) -> dict[str, Any]:
    body = prefetched_body()
    body.pop("prefetch", None)
    body.pop("fhirAuthorization", None)
    body["fhirServer"] = fhir_server
    return body


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile; infinite when nothing was measured (every call failed)."""
    if not values:
        return float("inf")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


# ---------------------------------------------------------------------------------------------
# Slow clients (issue 12 point 1)


class SlowClients:
    """``count`` connections dribbling a byte a second: half in the request head, half in the
    body. A connection the server closes (its header or body deadline) is opened again, so
    ``count`` stay open for as long as this runs."""

    def __init__(self, port: int, count: int) -> None:
        self.port, self.count = port, count
        self.open = 0
        self.reopened = 0
        self.answered_408 = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    def __enter__(self) -> SlowClients:
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    async def _main(self) -> None:
        tasks = [asyncio.create_task(self._one(i)) for i in range(self.count)]
        while not self._stop.is_set():
            await asyncio.sleep(0.1)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _one(self, index: int) -> None:
        body = json.dumps(prefetched_body()).encode()
        if index % 2:
            head = (
                f"POST {SERVICE} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                + "".join(f"X-Slow-{i}: {'a' * 30}\r\n" for i in range(60))
            ).encode()
            first, drip = b"", head
        else:
            first = (
                f"POST {SERVICE} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode()
            drip = body
        while True:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                await asyncio.sleep(0.5)
                continue
            self.open += 1
            try:
                if first:
                    writer.write(first)
                for i in range(len(drip)):
                    writer.write(drip[i : i + 1])
                    await writer.drain()
                    try:
                        answer = await asyncio.wait_for(reader.read(64), 1.0)
                    except TimeoutError:
                        continue
                    if answer.startswith(b"HTTP/1.1 408"):
                        self.answered_408 += 1
                    break  # the server answered or closed: open again
            except OSError:
                pass
            finally:
                self.open -= 1
                writer.close()
            self.reopened += 1


@check("slow-clients")
def slow_clients(target: Target, args: argparse.Namespace) -> list[Figure]:
    name = "slow-clients"
    for _ in range(5):
        target.call("POST", SERVICE, prefetched_body())  # warm up both workers
    with SlowClients(target.port, args.slow) as slow:
        time.sleep(3.0)  # every slow connection is open and mid-request
        open_during = slow.open
        timings: list[float] = []
        failures = 0
        ends = time.monotonic() + args.seconds

        def client() -> None:
            nonlocal failures
            while time.monotonic() < ends:
                try:
                    status, _, elapsed = target.call("POST", SERVICE, prefetched_body(), timeout=30)
                except OSError:
                    failures += 1
                    continue
                timings.append(elapsed)
                if status != 200:
                    failures += 1

        with ThreadPoolExecutor(max_workers=4) as pool:
            for _ in range(4):
                pool.submit(client)
        open_after = slow.open
        reopened, answered_408 = slow.reopened, slow.answered_408
    return [
        report(name, "slow connections open when the calls started", open_during, ""),
        report(name, "slow connections open when the calls ended", open_after, ""),
        report(name, "slow connections cut at a deadline and re-opened", reopened, ""),
        report(name, "of which answered 408 (body deadline)", answered_408, ""),
        report(name, "normal calls (4 clients)", len(timings), ""),
        report(name, "normal calls p50", percentile(timings, 50), "s"),
        at_most(name, "normal calls p99", percentile(timings, 99), "s", 1.0),
        report(name, "normal calls max", percentile(timings, 100), "s"),
        at_most(name, "normal calls failed", failures, "", 0),
    ]


# ---------------------------------------------------------------------------------------------
# Memory (issue 12 point 4)


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


@contextmanager
def sampled_rss(pids: list[int]) -> Iterator[dict[int, float]]:
    peaks = {pid: _rss_mb(pid) for pid in pids}
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.02):
            for pid in pids:
                peaks[pid] = max(peaks[pid], _rss_mb(pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield peaks
    finally:
        stop.set()
        sampler.join()


@check("memory")
def memory(target: Target, args: argparse.Namespace) -> list[Figure]:
    name = "memory"
    large = target.fhir["large"]
    pids = target.worker_pids()
    before = {pid: _rss_mb(pid) for pid in pids}
    statuses: list[int] = []
    with sampled_rss(pids) as peaks:
        for _ in range(args.rounds):
            with ThreadPoolExecutor(max_workers=4) as pool:
                results = list(
                    pool.map(
                        lambda _: target.call("POST", SERVICE, fallback_body(large.base_url)),
                        range(4),
                    )
                )
            statuses += [status for status, _, _ in results]
    time.sleep(1.0)
    after = {pid: _rss_mb(pid) for pid in pids}
    sent = sum(f.sent for f in large.faults) / MIB
    return [
        report(name, "calls (4 at a time), answered 412", statuses.count(412), ""),
        report(name, "calls answered otherwise", len(statuses) - statuses.count(412), ""),
        report(name, "MiB the FHIR server managed to send", sent, "MiB"),
        report(name, "worker RSS before (largest)", max(before.values()), "MB"),
        at_most(name, "worker RSS peak (largest)", max(peaks.values()), "MB", 300),
        at_most(name, "worker RSS after (largest)", max(after.values()), "MB", 300),
    ]


# ---------------------------------------------------------------------------------------------
# A hanging FHIR server (issue 12 point 7)


@check("hanging-fhir")
def hanging_fhir(target: Target, args: argparse.Namespace) -> list[Figure]:
    name = "hanging-fhir"
    hanging = target.fhir["hanging"]
    fallback: list[tuple[int, float]] = []
    prefetched: list[float] = []
    prefetched_failures = 0
    with ThreadPoolExecutor(max_workers=14) as pool:
        stuck = [
            pool.submit(target.call, "POST", SERVICE, fallback_body(hanging.base_url))
            for _ in range(12)
        ]
        ends = time.monotonic() + HOOK_DEADLINE + 1.0

        def client() -> None:
            nonlocal prefetched_failures
            while time.monotonic() < ends:
                status, _, elapsed = target.call("POST", SERVICE, prefetched_body())
                prefetched.append(elapsed)
                prefetched_failures += status != 200

        clients = [pool.submit(client) for _ in range(2)]
        for future in stuck:
            status, _, elapsed = future.result()
            fallback.append((status, elapsed))
        for client_future in clients:
            client_future.result()
    slowest = max(elapsed for _, elapsed in fallback)
    # A call answers its 412 once the deadline passes; "past the deadline" allows 0.2 s to
    # write that answer on a shared 2-core machine.
    late = sum(elapsed > HOOK_DEADLINE + 0.2 for _, elapsed in fallback)
    return [
        report(name, "fallback calls answered 412", sum(s == 412 for s, _ in fallback), ""),
        report(name, "slowest fallback call (deadline 4 s)", slowest, "s"),
        at_most(name, "fallback calls past the deadline (+0.2 s)", late, "", 0),
        report(name, "prefetched calls meanwhile (2 clients)", len(prefetched), ""),
        at_most(name, "prefetched calls p99", percentile(prefetched, 99), "s", 0.5),
        report(name, "prefetched calls max", percentile(prefetched, 100), "s"),
        at_most(name, "prefetched calls failed", prefetched_failures, "", 0),
    ]


# ---------------------------------------------------------------------------------------------
# Replay across workers and restarts, a forged Host, date/time edges (issue 12 points 2, 3, 5)

REPLAY_TOKENS = 20
REPLAY_SENDS = 6  # each token sent this many times at once, each on its own connection


def _accepted_per_token(target: Target, tokens: list[str], sends: int) -> list[int]:
    """How many of ``sends`` simultaneous calls with each token were accepted (200)."""

    def send(token: str) -> int:
        return target.call("GET", "/cds-services", auth=False,
                           headers={"Authorization": f"Bearer {token}"})[0]

    with ThreadPoolExecutor(max_workers=sends) as pool:
        return [
            sum(1 for status in pool.map(send, [token] * sends) if status == 200)
            for token in tokens
        ]


def _restart_one_worker(target: Target) -> None:
    """SIGTERM one worker; gunicorn starts a new one (a fresh process, empty memory)."""
    before = target.worker_pids()
    os.kill(before[0], signal.SIGTERM)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        now = target.worker_pids()
        if len(now) == target.workers and before[0] not in now:
            if target.call("GET", "/healthz", auth=False)[0] == 200:
                return
        time.sleep(0.2)
    raise SystemExit("the killed worker was not replaced")


@check("replay")
def replay(target: Target, args: argparse.Namespace) -> list[Figure]:
    tokens = [target.token("/cds-services") for _ in range(REPLAY_TOKENS)]
    first = _accepted_per_token(target, tokens, REPLAY_SENDS)
    _restart_one_worker(target)
    after_worker_restart = _accepted_per_token(target, tokens, REPLAY_SENDS)
    target.restart()
    after_restart = _accepted_per_token(target, tokens, REPLAY_SENDS)
    name = f"{REPLAY_TOKENS} tokens x {REPLAY_SENDS} at once"
    return [
        report("replay", f"{name}: tokens accepted exactly once", first.count(1), ""),
        at_most("replay", f"{name}: tokens accepted more than once",
                sum(1 for n in first if n > 1), "", 0),
        at_most("replay", f"{name}: tokens never accepted", first.count(0), "", 0),
        at_most("replay", "the same tokens after a worker restart: accepted",
                sum(after_worker_restart), "", 0),
        at_most("replay", "the same tokens after a service restart: accepted",
                sum(after_restart), "", 0),
    ]


@dataclass
class _OnDatabase(Target):
    """A Target whose feedback database is ``database_url`` instead of its SQLite file."""

    database_url: str = ""

    def environment(self) -> dict[str, str]:
        return {**super().environment(), "MYOCDS_DATABASE_URL": self.database_url}


@check("replay-postgres")
def replay_postgres(target: Target, args: argparse.Namespace) -> list[Figure]:
    """The replay check again on a second instance whose feedback database is PostgreSQL
    (127.0.0.1:5432/test, a fresh schema), when that server is there."""
    from tests.support.databases import postgres_schema_url, postgres_unreachable_reason

    reason = postgres_unreachable_reason()
    if reason is not None:
        print(f"   skipped: {reason}", flush=True)
        return []
    with postgres_schema_url() as url, tempfile.TemporaryDirectory() as tmp:
        other = _OnDatabase(target.workers, target.threads, Path(tmp), fhir=target.fhir,
                            database_url=url)
        try:
            other.start()
            figures = replay(other, args)
        finally:
            other.stop()
    return [Figure("replay-pg", f.name, f.value, f.unit, f.target, f.ok) for f in figures]


@check("forged-host")
def forged_host(target: Target, args: argparse.Namespace) -> list[Figure]:
    evil = "http://evil.example"
    forgeries = {
        "Host": {"Host": "evil.example"},
        "Host + X-Forwarded-Proto/Host": {"Host": "evil.example", "X-Forwarded-Proto": "http",
                                          "X-Forwarded-Host": "evil.example"},
        "X-Forwarded-Host only": {"X-Forwarded-Host": "evil.example",
                                  "X-Forwarded-Proto": "http"},
        "Forwarded": {"Host": "evil.example", "Forwarded": "proto=http;host=evil.example"},
    }
    accepted = 0
    for headers in forgeries.values():
        for path, body in (("/cds-services", None), (SERVICE, prefetched_body()),
                           (SERVICE + "/feedback", _one_feedback("2025-07-01T10:00:00Z"))):
            token = target.token(path)
            forged = token_for(target, evil + path)
            status = target.call("POST" if body else "GET", path, body, auth=False,
                                 headers={**headers, "Authorization": f"Bearer {forged}"})[0]
            accepted += status == 200
            good = target.call("POST" if body else "GET", path, body, auth=False,
                               headers={**headers, "Authorization": f"Bearer {token}"})[0]
            if good != 200:
                raise SystemExit(f"a valid token was refused ({good}) with {headers}")
    calls = len(forgeries) * 3
    return [at_most("forged-host", f"tokens for evil.example accepted ({calls} forged calls)",
                    accepted, "", 0)]


def token_for(target: Target, audience: str) -> str:
    import jwt

    now = int(time.time())
    claims = {"iss": ISS, "aud": audience, "iat": now, "exp": now + 300,
              "jti": str(uuid.uuid4())}
    return jwt.encode(claims, target.key.private, algorithm="ES384",
                      headers={"kid": "attack-key"})


def _one_feedback(at: str) -> dict[str, Any]:
    return {"feedback": [{"card": str(uuid.uuid4()), "outcome": "overridden",
                          "outcomeTimestamp": at}]}


@check("date-sweep")
def date_sweep(target: Target, args: argparse.Namespace) -> list[Figure]:
    from tests.protocol.test_date_edges import EDGES, NUMERIC_DATES, PLACES

    statuses: dict[int, int] = {}
    five_hundreds: list[str] = []
    for place, build in PLACES.items():
        for value in EDGES:
            path, body = build(value)()
            status = target.call("POST", path, body)[0]
            statuses[status] = statuses.get(status, 0) + 1
            if status >= 500:
                five_hundreds.append(f"{place}={value}")
    for claim in ("iat", "exp", "nbf"):
        for number in NUMERIC_DATES:
            path = "/cds-services"
            token = target.token(path, **{claim: number})
            status = target.call("GET", path, auth=False,
                                 headers={"Authorization": f"Bearer {token}"})[0]
            statuses[status] = statuses.get(status, 0) + 1
            if status >= 500:
                five_hundreds.append(f"jwt {claim}={number!r}")
    for failure in five_hundreds:
        print(f"   5xx: {failure}", flush=True)
    total = sum(statuses.values())
    spread = ", ".join(f"{code}: {count}" for code, count in sorted(statuses.items()))
    print(f"   statuses over {total} calls: {spread}", flush=True)
    return [
        report("date-sweep", f"calls ({len(PLACES)} places x {len(EDGES)} values + JWT claims)",
               total, ""),
        at_most("date-sweep", "answers 5xx", len(five_hundreds), "", 0),
    ]


# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--only", help="comma-separated checks (default: all): " + ", ".join(CHECKS)
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--slow", type=int, default=200, help="slow connections held open")
    parser.add_argument("--seconds", type=float, default=15.0, help="normal calls beside them")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of 4 oversized calls")
    parser.add_argument(
        "--worker-class", help="serve with this gunicorn worker class instead (e.g. gthread)"
    )
    args = parser.parse_args(argv)
    names = args.only.split(",") if args.only else list(CHECKS)
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        parser.error(f"unknown checks: {', '.join(unknown)}")

    with tempfile.TemporaryDirectory(prefix="myocds-attack-") as tmp:
        large = FhirTestServer().start()
        large.add_fault("large", large_bytes=64 * MIB)  # every request: a 64 MiB page
        hanging = FhirTestServer().start()
        hanging.add_fault("hang")
        target = Target(
            args.workers,
            args.threads,
            Path(tmp),
            fhir={"large": large, "hanging": hanging},
            worker_class=args.worker_class,
        )
        figures: list[Figure] = []
        try:
            target.start()
            print(
                f"myocds serve on {target.base_url}: {args.workers} workers x {args.threads} "
                f"threads, authentication on; {os.cpu_count()} CPUs",
                flush=True,
            )
            for name in names:
                started = time.monotonic()
                print(f"-- {name} ...", flush=True)
                figures += CHECKS[name](target, args)
                print(f"   ({time.monotonic() - started:.1f} s)", flush=True)
        finally:
            target.stop()
            large.stop()
            hanging.stop()
    print()
    print(f"{'check':<14} {'figure':<52} {'value':>10} {'unit':<5} {'target':<9} verdict")
    for figure in figures:
        print(figure.line())
    return 0 if all(f.ok for f in figures) else 1


if __name__ == "__main__":
    sys.exit(main())
