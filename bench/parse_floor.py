"""The pure-parse floor (issue 14): a Flask app that only parses the body, served as the service is.

    MYOCDS_PORT=8099 MYOCDS_WORKERS=2 MYOCDS_THREADS=8 .venv/bin/python -m bench.parse_floor

``POST /parse`` reads the body, parses it with ``json.loads`` and answers ``{"cards": []}``:
no authentication, limits, request schema, logging or metrics, nothing of the service's own.
It is served exactly as ``myocds serve`` serves the service: gunicorn with the same options
(``commands.serve.gunicorn_options``), each worker running Hypercorn in front of
``BufferedWsgi`` (``commands.front.FrontWorker``), the app loaded in the master and its objects
frozen before the fork. So "hook throughput / pure-parse floor" is the share of the best this
HTTP stack could do with such a body that the service reaches; ``POST /_bench/noop`` in the
service (``protocol/floor.py``) is the other floor, with the service's own request checks.
"""

from __future__ import annotations

import gc
import json
import sys
from typing import Any

from flask import Flask, Response, jsonify, request

from cds_service.settings import Settings

PARSE_PATH = "/parse"


def parse_floor_app(settings: Settings) -> Flask:
    app = Flask("myocds_parse_floor")
    app.config["MYOCDS_SETTINGS"] = settings  # what FrontWorker reads (deadlines, threads)

    @app.post(PARSE_PATH)
    def parse() -> Response:
        json.loads(request.get_data())
        return jsonify({"cards": []})

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify({"status": "ok"})

    return app


def main() -> int:
    from gunicorn.app.base import BaseApplication

    from cds_service.commands.serve import gunicorn_options

    settings = Settings.from_env()
    app = parse_floor_app(settings)
    gc.collect()
    gc.freeze()  # as myocds serve does before forking

    class _Server(BaseApplication):
        def load_config(self) -> None:
            for key, value in gunicorn_options(settings).items():
                if key in self.cfg.settings and key != "child_exit":  # no metrics files here
                    self.cfg.set(key, value)

        def load(self) -> Any:
            return app

    _Server().run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
