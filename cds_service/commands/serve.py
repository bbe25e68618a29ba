"""``myocds serve``: the service under gunicorn, each worker serving through the buffering front
end of ``commands/front.py`` (Hypercorn reads every request in full, under a header and a body
deadline, before one of the worker's threads runs it; a slow client holds no thread)."""

from __future__ import annotations

import argparse
import atexit
import ctypes
import gc
import logging
import os
import shutil
import sys
import tempfile
import traceback
from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import Any

from cds_service.cli import command
from cds_service.errors import ConfigurationError
from cds_service.logs import gunicorn_logger_class
from cds_service.settings import Settings

log = logging.getLogger("myocds.serve")

# Young-generation threshold of the cyclic GC in serving processes (see serve()).
GC_YOUNG_THRESHOLD = 50_000


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="bind address (default MYOCDS_HOST, 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default MYOCDS_PORT, 8080)")
    parser.add_argument("--workers", type=int, help="worker processes (default MYOCDS_WORKERS)")
    parser.add_argument("--threads", type=int, help="threads per worker (default MYOCDS_THREADS)")


def prepare_metrics_directory(
    settings: Settings, environ: MutableMapping[str, str] | None = None
) -> str | None:
    """Prometheus multiprocess mode for several workers: each worker writes its values to files
    in ``PROMETHEUS_MULTIPROC_DIR`` and ``/metrics`` sums them, whichever worker is scraped.

    A directory given in the environment is emptied (values left by an earlier run would be
    counted again); otherwise a fresh one is made in memory (/dev/shm, writable under a read-only
    root filesystem) and removed at exit. One worker needs none: its own registry is the truth.
    Must run before the first metric is created (prometheus-client picks its value class then).
    """
    env = os.environ if environ is None else environ
    from cds_service.metrics import MULTIPROC_ENV

    directory = env.get(MULTIPROC_ENV, "").strip()
    if directory:
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()
    elif settings.workers > 1:
        shm = Path("/dev/shm")
        parent = str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None
        directory = tempfile.mkdtemp(prefix="myocds-metrics-", dir=parent)
        atexit.register(shutil.rmtree, directory, ignore_errors=True)
        env[MULTIPROC_ENV] = directory
    else:
        return None
    # prometheus-client chose its value class when first imported; choose again now.
    from prometheus_client import values

    values.ValueClass = values.get_value_class()
    return directory


# glibc's mallopt parameter for the number of malloc arenas (malloc.h M_ARENA_MAX).
_M_ARENA_MAX = -8
MALLOC_ARENAS = 2


