"""The feedback loop (issue 15) through HTTP: cards issued to, and feedback posted by, several
sites on several rules; the report (CLI table, CSV, JSON; the report page) counts exactly what was
posted, per site, rule, version and outcome, on SQLite and PostgreSQL; ``/metrics`` counts
feedback per rule and outcome; the Grafana dashboard's queries name metrics ``/metrics`` has."""

from __future__ import annotations

import csv
import io
import json
import re
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from cds_service import create_app
from cds_service.cli import main
from cds_service.commands.report import NOT_ISSUED
from cds_service.settings import Settings

from .conftest import Site, call, example_call

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "docker" / "grafana-feedback-dashboard.json"
STATIN = ("myopathy-review", "statin-ck-over-10x")  # STAT-01, STAT-02
IVIG = ("ivig-order-check", "obese-first-ivig-dose")  # DOSE-01, DOSE-02, ...


@pytest.fixture
def report_app(policy_settings: Settings, store_url: str):
    app = create_app(policy_settings.with_overrides(database_url=store_url, report_page=True))
    yield app
    app.extensions["myocds"].store.dispose()


def _issue(client: FlaskClient, site: Site, which: tuple[str, str], times: int) -> dict:
    """Cards issued to ``site``: their uuids by rule, and the cards themselves by uuid."""
    service_id, example = which
    by_rule: dict[str, list[dict]] = {}
    for _ in range(times):
        for card in call(client, site, service_id, example_call(example, service_id)):
            by_rule.setdefault(card["source"]["topic"]["code"], []).append(card)
    return by_rule


