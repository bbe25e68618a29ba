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
        store(app).flush_issued()  # written behind the call (Store.issue): now, not in 50 ms
    assert "could not record" in caplog.text


# --- each item stored or refused on its own; column sizes; dates at the edge ------------------


@pytest.fixture
def any_db_app(make_app, settings, store_url):
    return make_app(settings.with_overrides(database_url=store_url))


def test_sixteen_suggestion_ids_of_128_characters_are_stored(any_db_app):
    card = issue_card(any_db_app)
    ids = [f"{i:02d}" + "x" * 126 for i in range(16)]
    other = str(uuid.uuid4())
    body = {"feedback": [accepted(card, *ids), accepted(other, "s-1")]}
    response = post(any_db_app.test_client(), body)
    assert response.status_code == 200, response.get_data(as_text=True)
    [row] = store(any_db_app).feedback_rows(card)
    assert row["accepted_suggestions"] == ",".join(sorted(ids))
    assert len(store(any_db_app).feedback_rows(other)) == 1


def test_a_bad_item_is_refused_alone_and_the_others_are_stored(any_db_app):
    cards = [str(uuid.uuid4()) for _ in range(5)]
    items = [
        accepted(cards[0], "s-1"),
        accepted(cards[1], "s-1", at="9999-12-31T23:59:59-00:01"),  # past year 9999 in UTC
        accepted(cards[2], "s-1"),
        {"card": cards[3], "outcome": "overridden", "outcomeTimestamp": "2025-07-01T10:00:00Z",
         "overrideReason": {"reason": {"code": "c" * 129}}},
        accepted(cards[4], *[f"s-{i}" for i in range(65)]),
    ]
    response = post(any_db_app.test_client(), {"feedback": items})
    assert response.status_code == 400
    outcome = response.get_json()
    errors = [i for i in outcome["issue"] if i["severity"] == "error"]
    assert [i["expression"] for i in errors] == [
        ["feedback[1].outcomeTimestamp"],
        ["feedback[3].overrideReason.reason.code"],
        ["feedback[4].acceptedSuggestions"],
    ]
    assert errors[0]["diagnostics"] == (
        "feedback[1].outcomeTimestamp is outside the years 0001-9999 once in UTC")
    assert outcome["issue"][-1]["diagnostics"] == "2 of 5 feedback item(s) stored"
    stored = {row["card_uuid"] for row in store(any_db_app).feedback_rows()}
    assert stored == {cards[0], cards[2]}
    # The client may send the whole post again: nothing is stored twice.
    again = post(any_db_app.test_client(), {"feedback": items})
    assert again.status_code == 400
    assert store(any_db_app).count_feedback() == 2


@pytest.mark.parametrize(
    ("at", "stored_as"),
    [
        ("9999-12-31T23:59:59-00:01", None),
        ("0001-01-01T00:00:00+00:01", None),
        ("9999-12-31T23:59:59+00:01", datetime(9999, 12, 31, 23, 58, 59, tzinfo=UTC)),
        ("0001-01-01T00:00:00-00:01", datetime(1, 1, 1, 0, 1, tzinfo=UTC)),
        ("2016-12-31T23:59:60Z", datetime(2016, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)),
        ("2025-07-01T24:00:00Z", None),
        ("2025-07-01T10:00:00+14:00", datetime(2025, 6, 30, 20, 0, tzinfo=UTC)),
        ("2025-07-01T10:00:00-14:00", datetime(2025, 7, 2, 0, 0, tzinfo=UTC)),
        ("2025-07-01T10:00:00+23:59", datetime(2025, 6, 30, 10, 1, tzinfo=UTC)),
        ("2025-07-01T10:00:00+24:00", None),
        ("2025-07-01T10:00:00-99:00", None),
        ("2025-07-01T10:00:00.123456789Z", datetime(2025, 7, 1, 10, 0, 0, 123456, tzinfo=UTC)),
    ],
)
def test_outcome_timestamp_at_the_edges(any_db_app, at, stored_as):
    card = str(uuid.uuid4())
    response = post(any_db_app.test_client(), {"feedback": [accepted(card, "s-1", at=at)]})
    if stored_as is None:
        assert response.status_code == 400
        [issue, _] = response.get_json()["issue"]
        assert issue["expression"] == ["feedback[0].outcomeTimestamp"]
        assert store(any_db_app).feedback_rows(card) == []
        return
    assert response.status_code == 200, response.get_data(as_text=True)
    [row] = store(any_db_app).feedback_rows(card)
    outcome_at = row["outcome_at"]
    if outcome_at.tzinfo is None:  # SQLite keeps no zone: the value is UTC
        outcome_at = outcome_at.replace(tzinfo=UTC)
    assert outcome_at == stored_as
