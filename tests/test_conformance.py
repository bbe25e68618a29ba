"""Every scenario (the own set of tests/scenarios, and the optional reference set beside the
repository when present) through the HTTP interface, checked for CDS Hooks 2.0 conformance and
for the cards it must and must not give.

For each scenario, every service declared for its hook is called as an EHR would, in two modes,
each its own test: ``prefetch``, the prefetch being what the EHR holding the scenario's record
answers to that service's own prefetch templates; ``fetch``, no prefetch and the record served by
a FHIR server on 127.0.0.1 that the service reads. The clinical date is pinned to the scenario's
``today``.
"""

from __future__ import annotations

import json
import uuid
from datetime import date
from typing import Any

import pytest

from cds_service.cards_render.templates import catalogue_version
from cds_service.demo.search import build_prefetch
from cds_service.protocol.schemas import errors
from cds_service.services import services_for_hook
from tests.support.fhir_server import FhirTestServer


def call_every_service(
    make_app, settings, scenario: dict[str, Any], fhir_server: FhirTestServer | None = None
) -> list[dict[str, Any]]:
    """The cards of every service of the scenario's hook: with the prefetch its templates give,
    or, given ``fhir_server`` (serving the record), with no prefetch and that server's base."""
    hook = scenario["hook"]
    services = services_for_hook(hook)
    assert services, f"no service declared for {hook}"
    today = date.fromisoformat(scenario["today"])
    if fhir_server is None:
        app = make_app(settings.with_overrides(today=today))
    else:
        app = make_app(settings.with_overrides(today=today, fhir_allow=(fhir_server.base_url,)))
    client = app.test_client()
    cards: list[dict[str, Any]] = []
    for service in services:
        body: dict[str, Any] = {
            "hook": hook,
            "hookInstance": str(uuid.uuid4()),
            "context": scenario["context"],
        }
        if fhir_server is None:
            body["prefetch"] = build_prefetch(service, scenario["context"], scenario["record"])
        else:
            body["fhirServer"] = fhir_server.base_url
        assert errors("request", body) == [], service.id
        response = client.post(f"/cds-services/{service.id}", data=json.dumps(body),
                               content_type="application/json")
        assert response.status_code == 200, (service.id, response.get_json())
        document = response.get_json()
        assert errors("response", document) == [], service.id
        check_cards(document["cards"])
        cards.extend(document["cards"])
    return cards


def check_cards(cards: list[dict[str, Any]]) -> None:
    """What our response schema leaves optional and our cards must all have."""
    for card in cards:
        topic = card["source"].get("topic", {}).get("code")
        assert topic, card["summary"]
        # issue 15: every card names the rule catalogue version it was made by.
        assert card["source"]["topic"].get("version") == catalogue_version(), topic
        assert len(card["summary"]) <= 139, topic
        assert str(uuid.UUID(card["uuid"])) == card["uuid"], topic
        suggestions = card.get("suggestions", [])
        assert ("selectionBehavior" in card) == bool(suggestions), topic
        for suggestion in suggestions:
            assert str(uuid.UUID(suggestion["uuid"])) == suggestion["uuid"], topic
        for reason in card.get("overrideReasons", []):
            assert reason["display"].strip(), topic


def check_one_dose_per_draft(cards: list[dict[str, Any]]) -> None:
    """rules.md r2: a clinician never sees two suggestions that set one draft to different doses."""
    doses: dict[str, set[str]] = {}
    for card in cards:
        for suggestion in card.get("suggestions", []):
            for action in suggestion.get("actions", []):
                resource = action.get("resource") or {}
                if action.get("type") == "update" and resource.get("id"):
                    dosage = json.dumps(resource.get("dosageInstruction"), sort_keys=True)
                    doses.setdefault(resource["id"], set()).add(dosage)
    assert all(len(d) == 1 for d in doses.values()), doses


@pytest.fixture(params=["prefetch", "fetch"])
def mode(request: pytest.FixtureRequest) -> str:
    return request.param


def test_scenario(make_app, settings, scenario, mode):
    if mode == "prefetch":
        cards = call_every_service(make_app, settings, scenario)
    else:
        server = FhirTestServer(record=scenario["record"]).start()
        try:
            cards = call_every_service(make_app, settings, scenario, server)
        finally:
            server.stop()
        assert server.request_count > 0
    check_one_dose_per_draft(cards)
    uuids = [card["uuid"] for card in cards] + [
        s["uuid"] for card in cards for s in card.get("suggestions", [])
    ]
    assert len(uuids) == len(set(uuids)), "card and suggestion uuids must be unique"
    given = {(card["source"]["topic"]["code"], card["indicator"]) for card in cards}
    topics = {topic for topic, _ in given}
    expect = scenario["expect"]
    missing = [
        f"{e['topic']} ({e['indicator']})"
        for e in expect.get("present", [])
        if (e["topic"], e["indicator"]) not in given
    ]
    unwanted = sorted(topics & set(expect.get("absent", [])))
    assert not missing and not unwanted, (
        f"{scenario['title']}: missing {missing}, unwanted {unwanted}, given {sorted(given)}"
    )
