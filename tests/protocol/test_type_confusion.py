"""Members of other JSON types where the service expects a list, object or string.

The deterministic complement of the random fuzzing: in three scenario requests (a chart open, a
statin order, an IVIG order) every member in turn becomes ``null`` (the most common client
deviation), plus the shapes the fuzzer found answered with 500 before they were fixed.
``scripts/fuzz.py --sweep`` runs the full sweep (every scenario, five JSON types).
"""

from __future__ import annotations

import copy
import json
import socket
from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest
from flask.testing import FlaskClient

from cds_service.settings import Settings
from tests.support.strategies import (
    DEAD_FHIR,
    SEEDS,
    Call,
    check_response,
    service_path,
    type_confusion_calls,
)


@pytest.fixture(scope="module")
def sweep_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FlaskClient]:
    from cds_service import create_app

    database = tmp_path_factory.mktemp("sweep") / "sweep.sqlite3"
    app = create_app(
        Settings().with_overrides(
            auth="off",
            database_url=f"sqlite:///{database}",
            today=date(2026, 1, 15),
            fhir_allow=(DEAD_FHIR,),
            fhir_timeout_seconds=0.5,
            hook_deadline_seconds=1.0,
        )
    )
    real = socket.getaddrinfo
    socket.getaddrinfo = _no_dns  # type: ignore[assignment]
    yield app.test_client()
    socket.getaddrinfo = real
    app.extensions["myocds"].store.dispose()


def _no_dns(host: Any, *args: Any, **kwargs: Any) -> Any:
    raise socket.gaierror(socket.EAI_NONAME, "test: no DNS")


def _seed(hook: str, has_drafts: bool) -> tuple[str, dict[str, Any]]:
    for service_id, body in SEEDS:
        if body["hook"] == hook and ("draftOrders" in body["context"]) == has_drafts:
            return service_id, body
    pytest.skip(f"no scenario for {hook}")


def _ivig_seed() -> tuple[str, dict[str, Any]]:
    for service_id, body in SEEDS:
        if service_id == "ivig-order-check" and body["hook"] == "order-sign":
            return service_id, body
    pytest.skip("no IVIG order-sign scenario")


def test_every_member_null_in_three_scenarios(sweep_client: FlaskClient) -> None:
    chosen = {
        id(body)
        for _, body in (_seed("patient-view", False), _seed("order-select", True), _ivig_seed())
    }
    calls = [
        call
        for call in type_confusion_calls(values=(None,))
        if any(json.loads(call.body or b"{}").get("hookInstance") == body["hookInstance"]
               for _, body in SEEDS if id(body) in chosen)
    ]  # fmt: skip
    assert len(calls) > 300
    for call in calls:
        check_response(call, call.send(sweep_client))


def _with(seed: tuple[str, dict[str, Any]], change: Any) -> Call:
    service_id, body = seed
    body = copy.deepcopy(body)
    change(body)
    return Call("POST", service_path(service_id), json.dumps(body).encode(), "application/json")


def _bundles(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [v for v in body.get("prefetch", {}).values() if isinstance(v, dict) and "entry" in v]


@pytest.mark.parametrize("link", [-1.5e63, "next", {"relation": "next"}, [7], [{"relation": 7}]])
def test_bundle_link_of_any_shape(sweep_client: FlaskClient, link: Any) -> None:
    def change(body: dict[str, Any]) -> None:
        for bundle in _bundles(body):
            bundle["link"] = link

    call = _with(_seed("patient-view", False), change)
    check_response(call, call.send(sweep_client))


@pytest.mark.parametrize("resource_type", [["Observation"], 7, None, {"x": 1}])
def test_entry_resource_type_of_any_shape(sweep_client: FlaskClient, resource_type: Any) -> None:
    def change(body: dict[str, Any]) -> None:
        for bundle in _bundles(body):
            for entry in bundle["entry"]:
                entry["resource"]["resourceType"] = resource_type

    call = _with(_seed("patient-view", False), change)
    response = call.send(sweep_client)
    check_response(call, response)


@pytest.mark.parametrize("draft_id", [None, ""])
def test_drafted_order_without_an_id(sweep_client: FlaskClient, draft_id: Any) -> None:
    # A card may suggest deleting or changing the draft: without an id that button is left out.
    def change(body: dict[str, Any]) -> None:
        for entry in body["context"]["draftOrders"].get("entry", []):
            if draft_id is None:
                entry["resource"].pop("id", None)
            else:
                entry["resource"]["id"] = draft_id

    for seed in SEEDS:
        if "draftOrders" in seed[1]["context"]:
            call = _with(seed, change)
            check_response(call, call.send(sweep_client))


def _first(body: dict[str, Any], key: str) -> list[dict[str, Any]]:
    """Every dict under ``body`` that has ``key`` (depth-first)."""
    found: list[dict[str, Any]] = []
    stack: list[Any] = [body]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if key in node:
                found.append(node)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


@pytest.mark.parametrize("number", [1.24e54, 1.37e-104, -3e42, 10**40, 0])
def test_absurd_numbers_anywhere_a_quantity_is(sweep_client: FlaskClient, number: Any) -> None:
    # The fuzzer's 20,000-request run met these as a CK, a reference range and an IVIG dose.
    def change(body: dict[str, Any]) -> None:
        for quantity in _first(body, "value"):
            if isinstance(quantity["value"], int | float) and not isinstance(
                quantity["value"], bool
            ):
                quantity["value"] = number

    for seed in SEEDS:
        call = _with(seed, change)
        check_response(call, call.send(sweep_client))