def in_child(task: Callable[[str], bool], argument: str) -> bool:
    """``task(argument)`` in a forked child process: what it imports stays out of this process.
    False when it returns False or fails (its traceback on stderr)."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: never returns into the caller's code
        code = 1
        try:
            code = 0 if task(argument) else 1
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


def limit_malloc_arenas(environ: MutableMapping[str, str] | None = None) -> bool:
    """At most MALLOC_ARENAS glibc malloc arenas in this process and the workers forked from it.

    glibc gives a thread that meets another in malloc an arena of its own (up to 8 per core) and
    memory freed in one arena is not reused by another, so a worker's call threads and FHIR
    fetch threads each keep their high-water mark: under the benchmark's load two arenas kept a
    worker's peak RSS ~7 MB lower (121 -> 114 MB, BENCHMARKS.md). ``MALLOC_ARENA_MAX`` in the
    environment (read by glibc itself) wins. False where there is no glibc ``mallopt``."""
    env = os.environ if environ is None else environ
    if env.get("MALLOC_ARENA_MAX"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_ARENA_MAX, MALLOC_ARENAS))


def _child_exit(_server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(worker.pid)


def gunicorn_options(settings: Settings) -> dict[str, Any]:
    return {
        "bind": f"{settings.host}:{settings.port}",
        "workers": settings.workers,
        "threads": settings.threads,
        # gunicorn forks and watches the workers; each serves with Hypercorn (commands/front.py).
        "worker_class": "cds_service.commands.front.FrontWorker",
        # The worker's heartbeat comes from its event loop, which a slow call never blocks.
        "timeout": max(30, int(settings.hook_deadline_seconds * 4)),
        "graceful_timeout": 20,
        "keepalive": int(settings.header_deadline_seconds),
        # Heartbeat files in memory: works with a read-only root filesystem (docker/k8s).
        "worker_tmp_dir": "/dev/shm",
        "accesslog": None,  # one structured line per call comes from the app itself
        "logger_class": gunicorn_logger_class(),  # gunicorn's own lines as JSON too
        "loglevel": settings.log_level.lower(),
        # Load the app in the master: a broken card template or bad setting stops start-up
        # once, clearly, instead of crash-looping every worker.
        "preload_app": True,
        "child_exit": _child_exit,
        # No gunicornc control socket (gunicorn >= 25.1): it is a management interface we do not
        # use, and its default path in $HOME is read-only in the container.
        "control_socket_disable": True,
    }


@command("serve", "Run the CDS service under gunicorn.", _arguments)
def serve(args: argparse.Namespace) -> int:
    from gunicorn.app.base import BaseApplication

    from cds_service import create_app

    try:
        settings = Settings.from_env()
    except ConfigurationError as exc:
        print(f"myocds: configuration error: {exc}", file=sys.stderr)
        return 2
    overrides = {
        name: getattr(args, name)
        for name in ("host", "port", "workers", "threads")
        if getattr(args, name) is not None
    }
    bad = [
        f"--{name} must be at least 1"
        for name, value in overrides.items()
        if name != "host" and value < 1
    ]
    if bad:
        print(f"myocds: {'; '.join(bad)}", file=sys.stderr)
        return 2
    settings = settings.with_overrides(**overrides)
    if not settings.auth_required:
        print(
            "myocds: DEVELOPMENT MODE - authentication is OFF (MYOCDS_AUTH=off). "
            "Never expose this instance to a network.",
            file=sys.stderr,
        )
    metrics_directory = prepare_metrics_directory(settings)
    if metrics_directory:
        print(f"myocds: metrics of all workers collected in {metrics_directory}", file=sys.stderr)
    from cds_service.commands.migrate import migrate_at_start

    try:
        app = create_app(settings)
    except ConfigurationError as exc:
        print(f"myocds: cannot start: {exc}", file=sys.stderr)
        return 2
    # Once, before any worker exists, in a child of its own: the master (and so every worker
    # forked from it) never loads Alembic, ~10 MB of each worker's memory.
    if not in_child(migrate_at_start, settings.database_url):
        return 2
    # Everything loaded so far (Flask, the fhir.resources models, templates, ValueSets: ~120,000
    # objects) lives as long as the process. Frozen, the cyclic GC never walks it again: a full
    # collection drops from ~65 ms to the objects of the requests in flight, which keeps the
    # p99 latency near the p50 (BENCHMARKS.md), and forked workers share those pages unwritten.
    gc.collect()
    gc.freeze()
    # A call parses a ~125 KiB body into ~2,300 containers and builds its record from them,
    # all living until it answers, with several calls in flight per worker: at the default
    # threshold (700) the young generation is collected every few hundred allocations,
    # re-walking the trees of every call in flight and promoting them to be walked again by the
    # older generations (measured ~1.5 ms of GC per order-sign call under load). The request
    # data is acyclic and freed by reference counting; the collector is only for the rare
    # cycle, so it runs every 50,000 net allocations: 0.4-0.5 ms less CPU per call under load;
    # peak RSS per worker stays within its 120 MB budget (114-115 MB in BENCHMARKS.md's run).
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
    limit_malloc_arenas()  # before the fork: every worker inherits it

    class _Server(BaseApplication):
        def load_config(self) -> None:
            for key, value in gunicorn_options(settings).items():
                if key in self.cfg.settings:  # older gunicorn lacks the newest settings
                    self.cfg.set(key, value)

        def load(self) -> Any:
            return app

    print(f"myocds: listening on http://{settings.host}:{settings.port}", file=sys.stderr)
    _Server().run()
    return 0