def _item(card: dict[str, Any], outcome: str, reason: int | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {"card": card["uuid"], "outcome": outcome,
                            "outcomeTimestamp": "2025-07-01T10:00:00Z"}
    if outcome == "accepted":
        item["acceptedSuggestions"] = [{"id": s["uuid"]} for s in card.get("suggestions", [])[:1]]
    if reason is not None:
        item["overrideReason"] = {"reason": {k: card["overrideReasons"][reason][k]
                                             for k in ("system", "code")}}
    return item


def _post(client: FlaskClient, site: Site, service_id: str, items: list[dict]) -> None:
    path = f"/cds-services/{service_id}/feedback"
    response = client.post(path, json={"feedback": items}, headers=site.headers(path))
    assert response.status_code == 200, response.get_json()


def test_the_report_counts_what_each_site_posted(
    report_app, sites: dict[str, Site], capsys: pytest.CaptureFixture[str]
) -> None:
    client = report_app.test_client()
    north, clinic = sites["north"], sites["clinic"]
    issued = {
        north.label: {**_issue(client, north, STATIN, 3), **_issue(client, north, IVIG, 2)},
        clinic.label: {**_issue(client, clinic, STATIN, 2), **_issue(client, clinic, IVIG, 3)},
    }
    # What each site posts: (rule, card index, outcome, override reason index); a card accepted
    # has a suggestion (the feedback names the one taken).
    plan = {
        north.label: [("STAT-01", 0, "accepted", None), ("STAT-01", 1, "overridden", 0),
                      ("STAT-01", 2, "overridden", 0), ("STAT-02", 0, "overridden", 0),
                      ("DOSE-02", 0, "accepted", None), ("DOSE-01", 1, "overridden", 1)],
        clinic.label: [("STAT-01", 0, "overridden", 0), ("STAT-01", 1, "accepted", None),
                       ("STAT-02", 1, "overridden", 0),
                       ("DOSE-01", 0, "overridden", 0), ("DOSE-01", 2, "overridden", 1),
                       ("DOSE-02", 2, "overridden", 0)],
    }
    expected: dict[tuple[str, str], dict[str, Any]] = {}
    for site in (north, clinic):
        items_by_service: dict[str, list[dict]] = {}
        for rule, index, outcome, reason in plan[site.label]:
            card = issued[site.label][rule][index]
            service_id = STATIN[0] if rule.startswith("STAT") else IVIG[0]
            items_by_service.setdefault(service_id, []).append(_item(card, outcome, reason))
            line = expected.setdefault((site.label, rule), {"accepted": 0, "overridden": 0,
                                                            "reasons": Counter()})
            line[outcome] += 1
            if reason is not None:
                line["reasons"][card["overrideReasons"][reason]["code"]] += 1
        for service_id, items in items_by_service.items():
            _post(client, site, service_id, items)
            _post(client, site, service_id, items[:1])  # a repeat: counted once
    stranger = {"uuid": str(uuid.uuid4()), "suggestions": [{"uuid": str(uuid.uuid4())}]}
    _post(client, clinic, STATIN[0], [_item(stranger, "accepted")])  # a card not issued here

    url = report_app.extensions["myocds"].settings.database_url
    assert main(["feedback-report", "--database-url", url, "--format", "json"]) == 0
    lines = json.loads(capsys.readouterr().out)
    by_key = {(line["site"], line["topic"]): line for line in lines}
    version = report_app.extensions["myocds"].templates["STAT-01"].version
    for site in (north, clinic):
        for rule, cards in issued[site.label].items():
            line = by_key[(site.label, rule)]
            want = expected.get((site.label, rule),
                                {"accepted": 0, "overridden": 0, "reasons": Counter()})
            answered = want["accepted"] + want["overridden"]
            assert line["version"] == version
            assert line["issued"] == len(cards), (site.label, rule)
            assert (line["accepted"], line["overridden"]) == (want["accepted"],
                                                              want["overridden"]), (site, rule)
            assert line["override_reasons"] == dict(want["reasons"]), (site.label, rule)
            assert line["with_feedback"] == answered
            assert line["no_answer"] == len(cards) - answered
            assert line["acceptance_rate"] == (want["accepted"] / answered if answered else None)
    assert by_key[(clinic.label, NOT_ISSUED)]["accepted"] == 1
    # the south site called nothing: no line of its own
    assert not any(line["tenant"] == "south" for line in lines)

    # CSV: the same numbers
    assert main(["feedback-report", "--database-url", url, "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    stat01 = next(r for r in rows if r["site"] == north.label and r["topic"] == "STAT-01")
    assert (stat01["shown"], stat01["accepted"], stat01["overridden"], stat01["no_answer"]) == (
        "3", "1", "2", "0")
    assert stat01["acceptance_rate"] == "0.3333"

    # The table groups by site
    assert main(["feedback-report", "--database-url", url]) == 0
    table = capsys.readouterr().out
    assert f"site: {north.label}" in table and f"site: {clinic.label}" in table

    # The report page: the same lines, each site sees its own only
    for site in (north, clinic):
        page = client.get("/try/report?format=json", headers=site.headers("/try/report"))
        assert page.status_code == 200
        seen = page.get_json()["report"]
        assert seen == [line for line in lines if line["site"] == site.label]
        html = client.get("/try/report", headers=site.headers("/try/report"))
        assert f'data-site="{site.label}"' in html.get_data(as_text=True)

    # /metrics: feedback per rule and outcome, as stored (repeats not counted)
    exposition = client.get("/metrics", headers=north.headers("/metrics")).get_data(as_text=True)
    totals: Counter[tuple[str, str]] = Counter()
    for (_, rule), want in expected.items():
        totals[(rule, "accepted")] += want["accepted"]
        totals[(rule, "overridden")] += want["overridden"]
    for (rule, outcome), count in totals.items():
        if not count:  # a label pair never counted is not exposed
            assert f'outcome="{outcome}",topic="{rule}"' not in exposition
            continue
        sample = f'myocds_feedback_total{{outcome="{outcome}",topic="{rule}"}} {float(count)}'
        assert sample in exposition, sample
    assert 'myocds_feedback_total{outcome="accepted",topic="unknown"} 1.0' in exposition


def test_the_report_page_needs_a_token_and_is_off_in_production(
    policy_settings: Settings, sites: dict[str, Site]
) -> None:
    on = create_app(policy_settings.with_overrides(report_page=True)).test_client()
    assert on.get("/try/report").status_code == 401
    assert on.get("/try/report", headers=sites["clinic"].headers("/try/report")).status_code == 200
    off = create_app(policy_settings).test_client()  # auth required, no MYOCDS_REPORT_PAGE
    assert off.get("/try/report", headers=sites["clinic"].headers("/try/report")).status_code == 404


def test_the_sites_page_shows_each_sites_values_beside_the_defaults(
    policy_settings: Settings,
) -> None:
    client = create_app(policy_settings.with_overrides(try_pages=True)).test_client()
    html = client.get("/try/sites").get_data(as_text=True)
    assert '<a href="report">feedback report</a>' in html  # on with the try pages by default
    assert 'href="/try/sites"' in client.get("/try/rules").get_data(as_text=True)  # in the nav
    north = html[html.index('data-site="https://ehr.hospitals.example tenant north"'):]
    north = north[: north.index("</section>")]
    assert re.search(r'data-setting="ivig_dosing_weight".*?class="default">ideal<.*?'
                     r'class="site-value">adjusted<', north, re.S)
    south = html[html.index('data-site="https://ehr.hospitals.example tenant south"'):]
    assert 'data-disabled="CONT-02"' in south[: south.index("</section>")]


def test_the_dashboard_queries_name_metrics_that_metrics_exposes(
    policy_settings: Settings, sites: dict[str, Site]
) -> None:
    client = create_app(policy_settings).test_client()
    site = sites["clinic"]
    cards = call(client, site, STATIN[0], example_call(STATIN[1], STATIN[0]))
    _post(client, site, STATIN[0], [_item(cards[0], "overridden", 0)])
    exposition = client.get("/metrics", headers=site.headers("/metrics")).get_data(as_text=True)
    exposed = set(re.findall(r"^([a-z_:]+)(?:\{| )", exposition, re.M))
    # A counter declared but not yet counted (no label values) has its TYPE line only.
    exposed |= set(re.findall(r"^# TYPE (\S+) counter$", exposition, re.M))
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    expressions = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    expressions += [v["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    named = {name for expr in expressions for name in re.findall(r"\bmyocds_[a-z_]+", expr)}
    assert {"myocds_feedback_total", "myocds_cards_total"} <= named
    assert named <= exposed, named - exposed


def test_migration_0003_keeps_older_rows_and_gives_their_feedback_its_rule(
    store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from sqlalchemy import text

    from cds_service import migrations
    from cds_service.protocol.store import Store
    from tests.support.databases import upgrade_to

    store = Store(store_url)
    try:
        with store.engine.connect() as connection:  # a database left at 0002 by the last version
            upgrade_to(connection, "0002")
            connection.execute(text(
                "INSERT INTO issued_cards (card_uuid, service_id, hook, topic, indicator, "
                "issued_at) VALUES ('c-1', 'myopathy-review', 'patient-view', 'STAT-01', "
                "'critical', '2025-07-01 10:00:00+00:00')"))
            connection.execute(text(
                "INSERT INTO feedback (dedup_key, card_uuid, service_id, outcome, outcome_at, "
                "override_code, has_user_comment, received_at) VALUES ('k', 'c-1', "
                "'myopathy-review', 'overridden', '2025-07-01 10:00:00+00:00', 'other-cause', "
                "false, '2025-07-01 10:00:00+00:00')"))
            connection.commit()
        assert migrations.upgrade(store.engine) == ("0002", migrations.head())
        assert store.feedback_rows()[0]["topic"] == "STAT-01"
    finally:
        store.dispose()
    assert main(["feedback-report", "--database-url", store_url, "--format", "json"]) == 0
    [line] = json.loads(capsys.readouterr().out)
    assert (line["site"], line["topic"], line["version"]) == ("(no site: authentication off)",
                                                              "STAT-01", "-")
    assert (line["issued"], line["overridden"], line["override_reasons"]) == (
        1, 1, {"other-cause": 1})
