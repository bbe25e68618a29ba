"""Benchmark myocds as ``myocds serve`` serves it, by hand (not in CI).

    .venv/bin/python bench/run.py [--seconds 10] [--connections 16] [--write FILE]

Starts ``myocds serve`` on a free port (gunicorn, each worker serving through the Hypercorn
front end of ``commands/front.py``; auth off, clinical date pinned, the no-op floor endpoint on,
a local FHIR server with 50 ms latency allowed as fhirServer) and, on another port, the
pure-parse floor (``bench/parse_floor.py``: a Flask app that only parses the body, served with
the same gunicorn options and front end), then in one run:
1. saturation throughput, p50/p99 latency (``wrk``) and the workers' CPU per call (utime + stime
   of the gunicorn workers from /proc, over the requests answered) for the pure-parse floor and
   the service's no-op endpoint (the same bodies as the order-sign: the two floors), the IVIG
   order-sign and the patient-view, every body carrying the full prefetch of a realistic record
   (bench/record.py). The bodies are 600 variants of the record under other resource ids (each
   wrk thread cycles its own 300; the patient-view other ids than the order-sign), so no body is
   answered from anything a previous call left behind. The pure-parse floor runs first and again
   last; ratios are to the mean of the two (other sessions' load drifts during a run);
2. p50/p99 at half of each saturation rate with an open-loop constant-rate client (latency
   counted from the scheduled send time, so queueing is not hidden);
3. fallback fetch: the patient-view with no prefetch against the local FHIR server that adds
   50 ms to every request: the service's own fetch time for all keys (``/metrics``
   ``myocds_fallback_fetch_seconds``) and the whole call, as ratios to one FHIR round trip;
4. peak RSS (VmHWM) of each gunicorn worker of the service.
Client and server share the machine: quote ratios from one run, not absolute numbers.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.record import TODAY, hook_body, record_resources  # noqa: E402

# Bodies per wrk thread: 600 distinct bodies per target (the service keeps no cache of prefetch
# since issue 14; distinct bodies keep it honest should one come back).
VARIANTS = 300
WRK_THREADS = 2
FHIR_LATENCY_SECONDS = 0.05
DRAIN_SECONDS = 2.0

LUA = """
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("thread_number", counter)
end

function init(args)
  local dir = os.getenv("BENCH_BODIES") .. "/" .. thread_number
  count = tonumber(os.getenv("BENCH_COUNT"))
  bodies = {}
  for i = 1, count do
    local f = io.open(dir .. "/" .. i .. ".json", "rb")
    bodies[i] = f:read("*a")
    f:close()
  end
  next_body = 0
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  next_body = next_body % count + 1
  return wrk.format(nil, nil, nil, bodies[next_body])
end
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("service did not become healthy")


def post(port: int, path: str, body: bytes) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("POST", path, body, {"Content-Type": "application/json"})
    response = conn.getresponse()
    return response.status, json.loads(response.read() or b"{}")


def run_wrk(port: int, path: str, bodies: Path, count: int, seconds: int,
            connections: int) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as lua:
        lua.write(LUA)
    env = {**os.environ, "BENCH_BODIES": str(bodies), "BENCH_COUNT": str(count)}
    out = subprocess.run(
        ["wrk", f"-t{WRK_THREADS}", f"-c{connections}", f"-d{seconds}s", "--latency",
         "-s", lua.name, f"http://127.0.0.1:{port}{path}"],
        capture_output=True, text=True, env=env, check=True,
    ).stdout
    os.unlink(lua.name)

    def latency(label: str) -> float:
        match = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)", out, re.M)
        if not match:
            raise SystemExit(f"cannot read the {label}% latency from wrk:\n{out}")
        scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[match.group(2)]
        return float(match.group(1)) * scale

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "p50": latency("50"), "p99": latency("99"),
            "non2xx": int(errors.group(1)) if errors else 0}


WARM_UP_SECONDS = 1.0


