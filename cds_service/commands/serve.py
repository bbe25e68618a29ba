"""``myocds serve``: the service under gunicorn (threaded workers, so a hook call waiting on the
EHR's FHIR server does not block the other calls of its worker)."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from cds_service.cli import command
from cds_service.errors import ConfigurationError
from cds_service.settings import Settings

log = logging.getLogger("myocds.serve")


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="bind address (default MYOCDS_HOST, 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default MYOCDS_PORT, 8080)")
    parser.add_argument("--workers", type=int, help="worker processes (default MYOCDS_WORKERS)")
    parser.add_argument("--threads", type=int, help="threads per worker (default MYOCDS_THREADS)")


def gunicorn_options(settings: Settings) -> dict[str, Any]:
    return {
        "bind": f"{settings.host}:{settings.port}",
        "workers": settings.workers,
        "threads": settings.threads,
        "worker_class": "gthread",
        # A hook call is bounded by the FHIR deadline; give the worker room beyond it.
        "timeout": max(30, int(settings.hook_deadline_seconds * 4)),
        "graceful_timeout": 20,
        "keepalive": 5,
        # Heartbeat files in memory: works with a read-only root filesystem (docker/k8s).
        "worker_tmp_dir": "/dev/shm",
        "accesslog": None,  # one structured line per call comes from the app itself
        "loglevel": settings.log_level.lower(),
        # Load the app in the master: a broken card template or bad setting stops start-up
        # once, clearly, instead of crash-looping every worker.
        "preload_app": True,
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
    settings = settings.with_overrides(**overrides)
    if not settings.auth_required:
        print(
            "myocds: DEVELOPMENT MODE - authentication is OFF (MYOCDS_AUTH=off). "
            "Never expose this instance to a network.",
            file=sys.stderr,
        )
    try:
        app = create_app(settings)
    except ConfigurationError as exc:
        print(f"myocds: cannot start: {exc}", file=sys.stderr)
        return 2

    class _Server(BaseApplication):
        def load_config(self) -> None:
            for key, value in gunicorn_options(settings).items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            return app

    print(f"myocds: listening on http://{settings.host}:{settings.port}", file=sys.stderr)
    _Server().run()
    return 0
