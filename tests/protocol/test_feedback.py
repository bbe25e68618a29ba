"""POST /cds-services/{id}/feedback: validated, stored once, joined to the card's rule."""

from __future__ import annotations

import json
import logging
import uuid
from datetime import UTC, date, datetime
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from cds_service.protocol.store import IssuedCard
from tests.protocol.conftest import ck_observation, searchset, statin_order_sign

URL = "/cds-services/myopathy-review/feedback"


def post(client, body: Any, url: str = URL):
    return client.post(url, data=json.dumps(body), content_type="application/json")


def accepted(card: str, *suggestions: str, at: str = "2025-07-01T10:15:30.5Z") -> dict:
    return {"card": card, "outcome": "accepted", "outcomeTimestamp": at,
            "acceptedSuggestions": [{"id": s} for s in suggestions]}


def issue_card(app, topic: str = "STAT-01") -> str:
    card = str(uuid.uuid4())
    app.extensions["myocds"].store.record_cards([IssuedCard(
        card_uuid=card, service_id="myopathy-review", hook="patient-view", topic=topic,
        indicator="critical", issued_at=datetime(2025, 7, 1, 10, 0, tzinfo=UTC))])
    return card


def store(app):
    return app.extensions["myocds"].store


def test_accepted_feedback_is_stored_and_answered_with_empty_object(app, client):
    card = issue_card(app)
    suggestion = str(uuid.uuid4())
    response = post(client, {"feedback": [accepted(card, suggestion)]})
    assert response.status_code == 200
    assert response.get_json() == {}
    [row] = store(app).feedback_rows(card)
    assert row["outcome"] == "accepted"
    assert row["accepted_suggestions"] == suggestion
    assert row["service_id"] == "myopathy-review"
    assert store(app).issued_card(card).topic == "STAT-01"  # the join feedback reports use


def test_the_same_feedback_twice_is_stored_once(app, client):
    card = issue_card(app)
    item = accepted(card, "s-2", "s-1")
    assert post(client, {"feedback": [item]}).status_code == 200
    assert post(client, {"feedback": [item]}).status_code == 200
    # Same instant written with an offset, suggestions in another order: still the same.
    again = accepted(card, "s-1", "s-2", at="2025-07-01T12:15:30.500+02:00")
    assert post(client, {"feedback": [again, again]}).status_code == 200
    assert len(store(app).feedback_rows(card)) == 1


def test_different_feedback_on_one_card_is_kept(app, client):
    card = issue_card(app)
    post(client, {"feedback": [accepted(card, "s-1")]})
    post(client, {"feedback": [accepted(card, "s-1", at="2025-07-01T10:16:00Z")]})
    post(client, {"feedback": [{"card": card, "outcome": "overridden",
                                "outcomeTimestamp": "2025-07-01T10:15:30.5Z"}]})
    assert len(store(app).feedback_rows(card)) == 3


def test_sandbox_override_without_display_or_system_is_accepted(app, client):
    card = issue_card(app)
    body = {"feedback": [{"card": card, "outcome": "overridden",
                          "outcomeTimestamp": "2025-07-01T10:00:00.000Z",
                          "overrideReason": {"reason": {"code": "not-statin-related"}}}]}
    assert post(client, body).status_code == 200
    [row] = store(app).feedback_rows(card)
    assert row["override_code"] == "not-statin-related"
    assert row["override_system"] is None


def test_user_comment_text_is_not_stored(app, client):
    card = issue_card(app)
    comment = "Pt John Smith MRN 998877 had a fall"
    body = {"feedback": [{"card": card, "outcome": "overridden",
                          "outcomeTimestamp": "2025-07-01T10:00:00Z",
                          "overrideReason": {"userComment": comment}}]}
    assert post(client, body).status_code == 200
    [row] = store(app).feedback_rows(card)
    assert row["has_user_comment"] is True
    assert all(comment not in str(value) for value in row.values())


def test_feedback_on_an_unknown_card_is_stored_and_logged(app, client, caplog):
    card = str(uuid.uuid4())
    with caplog.at_level(logging.WARNING):
        response = post(client, {"feedback": [accepted(card, "s-1")]})
    assert response.status_code == 200
    assert len(store(app).feedback_rows(card)) == 1
    assert "no record of" in caplog.text


def test_feedback_for_an_unknown_service_is_404(client):
    body = {"feedback": [accepted(str(uuid.uuid4()), "s-1")]}
    assert post(client, body, "/cds-services/nope/feedback").status_code == 404


