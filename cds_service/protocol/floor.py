"""``POST /_bench/noop``: the benchmark's floor, registered only when ``MYOCDS_BENCH_NOOP=on``.

It does to the body exactly what a hook call does before the pipeline (the same authentication,
media type, size and depth limits, JSON parsing, resource count and request schema) and then
answers ``{"cards": []}``. Its throughput with a hook's body is the most the HTTP stack and the
request checks allow, so "hook throughput / floor throughput" measures the pipeline alone.
Never on in production: it is an endpoint that does nothing for anyone.
"""

from __future__ import annotations

from flask import Blueprint, Flask, Response, jsonify, request

from cds_service.protocol.body import read_json_body
from cds_service.protocol.limits import check_resource_count
from cds_service.protocol.routes import authenticate, state
from cds_service.protocol.schemas import validate
from cds_service.settings import Settings

floor = Blueprint("floor", __name__)
floor.before_request(authenticate)

NOOP_PATH = "/_bench/noop"


@floor.post(NOOP_PATH)
def noop() -> Response:
    settings = state().settings
    # The same three steps, in the same order, as protocol.routes.call_service.
    body = read_json_body(request, settings.max_body_bytes, settings.max_json_depth)
    check_resource_count(body, settings.max_resources)
    validate("request", body)
    return jsonify({"cards": []})


def install_floor(app: Flask, settings: Settings) -> None:
    if settings.bench_noop:
        app.register_blueprint(floor)
