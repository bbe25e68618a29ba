"""Every scenario of ../shared/scenarios through the HTTP interface, checked for CDS Hooks 2.0
conformance and for the cards it must and must not give.

For each scenario, every service declared for its hook is called, as an EHR would: the prefetch
is what the EHR holding the scenario's record answers to that service's own prefetch templates,
and the clinical date is pinned to the scenario's ``today``.
"""

from __future__ import annotations

import json
import uuid
from datetime import date
from typing import Any

from cds_service.fhir.search import build_prefetch
from cds_service.protocol.schemas import errors
from cds_service.services import services_for_hook


def call_every_service(make_app, settings, scenario: dict[str, Any]) -> list[dict[str, Any]]:
    hook = scenario["hook"]
    services = services_for_hook(hook)
    assert services, f"no service declared for {hook}"
    app = make_app(settings.with_overrides(today=date.fromisoformat(scenario["today"])))
    client = app.test_client()
    cards: list[dict[str, Any]] = []
    for service in services:
        body = {
            "hook": hook,
            "hookInstance": str(uuid.uuid4()),
            "context": scenario["context"],
            "prefetch": build_prefetch(service, scenario["context"], scenario["record"]),
        }
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
        assert len(card["summary"]) <= 139, topic
        assert str(uuid.UUID(card["uuid"])) == card["uuid"], topic
        suggestions = card.get("suggestions", [])
        assert ("selectionBehavior" in card) == bool(suggestions), topic
        for suggestion in suggestions:
            assert str(uuid.UUID(suggestion["uuid"])) == suggestion["uuid"], topic
        for reason in card.get("overrideReasons", []):
            assert reason["display"].strip(), topic


def test_scenario(make_app, settings, scenario):
    cards = call_every_service(make_app, settings, scenario)
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
