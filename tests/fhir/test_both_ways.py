"""Through HTTP: every scenario (own and shared sets) gives the same response with prefetch and
with none.

(a) the request carries the prefetch built from the service's own templates on the record;
(b) no prefetch: the service fetches the record from the local FHIR server (paged, 3 a page).
Responses must be equal apart from the random card and suggestion uuids.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import date
from typing import Any

from flask import Flask

from cds_service.demo.search import build_prefetch
from cds_service.services import services_for_hook
from cds_service.settings import Settings
from tests.support.fhir_server import FhirTestServer


def _without_uuids(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_uuids(v) for k, v in value.items() if k != "uuid"}
    if isinstance(value, list):
        return [_without_uuids(v) for v in value]
    return value


def test_scenario_gives_the_same_response_both_ways(
    scenario: dict[str, Any],
    make_app: Callable[[Settings], Flask],
    settings: Settings,
    fhir_server: FhirTestServer,
) -> None:
    fhir_server.record = scenario["record"]
    fhir_server.page_size = 3
    app = make_app(
        settings.with_overrides(
            today=date.fromisoformat(scenario["today"]), fhir_allow=(fhir_server.base_url,)
        )
    )
    client = app.test_client()
    for service in services_for_hook(scenario["hook"]):
        base = {
            "hook": scenario["hook"],
            "hookInstance": str(uuid.uuid4()),
            "context": scenario["context"],
        }
        prefetch = build_prefetch(service, scenario["context"], scenario["record"])
        answers = []
        for body in ({**base, "prefetch": prefetch}, {**base, "fhirServer": fhir_server.base_url}):
            response = client.post(
                f"/cds-services/{service.id}",
                data=json.dumps(body),
                content_type="application/json",
            )
            answers.append((response.status_code, _without_uuids(response.get_json())))
        with_prefetch, fetched = answers
        assert fetched == with_prefetch, service.id
        assert with_prefetch[0] == 200, (service.id, with_prefetch[1])
    assert fhir_server.request_count > 0


def test_a_search_cut_at_the_page_cap_is_said_on_every_card(
    scenarios: dict[str, dict[str, Any]],
    make_app: Callable[[Settings], Flask],
    settings: Settings,
    fhir_server: FhirTestServer,
) -> None:
    """Partial data must not pass for the whole record: each card names the cut keys."""
    scenario = scenarios["own/stat01-ck-over-10x-lab-uln"]  # the project's own (a clone alone)
    fhir_server.record = scenario["record"]
    fhir_server.page_size = 1  # 3 Observations: 3 pages, but only 2 may be read
    app = make_app(
        settings.with_overrides(
            today=date.fromisoformat(scenario["today"]),
            fhir_allow=(fhir_server.base_url,),
            fhir_page_cap=2,
        )
    )
    body = {"hook": scenario["hook"], "hookInstance": str(uuid.uuid4()),
            "context": scenario["context"], "fhirServer": fhir_server.base_url}
    response = app.test_client().post(
        "/cds-services/myopathy-review", data=json.dumps(body), content_type="application/json"
    )
    assert response.status_code == 200, response.get_json()
    cards = response.get_json()["cards"]
    assert cards, "the CK of 4,100 U/L (newest first, on page 1) still gives STAT-01"
    for card in cards:
        assert "Only the first pages of observations" in card["detail"]