def constant_rate(port: int, path: str, bodies: list[bytes], rate: float, seconds: float) -> dict:
    """Open-loop load at ``rate`` req/s; latency measured from the scheduled send time.

    The first WARM_UP_SECONDS are sent but not counted: they open the client's connections.
    """
    interval = 1.0 / rate
    warm_up = int(rate * WARM_UP_SECONDS)
    total = max(1, int(rate * seconds)) + warm_up
    start = time.monotonic() + 0.2
    latencies: list[float] = []
    failures: list[int] = []
    lock = threading.Lock()
    next_index = iter(range(total))

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for i in next_index:
            scheduled = start + i * interval
            delay = scheduled - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            conn.request("POST", path, bodies[i % len(bodies)],
                         {"Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
            with lock:
                if i >= warm_up:
                    latencies.append((time.monotonic() - scheduled) * 1000)
                if response.status != 200:
                    failures.append(response.status)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    latencies.sort()
    return {"rate": rate, "p50": statistics.median(latencies),
            "p99": latencies[max(0, int(len(latencies) * 0.99) - 1)], "n": len(latencies),
            "failures": len(failures)}


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def workers_cpu_seconds(master_pid: int) -> float:
    """User + system CPU seconds used so far by the gunicorn workers of ``master_pid``."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == master_pid:  # fields[1] is the parent pid; 11, 12 utime, stime
            total += int(fields[11]) + int(fields[12])
    return total / _CLOCK_TICKS


def worker_peak_rss_mb(master_pid: int) -> list[float]:
    peaks = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue
        ppid = re.search(r"^PPid:\s+(\d+)", text, re.M)
        hwm = re.search(r"^VmHWM:\s+(\d+) kB", text, re.M)
        if ppid and hwm and int(ppid.group(1)) == master_pid:
            peaks.append(int(hwm.group(1)) / 1024)
    return peaks


def get_text(port: int, path: str) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", path)
    return conn.getresponse().read().decode()


def metric_sum(exposition: str, name: str) -> float:
    """The sum over all label sets of one sample name in a Prometheus text exposition."""
    total = 0.0
    for line in exposition.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _median_get(port: int, path: str, runs: int) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    times = []
    for _ in range(runs):  # one keep-alive connection, as the service's pool has
        t0 = time.perf_counter()
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        times.append((time.perf_counter() - t0) * 1000)
        if response.status != 200:
            raise SystemExit(f"the FHIR server answered {response.status} to {path}")
    conn.close()
    return statistics.median(times)


def fallback_fetch(port: int, fhir: object, runs: int = 30) -> dict:
    """Patient-view with no prefetch, served by the local FHIR server with 50 ms latency.

    One FHIR round trip is measured two ways, each request alone: the Patient read (the
    smallest answer) and the slowest of the service's own prefetch searches (the largest).
    """
    from cds_service.fhir.prefetch import render_template
    from cds_service.services import find_service

    base = fhir.base_url  # type: ignore[attr-defined]
    fport = int(base.split("//")[1].split("/")[0].split(":")[1])
    service = find_service("myopathy-review", "patient-view")
    assert service is not None
    context = {"patientId": "bench-1", "userId": "Practitioner/bench"}
    singles = {}
    for key, template in service.prefetch.items():
        rendered = render_template(template, context)
        assert rendered is not None
        singles[key] = _median_get(port=fport, path=f"/fhir/{rendered}", runs=max(5, runs // 3))
    patient_trip = singles["patient"]
    slowest_key = max(singles, key=lambda k: singles[k])
    body = hook_body("patient-view", with_prefetch=False)
    body["fhirServer"] = base
    payload = json.dumps(body).encode()
    before = get_text(port, "/metrics")
    requests_before = fhir.request_count  # type: ignore[attr-defined]
    calls = []
    for _ in range(runs):
        t0 = time.perf_counter()
        status, answer = post(port, "/cds-services/myopathy-review", payload)
        calls.append((time.perf_counter() - t0) * 1000)
        if status != 200:
            raise SystemExit(f"fallback call answered {status}: {answer}")
    after = get_text(port, "/metrics")
    name = "myocds_fallback_fetch_seconds"
    fetches = metric_sum(after, name + "_count") - metric_sum(before, name + "_count")
    fetch_ms = (metric_sum(after, name + "_sum") - metric_sum(before, name + "_sum")) * 1000
    if fetches != runs:
        raise SystemExit(f"expected {runs} calls with fallback fetches, /metrics says {fetches}")
    call = statistics.median(calls)
    mean_fetch = fetch_ms / fetches
    sent = fhir.request_count - requests_before  # type: ignore[attr-defined]
    return {"round_trip_ms": patient_trip, "slowest_key": slowest_key,
            "slowest_ms": singles[slowest_key], "fetch_ms": mean_fetch,
            "fetch_ratio": mean_fetch / patient_trip,
            "fetch_ratio_slowest": mean_fetch / singles[slowest_key],
            "hook_ms": call, "hook_ratio": call / patient_trip, "requests_per_call": sent / runs}


def write_bodies(directory: Path, bodies: list[bytes]) -> tuple[Path, int]:
    """One subdirectory of bodies per wrk thread (1/, 2/, ...), disjoint when there are enough;
    returns the directory and the number of bodies per thread."""
    per_thread = max(1, len(bodies) // WRK_THREADS)
    for thread in range(WRK_THREADS):
        part = bodies[thread * per_thread:(thread + 1) * per_thread] or bodies[:per_thread]
        folder = directory / str(thread + 1)
        folder.mkdir(parents=True, exist_ok=True)
        for i, body in enumerate(part, start=1):
            (folder / f"{i}.json").write_bytes(body)
    return directory, per_thread


POSTGRES_SERVER = "postgresql+psycopg://@127.0.0.1:5432/test"


def open_store(kind: str, tmp: Path) -> tuple[str, Callable[[], None]]:
    """The store URL for the service and how to remove it afterwards."""
    if kind == "sqlite":
        return f"sqlite:///{tmp / 'bench.sqlite3'}", lambda: None
    from sqlalchemy import create_engine, text

    schema = f"myocds_bench_{os.getpid()}"
    admin = create_engine(POSTGRES_SERVER)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))

    def drop() -> None:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()

    return f"{POSTGRES_SERVER}?options=-csearch_path%3D{schema}", drop


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


PARSE_FLOOR = "pure-parse floor (Flask app, json.loads only; order-sign bodies)"
PARSE_FLOOR_AGAIN = "pure-parse floor again, last (the machine's drift during the run)"
FLOOR = "service no-op endpoint (request checks only; order-sign bodies)"
ORDER_SIGN = "IVIG order-sign"
PATIENT_VIEW = "patient-view"
HOOKS = (ORDER_SIGN, PATIENT_VIEW)
# Issue 14's targets.
THROUGHPUT_TARGET = 0.25  # × the pure-parse floor
TAIL_TARGET = 3.0  # p99 / p50 at half saturation
RSS_TARGET_MB = 120.0  # peak per worker
FALLBACK_TARGET = 1.5  # issue 6: fetch of all keys / one FHIR round trip


def other_load() -> str:
    """The busiest other processes (name and CPU share since they started), to say what else
    shared the machine; never their arguments."""
    try:
        out = subprocess.run(
            ["ps", "-eo", "pcpu=,comm=", "--sort=-pcpu"], capture_output=True, text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    busy = [line.split(None, 1) for line in out.splitlines() if line.strip()]
    return ", ".join(f"{name.strip()} {cpu}%" for cpu, name in busy[:6])


def start_server(command: list[str], env: dict[str, str], cwd: Path, port: int
                 ) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(command, env={**env, "MYOCDS_PORT": str(port)}, cwd=cwd,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_healthy(port)
    except BaseException:
        process.terminate()
        raise
    return process


def measure(name: str, port: int, path: str, bodies: list[bytes], directory: Path,
            args: argparse.Namespace, master_pid: int) -> dict:
    status, answer = post(port, path, bodies[0])
    if status != 200:
        raise SystemExit(f"{name}: {status} {answer}")
    directory, per_thread = write_bodies(directory, bodies)
    cpu_before = workers_cpu_seconds(master_pid)
    sat = run_wrk(port, path, directory, per_thread, args.seconds, args.connections)
    # The workers' CPU per answered call at saturation (what a faster service spends less of;
    # it rises too when other sessions load the machine).
    sat["cpu_ms"] = (workers_cpu_seconds(master_pid) - cpu_before) * 1000 / max(
        1.0, sat["rps"] * args.seconds)
    if sat["non2xx"]:
        raise SystemExit(f"{name}: {sat['non2xx']} answers were not 2xx under load")
    time.sleep(DRAIN_SECONDS)  # the calls wrk left queued finish before the next stage
    half = constant_rate(port, path, bodies, sat["rps"] / 2, args.seconds)
    if half["failures"]:
        raise SystemExit(f"{name}: {half['failures']} answers were not 200 at half rate")
    return {"bytes": len(bodies[0]), "cards": len(answer.get("cards", [])),
            "variants": len(bodies), "saturation": sat, "half": half}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument(
        "--compute-slots", type=int, default=1,
        help="MYOCDS_COMPUTE_SLOTS of both servers: calls of one worker computing at once "
             "(default 1, as deployed; 8 with --threads 8 is how the service ran before)",
    )
    parser.add_argument("--write", type=Path, help="append the results to this markdown file")
    parser.add_argument(
        "--store", choices=("postgresql", "sqlite"), default="postgresql",
        help="the feedback store: a fresh schema in PostgreSQL at 127.0.0.1:5432/test (as "
             "deployed, default) or a SQLite file",
    )
    parser.add_argument(
        "--checkout", type=Path, default=ROOT,
        help="serve the cds_service of another checkout (a before/after comparison); "
             "default: this one",
    )
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk not found: apt-get install wrk")
    # The test server turns Nagle's algorithm off itself (a small answer would otherwise wait
    # ~40 ms for a delayed ACK, inflating "one round trip" and flattering the ratio).
    from tests.support.fhir_server import FhirTestServer

    started = {"load": load_average(), "processes": other_load()}
    port, floor_port = free_port(), free_port()
    tmp = Path(tempfile.mkdtemp(prefix="myocds-bench-"))
    database_url, drop_store = open_store(args.store, tmp)
    record = {"resourceType": "Bundle", "type": "collection",
              "entry": [{"resource": r} for r in record_resources()]}
    fhir = FhirTestServer(record=record, latency=FHIR_LATENCY_SECONDS).start()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MYOCDS_")},
        "MYOCDS_AUTH": "off", "MYOCDS_TODAY": TODAY.isoformat(),
        "MYOCDS_WORKERS": str(args.workers),
        "MYOCDS_THREADS": str(args.threads), "MYOCDS_BENCH_NOOP": "on",
        "MYOCDS_COMPUTE_SLOTS": str(args.compute_slots),
        "MYOCDS_DATABASE_URL": database_url,
        "MYOCDS_FHIR_ALLOW": fhir.base_url, "MYOCDS_LOG_LEVEL": "WARNING",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    checkout = args.checkout.resolve()
    env["PYTHONPATH"] = str(checkout)  # that checkout's cds_service, not the installed one
    servers: list[subprocess.Popen[bytes]] = []
    try:
        # Started by path: bench/ of this checkout, the front end of the one served.
        servers.append(start_server([sys.executable, str(ROOT / "bench" / "parse_floor.py")],
                                    env, checkout, floor_port))
        servers.append(start_server([sys.executable, "-m", "cds_service.cli", "serve"], env,
                                    checkout, port))
        count = VARIANTS * WRK_THREADS
        order_sign = [json.dumps(hook_body("order-sign", variant=v)).encode()
                      for v in range(count)]
        patient_view = [json.dumps(hook_body("patient-view", variant=count + v)).encode()
                        for v in range(count)]
        masters = {floor_port: servers[0].pid, port: servers[1].pid}
        targets = {
            PARSE_FLOOR: (floor_port, "/parse", order_sign),
            FLOOR: (port, "/_bench/noop", order_sign),
            ORDER_SIGN: (port, "/cds-services/ivig-order-check", order_sign),
            PATIENT_VIEW: (port, "/cds-services/myopathy-review", patient_view),
            PARSE_FLOOR_AGAIN: (floor_port, "/parse", order_sign),
        }
        results = {
            name: measure(name, target_port, path, bodies, tmp / f"target-{index}", args,
                          masters[target_port])
            for index, (name, (target_port, path, bodies)) in enumerate(targets.items())
        }
        fallback = fallback_fetch(port, fhir)
        peaks = worker_peak_rss_mb(servers[1].pid)
    finally:
        for server in servers:
            server.terminate()
            server.wait(timeout=30)
        fhir.stop()
        drop_store()
        shutil.rmtree(tmp, ignore_errors=True)

    ended = {"load": load_average(), "processes": other_load()}
    report = render(args, results, fallback, peaks, started, ended)
    print(report)
    if args.write:
        with args.write.open("a") as out:
            out.write("\n" + report + "\n")
    return 0


def render(args: argparse.Namespace, results: dict, fallback: dict, peaks: list[float],
           started: dict, ended: dict) -> str:
    # The floor measured first and last: other sessions' load drifts during a run, so the ratio
    # is to the mean of the two (both shown).
    parse_floor = statistics.mean(
        results[name]["saturation"]["rps"] for name in (PARSE_FLOOR, PARSE_FLOOR_AGAIN)
    )
    floor = results[FLOOR]["saturation"]["rps"]
    lines = [
        f"Checkout {args.checkout.resolve()} · store {args.store} · "
        f"run {time.strftime('%Y-%m-%d %H:%M %Z')} · {os.cpu_count()} CPUs shared by client, "
        f"servers and other sessions · gunicorn {args.workers} workers × {args.threads} "
        f"threads, {args.compute_slots} computing at once, Hypercorn front end · "
        f"wrk {args.connections} connections, {args.seconds} s per target · "
        f"open-loop client {args.seconds} s at half the saturation rate",
        "",
        f"Load average at start {started['load']} (busiest processes: {started['processes']}); "
        f"at the end {ended['load']} ({ended['processes']}).",
        "",
        "| target | body | variants | cards | req/s (saturation) | × pure-parse floor (mean "
        "of first and last) "
        "| × no-op endpoint | worker CPU ms per call | p50 ms | p99 ms | half-rate req/s | "
        "p50 ms | p99 ms | p99/p50 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        s, h = r["saturation"], r["half"]
        lines.append(
            f"| {name} | {r['bytes'] / 1024:.0f} KiB | {r['variants']} | {r['cards']} | "
            f"{s['rps']:.1f} | {s['rps'] / parse_floor:.3f} | {s['rps'] / floor:.3f} | "
            f"{s['cpu_ms']:.2f} | "
            f"{s['p50']:.1f} | {s['p99']:.1f} | "
            f"{h['rate']:.1f} | {h['p50']:.1f} | {h['p99']:.1f} | {h['p99'] / h['p50']:.2f} |"
        )
    lines += [
        "",
        f"Fallback fetch (patient-view, no prefetch, {FHIR_LATENCY_SECONDS * 1000:.0f} ms added "
        f"to every FHIR request, {fallback['requests_per_call']:.0f} FHIR requests per call): "
        f"one FHIR round trip (Patient read alone) {fallback['round_trip_ms']:.1f} ms, the "
        f"slowest search alone ({fallback['slowest_key']}) {fallback['slowest_ms']:.1f} ms "
        f"(medians); the service's fetch of all keys {fallback['fetch_ms']:.1f} ms (mean, "
        f"/metrics) = {fallback['fetch_ratio']:.2f} × the Patient read "
        f"({fallback['fetch_ratio_slowest']:.2f} × the slowest search); the whole call "
        f"{fallback['hook_ms']:.1f} ms (median) = {fallback['hook_ratio']:.2f} × the Patient "
        f"read.",
        "",
        "Peak RSS per worker (VmHWM): " + ", ".join(f"{p:.0f} MB" for p in sorted(peaks)),
        "",
        "Targets (issue 14; the fallback fetch: issue 6):",
    ]
    for name in HOOKS:
        ratio = results[name]["saturation"]["rps"] / parse_floor
        lines.append(f"- {name} throughput {ratio:.3f} × the pure-parse floor (mean of its two "
                     f"runs, {parse_floor:.1f} req/s; target ≥ "
                     f"{THROUGHPUT_TARGET}): {'met' if ratio >= THROUGHPUT_TARGET else 'NOT met'}")
    for name in (PARSE_FLOOR, FLOOR, *HOOKS, PARSE_FLOOR_AGAIN):
        h = results[name]["half"]
        ratio = h["p99"] / h["p50"]
        lines.append(f"- {name} p99/p50 at half saturation {ratio:.2f} (target ≤ "
                     f"{TAIL_TARGET:g}): {'met' if ratio <= TAIL_TARGET else 'NOT met'}")
    lines.append(f"- fallback fetch of all keys {fallback['fetch_ratio']:.2f} × one round trip "
                 f"(the Patient read) (target ≤ {FALLBACK_TARGET}): "
                 f"{'met' if fallback['fetch_ratio'] <= FALLBACK_TARGET else 'NOT met'}")
    worst = max(peaks) if peaks else float("nan")
    lines.append(f"- peak RSS per worker {worst:.0f} MB (target ≤ {RSS_TARGET_MB:.0f} MB): "
                 f"{'met' if worst <= RSS_TARGET_MB else 'NOT met'}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
