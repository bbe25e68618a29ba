"""Benchmark myocds under gunicorn, by hand (not in CI).

    .venv/bin/python bench/run.py [--seconds 10] [--connections 16] [--write BENCHMARKS.md]

Starts ``myocds serve`` on a free port (auth off, clinical date pinned, the no-op floor endpoint
on), then in one run:
1. saturation throughput and p50/p99 latency with ``wrk`` for the no-op endpoint (same body:
   the floor), the IVIG order-sign and the patient-view, all bodies carrying the full prefetch of
   a realistic record (bench/record.py);
2. p50/p99 at half of each saturation rate with an open-loop constant-rate client (latency
   counted from the scheduled send time, so queueing is not hidden);
3. fallback fetch: the same patient-view with no prefetch against a local FHIR server that adds
   50 ms to every request, as a ratio to one FHIR round trip;
4. peak RSS (VmHWM) of each gunicorn worker.
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
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.record import TODAY, hook_body, record_resources  # noqa: E402

LUA = """
local f = io.open(os.getenv("BENCH_BODY"), "rb")
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
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


def run_wrk(port: int, path: str, body_file: Path, seconds: int, connections: int) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as lua:
        lua.write(LUA)
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", lua.name,
         f"http://127.0.0.1:{port}{path}"],
        capture_output=True, text=True, env={**os.environ, "BENCH_BODY": str(body_file)},
        check=True,
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


def constant_rate(port: int, path: str, body: bytes, rate: float, seconds: float) -> dict:
    """Open-loop load at ``rate`` req/s; latency measured from the scheduled send time."""
    interval = 1.0 / rate
    total = int(rate * seconds)
    start = time.monotonic() + 0.2
    latencies: list[float] = []
    lock = threading.Lock()
    next_index = iter(range(total))

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for i in next_index:
            scheduled = start + i * interval
            delay = scheduled - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            conn.request("POST", path, body, {"Content-Type": "application/json"})
            conn.getresponse().read()
            with lock:
                latencies.append((time.monotonic() - scheduled) * 1000)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    latencies.sort()
    return {"rate": rate, "p50": statistics.median(latencies),
            "p99": latencies[int(len(latencies) * 0.99) - 1], "n": len(latencies)}


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


def fallback_fetch(port: int, runs: int = 30) -> dict | None:
    """Patient-view with no prefetch, served by the local FHIR server with 50 ms latency."""
    try:
        from tests.support.fhir_server import FhirTestServer
    except ImportError:
        return None
    bundle = {"resourceType": "Bundle", "type": "collection",
              "entry": [{"resource": r} for r in record_resources()]}
    server = FhirTestServer(bundle)
    server.start()
    try:
        server.latency_seconds = 0.05
        base = server.base_url
        host, fport = base.split("//")[1].split("/")[0].split(":")
        trips = []
        for _ in range(runs):
            conn = http.client.HTTPConnection(host, int(fport), timeout=10)
            t0 = time.perf_counter()
            conn.request("GET", f"{base}/Patient/bench-1")
            conn.getresponse().read()
            trips.append((time.perf_counter() - t0) * 1000)
        body = hook_body("patient-view", with_prefetch=False)
        body["fhirServer"] = base
        payload = json.dumps(body).encode()
        calls = []
        for _ in range(runs):
            t0 = time.perf_counter()
            status, _ = post(port, "/cds-services/myopathy-review", payload)
            calls.append((time.perf_counter() - t0) * 1000)
            if status != 200:
                raise SystemExit(f"fallback call answered {status}")
    finally:
        server.stop()
    trip, call = statistics.median(trips), statistics.median(calls)
    return {"round_trip_ms": trip, "hook_ms": call, "ratio": call / trip}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--write", type=Path, help="append the results to this markdown file")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk not found: apt-get install wrk")

    port = free_port()
    tmp = Path(tempfile.mkdtemp(prefix="myocds-bench-"))
    env = {
        **os.environ, "MYOCDS_AUTH": "off", "MYOCDS_TODAY": TODAY.isoformat(),
        "MYOCDS_PORT": str(port), "MYOCDS_WORKERS": str(args.workers),
        "MYOCDS_THREADS": str(args.threads), "MYOCDS_BENCH_NOOP": "on",
        "MYOCDS_DATABASE_URL": f"sqlite:///{tmp / 'bench.sqlite3'}",
        "MYOCDS_FHIR_ALLOW": "http://127.0.0.1", "MYOCDS_LOG_LEVEL": "WARNING",
    }
    server = subprocess.Popen([str(ROOT / ".venv/bin/myocds"), "serve"], env=env, cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_healthy(port)
        targets = {
            "no-op floor (same body as IVIG order-sign)": ("/_bench/noop", hook_body("order-sign")),
            "IVIG order-sign": ("/cds-services/ivig-order-check", hook_body("order-sign")),
            "patient-view": ("/cds-services/myopathy-review", hook_body("patient-view")),
        }
        results = {}
        for name, (path, body) in targets.items():
            payload = json.dumps(body).encode()
            status, answer = post(port, path, payload)
            if status != 200:
                raise SystemExit(f"{name}: {status} {answer}")
            body_file = tmp / (re.sub(r"\W+", "-", name) + ".json")
            body_file.write_bytes(payload)
            sat = run_wrk(port, path, body_file, args.seconds, args.connections)
            half = constant_rate(port, path, payload, sat["rps"] / 2, args.seconds)
            results[name] = {"bytes": len(payload), "cards": len(answer.get("cards", [])),
                             "saturation": sat, "half": half}
        fallback = fallback_fetch(port)
        peaks = worker_peak_rss_mb(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=20)

    floor = results["no-op floor (same body as IVIG order-sign)"]["saturation"]["rps"]
    lines = [
        f"Run {time.strftime('%Y-%m-%d %H:%M')} · {os.cpu_count()} CPUs shared by client and "
        f"server · gunicorn {args.workers} workers × {args.threads} threads · wrk "
        f"{args.connections} connections, {args.seconds} s per target",
        "",
        "| target | body | cards | req/s (saturation) | × floor | p50 ms | p99 ms "
        "| half-rate req/s | p50 ms | p99 ms | p99/p50 |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        s, h = r["saturation"], r["half"]
        lines.append(
            f"| {name} | {r['bytes'] / 1024:.0f} KiB | {r['cards']} | {s['rps']:.0f} | "
            f"{s['rps'] / floor:.2f} | {s['p50']:.1f} | {s['p99']:.1f} | {h['rate']:.0f} | "
            f"{h['p50']:.1f} | {h['p99']:.1f} | {h['p99'] / h['p50']:.2f} |"
        )
    lines.append("")
    if fallback:
        lines.append(
            f"Fallback fetch (no prefetch, 50 ms per FHIR request): one FHIR round trip "
            f"{fallback['round_trip_ms']:.1f} ms (median), patient-view "
            f"{fallback['hook_ms']:.1f} ms (median) = {fallback['ratio']:.2f} × one round trip."
        )
    else:
        lines.append("Fallback fetch: skipped (tests/support/fhir_server.py not importable).")
    lines.append(
        "Peak RSS per worker (VmHWM): " + ", ".join(f"{p:.0f} MB" for p in sorted(peaks))
    )
    report = "\n".join(lines)
    print(report)
    if args.write:
        with args.write.open("a") as out:
            out.write("\n" + report + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
