"""Issued cards written behind the calls (``Store.issue``): a hook call never waits on the
database for them, one statement holds the cards of several calls, whatever reads issued cards
in the process sees every card issued before, and the cards still waiting are written at exit."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import event

from cds_service.protocol import store as store_module
from cds_service.protocol.store import Store
from cds_service.settings import Settings
from tests.support.records import call_body, issued_card

ROOT = Path(__file__).resolve().parents[2]
# A patient-view that gives a card (CK monitoring overdue).
SCENARIO = ROOT / "tests" / "scenarios" / "cont02-ck-overdue.json"



def _statements(store: Store) -> list[tuple[str, str]]:
    """(thread name, SQL) of every statement the store runs from now on."""
    seen: list[tuple[str, str]] = []
    event.listen(store.engine, "before_cursor_execute",
                 lambda _c, _cur, sql, *_: seen.append((threading.current_thread().name, sql)))
    return seen


def test_a_hook_call_never_waits_on_the_database_and_its_cards_are_found_after(
    settings: Settings, make_app: Callable[[Settings], Flask]
) -> None:
    scenario = json.loads(SCENARIO.read_text())
    app = make_app(settings.with_overrides(today=date.fromisoformat(scenario["today"])))
    store: Store = app.extensions["myocds"].store
    store.ensure_schema()
    seen = _statements(store)
    response = app.test_client().post("/cds-services/myopathy-review",
                                      json=call_body(scenario, prefetch=True))
    assert response.status_code == 200
    (card,) = response.get_json()["cards"]
    during_call = [sql for thread, sql in seen if thread == threading.current_thread().name]
    assert during_call == []  # the request's thread ran no statement
    issued = store.issued_card(card["uuid"])  # written first, then read
    assert issued is not None and issued.topic == "CONT-02"


def test_the_cards_of_many_calls_go_in_a_few_statements(store_url: str) -> None:
    store = Store(store_url)
    try:
        store.ensure_schema()
        seen = _statements(store)
        cards = [issued_card() for _ in range(20)]
        for card in cards:  # twenty calls of one card each, within a few milliseconds
            store.issue([card])
        assert all(store.issued_card(card.card_uuid) is not None for card in cards)
        inserts = [sql for _, sql in seen if sql.lstrip().upper().startswith("INSERT")]
        assert 1 <= len(inserts) <= 4, inserts  # 16 + 4, a flush of the writer between at most
    finally:
        store.dispose()


def test_past_the_backlog_cards_are_dropped_and_logged_never_held(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(store_module, "ISSUE_BACKLOG", 3)
    store = Store(f"sqlite:///{tmp_path / 'store.sqlite3'}")
    kept, dropped = [issued_card(), issued_card()], [issued_card(), issued_card()]
    with caplog.at_level(logging.ERROR, logger="myocds.store"):
        store.issue(kept)
        store.issue(dropped)  # 2 + 2 > 3
    assert "could not record 2 issued card(s): 2 already waiting" in caplog.text
    assert all(store.issued_card(c.card_uuid) is not None for c in kept)
    assert all(store.issued_card(c.card_uuid) is None for c in dropped)
    store.dispose()


def test_cards_still_waiting_at_exit_are_written(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    Store(url).ensure_schema()
    script = f"""
import uuid
from datetime import UTC, datetime
from cds_service.protocol.store import IssuedCard, Store
store = Store({url!r})
store.issue([IssuedCard(str(uuid.uuid4()), "s", "patient-view", "CONT-02", "info",
                        datetime(2025, 7, 1, tzinfo=UTC)) for _ in range(3)])
"""  # and exits at once, well within ISSUE_DELAY
    subprocess.run([sys.executable, "-c", script], cwd=ROOT, check=True, timeout=60)
    assert Store(url).rule_report()["CONT-02"].issued == 3