@pytest.mark.parametrize(
    ("item", "field"),
    [
        ({"card": "C", "outcome": "accepted", "outcomeTimestamp": "2025-07-01T10:00:00Z"},
         "feedback[0].acceptedSuggestions"),
        ({"card": "C", "outcome": "dismissed", "outcomeTimestamp": "2025-07-01T10:00:00Z"},
         "feedback[0].outcome"),
        ({"card": "C", "outcome": "overridden", "outcomeTimestamp": "2025-07-01 10:00"},
         "feedback[0].outcomeTimestamp"),
        ({"card": "C", "outcome": "overridden", "outcomeTimestamp": "2025-07-01T10:00:00"},
         "feedback[0].outcomeTimestamp"),
        ({"card": "C", "outcome": "overridden", "outcomeTimestamp": "2025-02-30T10:00:00Z"},
         "feedback[0].outcomeTimestamp"),
        ({"card": "not-a-uuid", "outcome": "overridden",
          "outcomeTimestamp": "2025-07-01T10:00:00Z"}, "feedback[0].card"),
        ({"card": "C", "outcome": "overridden"}, "feedback[0].outcomeTimestamp"),
        ({"card": "C", "outcome": "overridden", "outcomeTimestamp": "2025-07-01T10:00:00Z",
          "overrideReason": {}}, "feedback[0].overrideReason"),
        ({"card": "C", "outcome": "accepted", "outcomeTimestamp": "2025-07-01T10:00:00Z",
          "acceptedSuggestions": []}, "feedback[0].acceptedSuggestions"),
    ],
)
def test_invalid_feedback_is_400_naming_the_field(client, item, field):
    item = {k: (str(uuid.uuid4()) if v == "C" else v) for k, v in item.items()}
    response = post(client, {"feedback": [item]})
    assert response.status_code == 400
    issue = response.get_json()["issue"][0]
    assert issue["expression"][0].startswith(field), issue


def test_override_reason_needs_a_reason_or_a_comment(client):
    item = {"card": str(uuid.uuid4()), "outcome": "overridden",
            "outcomeTimestamp": "2025-07-01T10:00:00Z", "overrideReason": {}}
    issue = post(client, {"feedback": [item]}).get_json()["issue"][0]
    assert issue["diagnostics"] == "feedback[0].overrideReason needs reason or userComment"


def test_more_than_1000_items_is_400(client):
    items = [accepted(str(uuid.uuid4()), "s-1") for _ in range(1001)]
    issue = post(client, {"feedback": items}).get_json()["issue"][0]
    assert issue["expression"] == ["feedback"]
    assert "1000" in issue["diagnostics"]


def test_empty_feedback_list_is_400(client):
    response = post(client, {"feedback": []})
    assert response.status_code == 400
    assert response.get_json()["issue"][0]["expression"] == ["feedback"]


def test_cards_issued_by_a_call_are_recorded_for_the_feedback_join(make_app, settings):
    app = make_app(settings.with_overrides(today=date(2025, 7, 1)))
    # A drafted statin with CK 5,000 U/L three days ago (26×ULN for a woman): STAT-01 fires.
    body = statin_order_sign()
    body["prefetch"]["observations"] = searchset(ck_observation("ck-1", 5000, "2025-06-28"))
    response = app.test_client().post("/cds-services/statin-order-check", data=json.dumps(body),
                                      content_type="application/json")
    assert response.status_code == 200, response.get_json()
    cards = response.get_json()["cards"]
    assert "STAT-01" in [card["source"]["topic"]["code"] for card in cards]
    for card in cards:
        issued = store(app).issued_card(card["uuid"])
        assert issued is not None
        assert issued.service_id == "statin-order-check" and issued.hook == "order-sign"
        assert issued.topic == card["source"]["topic"]["code"]
        assert issued.indicator == card["indicator"]


def test_advice_is_answered_even_when_cards_cannot_be_recorded(make_app, settings, monkeypatch,
                                                               caplog):
    app = make_app(settings.with_overrides(today=date(2025, 7, 1)))

    def broken(cards):
        raise OperationalError("INSERT", {}, Exception("database is locked"))

    monkeypatch.setattr(store(app), "record_cards", broken)
    body = statin_order_sign()
    body["prefetch"]["observations"] = searchset(ck_observation("ck-1", 5000, "2025-06-28"))
    with caplog.at_level(logging.ERROR):
        response = app.test_client().post("/cds-services/statin-order-check",
                                          data=json.dumps(body), content_type="application/json")
    assert response.status_code == 200
    assert response.get_json()["cards"]
    assert "could not record" in caplog.text
