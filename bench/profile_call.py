"""One hook call in-process, timed and profiled, on the benchmark's realistic record (by hand).

    .venv/bin/python bench/profile_call.py [--calls 40] [--hook order-sign|patient-view] [--top 25]
                                      [--store sqlite|postgresql]

The Flask test client posts ``--calls`` distinct bodies (other resource ids each, as the
benchmark's cold variants) to the service, after as many warm-up calls; it prints the median
wall time per call of the whole request (body reading, limits, schema, pipeline, card storage,
answer), the same for the no-op floor endpoint and for a bare ``json.loads`` of the body, then
cProfile's top functions by cumulative and by own time over the timed calls. Authentication
off, clinical date pinned, the feedback store in a fresh SQLite file (or, ``--store
postgresql``, a fresh schema at 127.0.0.1:5432/test, as the benchmark serves).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.record import TODAY, hook_body  # noqa: E402
from bench.run import open_store  # noqa: E402

PATHS = {
    "order-sign": "/cds-services/ivig-order-check",
    "patient-view": "/cds-services/myopathy-review",
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=40)
    parser.add_argument("--hook", choices=sorted(PATHS), default="order-sign")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument(
        "--stages", action="store_true",
        help="also time each stage of a call (each wrapped with a timer; medians, no profiler)",
    )
    args = parser.parse_args()

    from cds_service import create_app
    from cds_service.settings import Settings

    tmp = Path(tempfile.mkdtemp(prefix="myocds-profile-"))
    database_url, drop_store = open_store(args.store, tmp)
    try:
        settings = Settings().with_overrides(
            auth="off",
            today=TODAY,
            bench_noop=True,
            database_url=database_url,
            log_level="WARNING",
        )
        from cds_service.commands.migrate import migrate_at_start

        app = create_app(settings)
        migrate_at_start(settings.database_url)
        client = app.test_client()
        bodies = [
            json.dumps(hook_body(args.hook, variant=v)).encode() for v in range(2 * args.calls)
        ]
        warm, timed = bodies[: args.calls], bodies[args.calls :]
        print(
            f"body {len(timed[0]) / 1024:.0f} KiB; {args.calls} timed calls per row, "
            f"each a new body"
        )

        def post(path: str, body: bytes) -> float:
            t0 = time.perf_counter()
            answer = client.post(path, data=body, content_type="application/json")
            elapsed = (time.perf_counter() - t0) * 1000
            if answer.status_code != 200:
                raise SystemExit(f"{path}: {answer.status_code} {answer.get_data(as_text=True)}")
            return elapsed

        for body in warm:
            post(PATHS[args.hook], body)
            post("/_bench/noop", body)
        parse = []
        for body in timed:
            t0 = time.perf_counter()
            json.loads(body)
            parse.append((time.perf_counter() - t0) * 1000)
        floor = [post("/_bench/noop", body) for body in timed]
        hook = [post(PATHS[args.hook], body) for body in timed]
        print(
            f"json.loads alone {statistics.median(parse):.2f} ms; no-op floor endpoint "
            f"{statistics.median(floor):.2f} ms; {args.hook} {statistics.median(hook):.2f} ms "
            f"(medians)"
        )

        if args.stages:
            print_stages([
                (lambda b=body: post(PATHS[args.hook], b)) for body in timed
            ])

        profiler = cProfile.Profile()
        profiler.enable()
        for body in bodies[: args.calls]:  # seen once: the service keeps no cache of them
            post(PATHS[args.hook], body)
        profiler.disable()
        for order in ("cumulative", "tottime"):
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats(order).print_stats(args.top)
            print(f"--- by {order} ({args.calls} calls under cProfile) ---")
            print(out.getvalue().split("\n\n", 1)[-1].strip())
    finally:
        drop_store()
    return 0


# The stages of one call, in order: (module, name) wrapped with a timer where it is looked up at
# call time (a nested stage is also inside its parent's time).
STAGES = (
    ("cds_service.protocol.routes", "read_json_body"),
    ("cds_service.protocol.routes", "validate"),
    ("cds_service.protocol.routes", "check_resource_count"),
    ("cds_service.pipeline", "gather"),
    ("cds_service.fhir.gather", "count_flawed"),
    ("cds_service.fhir.gather", "read_drafts"),
    ("cds_service.pipeline", "build_record"),
    ("cds_service.record.build", "_read_labs"),
    ("cds_service.advice", "evaluate"),
    ("cds_service.cards_render", "render"),
    ("cds_service.protocol.routes", "_record_cards"),
)


def print_stages(calls: list[Callable[[], object]]) -> None:
    """Median milliseconds per call of each stage (a stage run twice in a call is summed)."""
    import importlib

    current: dict[str, float] = {}
    undo = []
    for module_name, name in STAGES:
        owner = importlib.import_module(module_name)
        original = getattr(owner, name)

        def timed(*a: Any, _f: Any = original, _n: str = name, **k: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return _f(*a, **k)
            finally:
                current[_n] = current.get(_n, 0.0) + (time.perf_counter() - t0) * 1000

        setattr(owner, name, timed)
        undo.append((owner, name, original))
    per_stage: dict[str, list[float]] = {name: [] for _, name in STAGES}
    whole: list[float] = []
    try:
        for call in calls:
            current.clear()
            t0 = time.perf_counter()
            call()
            whole.append((time.perf_counter() - t0) * 1000)
            for name, spent in per_stage.items():
                spent.append(current.get(name, 0.0))
    finally:
        for owner, name, original in undo:
            setattr(owner, name, original)
    print(f"--- stages ({len(calls)} calls; median ms per call) ---")
    for (module_name, name), spent in zip(STAGES, per_stage.values(), strict=True):
        print(f"{module_name}.{name:<24} {statistics.median(spent):7.2f}")
    print(f"{'whole request (with the timers)':<52} {statistics.median(whole):7.2f}")


if __name__ == "__main__":
    sys.exit(main())
