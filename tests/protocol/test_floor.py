"""The benchmark's no-op floor (``POST /_bench/noop``): off by default; when on, it refuses every
bad body exactly as a hook call does (same status, same OperationOutcome) and otherwise answers
``{"cards": []}``."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from cds_service.protocol.floor import NOOP_PATH
from cds_service.settings import Settings

CALL = "/cds-services/myopathy-review"


@pytest.fixture
def floor_client(settings: Settings, make_app: Callable[[Settings], Flask]) -> FlaskClient:
    small = settings.with_overrides(
        bench_noop=True, max_body_bytes=64 * 1024, max_json_depth=16, max_resources=5
    )
    return make_app(small).test_client()


def test_the_floor_is_off_unless_asked_for(client: FlaskClient, pv_body: dict[str, Any]) -> None:
    assert client.post(NOOP_PATH, json=pv_body).status_code == 404
    assert Settings.from_env({}).bench_noop is False
    assert Settings.from_env({"MYOCDS_BENCH_NOOP": "on"}).bench_noop is True


def test_a_valid_call_gets_no_cards(floor_client: FlaskClient, pv_body: dict[str, Any]) -> None:
    response = floor_client.post(NOOP_PATH, json=pv_body)
    assert response.status_code == 200
    assert response.get_json() == {"cards": []}


def _deep(levels: int) -> bytes:
    return ('{"hook": "patient-view", "x": ' + "[" * levels + "]" * levels + "}").encode()


def _many_resources(body: dict[str, Any]) -> dict[str, Any]:
    entry = [{"resource": {"resourceType": "Observation", "id": f"o{i}"}} for i in range(6)]
    body["prefetch"]["observations"] = {"resourceType": "Bundle", "type": "searchset",
                                        "entry": entry}
    return body


BAD_BODIES: dict[str, Callable[[dict[str, Any]], tuple[bytes, str]]] = {
    "not JSON": lambda b: (b"{hook: patient-view", "application/json"),
    "not UTF-8": lambda b: (b'{"hook": "\xff"}', "application/json"),
    "NaN": lambda b: (b'{"hook": NaN}', "application/json"),
    "empty": lambda b: (b"", "application/json"),
    "media type": lambda b: (json.dumps(b).encode(), "text/plain"),
    "too large": lambda b: (b'{"pad": "' + b"x" * (65 * 1024) + b'"}', "application/json"),
    "too deep": lambda b: (_deep(20), "application/json"),
    "too many resources": lambda b: (json.dumps(_many_resources(b)).encode(), "application/json"),
    "no patientId": lambda b: (
        json.dumps({**b, "context": {"userId": "Practitioner/1"}}).encode(), "application/json"),
    "hook not a string": lambda b: (
        json.dumps({**b, "hook": 5}).encode(), "application/json"),
    "array body": lambda b: (b"[]", "application/json"),
}


@pytest.mark.parametrize("kind", list(BAD_BODIES))
def test_a_bad_body_is_refused_exactly_as_a_hook_call_refuses_it(
    floor_client: FlaskClient, pv_body: dict[str, Any], kind: str
) -> None:
    data, content_type = BAD_BODIES[kind](pv_body)
    floor = floor_client.post(NOOP_PATH, data=data, content_type=content_type)
    call = floor_client.post(CALL, data=data, content_type=content_type)
    assert floor.status_code == call.status_code
    assert floor.status_code in (400, 413, 415)
    assert floor.get_json() == call.get_json()
    assert floor.get_json()["resourceType"] == "OperationOutcome"
