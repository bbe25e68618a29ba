"""The try-it page in a real headless Chromium (Debian's package driven by Playwright).

The app is served on a loopback port with authentication off and the clinical date pinned to the
example's. A person picks examples and hooks in the page; the page's script calls the service over
HTTP; the cards, the suggestion resources, the timeline and the request/response panels are read
back from the rendered page. Screenshots go to tests/artifacts/ (ignored by git).
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from cds_service.tryit.examples import load_examples
from tests.tryit.conftest import Browser, screenshot

pytestmark = pytest.mark.browser

SHIPPED = load_examples()
TIMEOUT_MS = 15000


def expected_cards(make_app: Any, settings: Any, query: dict[str, str]) -> list[dict[str, Any]]:
    """The cards the service gives for a view, had through the test client (not the browser)."""
    client = make_app(settings).test_client()
    plan = client.get("/try/request", query_string=query).get_json()
    cards: list[dict[str, Any]] = []
    for call in plan["calls"]:
        response = client.post(call["path"], data=json.dumps(call["request"]),
                               content_type="application/json")
        assert response.status_code == 200
        cards.extend(response.get_json()["cards"])
    return cards


def shown_cards(page: Any) -> list[dict[str, str]]:
    page.wait_for_selector("#cards article.card", timeout=TIMEOUT_MS)
    cards = []
    for card in page.locator("#cards article.card").all():
        assert card.is_visible()
        cards.append({
            "topic": card.get_attribute("data-topic"),
            "indicator": card.get_attribute("data-indicator"),
            "summary": card.locator(".card-summary").inner_text().strip(),
            "badge": card.locator(".badge").inner_text().strip().lower(),
            "colour": card.evaluate("e => getComputedStyle(e).borderLeftColor"),
        })
    return cards


def assert_cards_match(shown: list[dict[str, str]], expected: list[dict[str, Any]]) -> None:
    order = {"critical": 0, "warning": 1, "info": 2}
    assert [(c["topic"], c["indicator"], c["summary"]) for c in shown] == [
        (c["source"]["topic"]["code"], c["indicator"], c["summary"])
        for c in sorted(expected, key=lambda c: order[c["indicator"]])
    ]
    for card in shown:
        assert card["badge"].endswith(card["indicator"])
    colours = {c["indicator"]: c["colour"] for c in shown}
    assert len(set(colours.values())) == len(colours), "each indicator has its own colour"


def timeline_points(page: Any) -> list[dict[str, str | None]]:
    return [
        {"date": g.get_attribute("data-date"), "used": g.get_attribute("data-used")}
        for g in page.locator("#timeline svg g.ck-point").all()
    ]


def ck_dates(name: str) -> list[str]:
    record = SHIPPED.get(name).record
    return sorted(
        e["resource"]["effectiveDateTime"][:10] for e in record["entry"]
        if e["resource"]["resourceType"] == "Observation"
        and e["resource"]["code"]["coding"][0]["code"] == "2157-6"
    )


def settings_for(settings: Any, name: str) -> Any:
    return settings.with_overrides(today=SHIPPED.get(name).today)


def test_patient_view_picked_from_the_list(serve, make_app, settings, browser: Browser):
    name = "statin-ck-over-10x"
    server = serve(settings_for(settings, name))
    page = browser.page
    page.goto(server.url + "/try?example=remission-on-ivig")
    shown_cards(page)
    # Pick the example as a person does: the page reloads with the state in its URL.
    with page.expect_navigation():
        page.select_option("#example", name)
    assert f"example={name}" in page.url
    shown = shown_cards(page)
    assert_cards_match(shown, expected_cards(make_app, settings_for(settings, name),
                                             {"example": name}))
    assert {(c["topic"], c["indicator"]) for c in shown} == {
        ("STAT-01", "critical"), ("STAT-02", "critical")}
    # The timeline: one point per usable CK, the recent one the cards used highlighted.
    points = timeline_points(page)
    assert sorted(p["date"] for p in points) == ck_dates(name)
    assert [p["date"] for p in points if p["used"] == "true"] == ["2025-06-28"]
    # Beside the cards, the exact exchange: request and a 200 response with the same cards.
    exchange = page.locator(".exchange[data-service='myopathy-review']")
    assert exchange.locator(".status").inner_text().startswith("200")
    request = json.loads(exchange.locator(".request-json").inner_text())
    assert request["hook"] == "patient-view" and "prefetch" in request
    response = json.loads(exchange.locator(".response-json").inner_text())
    assert [c["summary"] for c in response["cards"]] == [c["summary"] for c in shown]
    screenshot(page, "try-patient-view-statin-ck-over-10x")
    assert browser.errors == []


def test_statin_order_select_and_a_lab_suggestion(serve, make_app, settings,
                                                  browser: Browser):
    name = "statin-ck-4-to-10x"
    server = serve(settings_for(settings, name))
    page = browser.page
    page.goto(server.url + f"/try?example={name}&hook=patient-view")
    shown_cards(page)
    with page.expect_navigation():
        page.check("input[name=hook][value=order-select]")
    assert "hook=order-select" in page.url and "product=atorvastatin-40" in page.url
    shown = shown_cards(page)
    assert_cards_match(shown, expected_cards(make_app, settings_for(settings, name), {
        "example": name, "hook": "order-select", "product": "atorvastatin-40"}))
    assert [(c["topic"], c["indicator"]) for c in shown] == [("STAT-03", "warning")]
    # Clicking a suggestion shows the FHIR resource it would create.
    card = page.locator("#cards article.card[data-topic='STAT-03']")
    button = card.locator("button.suggestion").first
    panel_id = button.get_attribute("aria-controls")
    assert page.locator(f"#{panel_id}").is_hidden()
    button.click()
    panel = page.locator(f"#{panel_id}")
    assert panel.is_visible() and button.get_attribute("aria-expanded") == "true"
    assert panel.locator(".action-type").first.inner_text().lower() == "create"
    resource = json.loads(panel.locator(".resource-json").first.inner_text())
    assert resource["resourceType"] == "ServiceRequest" and resource["status"] == "draft"
    assert resource["code"]["coding"][0]["code"] in ("2157-6", "3016-3")  # CK or TSH
    assert resource["subject"] == {"reference": f"Patient/{SHIPPED.get(name).patient_id}"}
    # Dismissing with an override reason greys the card out and says why.
    card.locator("select.override-reason").select_option(index=1)
    card.locator("button.dismiss").click()
    assert "card--dismissed" in (card.get_attribute("class") or "")
    assert card.locator(".dismissed-note").inner_text().startswith("Dismissed: ")
    points = timeline_points(page)
    assert sorted(p["date"] for p in points) == ck_dates(name)
    screenshot(page, "try-order-select-statin-ck-4-to-10x")
    assert browser.errors == []


def test_ivig_order_sign_edit_the_dose_and_apply_a_suggestion(serve, make_app, settings,
                                                               browser: Browser):
    name = "obese-first-ivig-dose"
    server = serve(settings_for(settings, name))
    page = browser.page
    page.goto(server.url + "/try")
    shown_cards(page)
    with page.expect_navigation():
        page.select_option("#example", name)
    # The example opens on its own hook and draft, and the URL names all of it.
    assert page.url.endswith(f"/try?example={name}&hook=order-sign&product=octagam&dose=40&days=5")
    shown = shown_cards(page)
    query = {"example": name}
    assert_cards_match(shown, expected_cards(make_app, settings_for(settings, name), query))
    assert {(c["topic"], c["indicator"]) for c in shown} == {
        ("DOSE-01", "info"), ("DOSE-02", "warning"), ("DOSE-03", "warning"), ("IGA-03", "info")}
    assert page.locator("#dose").input_value() == "40"
    assert sorted(p["date"] for p in timeline_points(page)) == ck_dates(name)
    assert page.locator("#days").input_value() == "5"
    # DOSE-02's suggestion updates the draft to the dose on the dosing weight.
    card = page.locator("#cards article.card[data-topic='DOSE-02']")
    card.locator("button.suggestion").first.click()
    action = card.locator(".suggestion-actions .action").first
    assert action.get_attribute("data-action-type") == "update"
    resource = json.loads(action.locator(".resource-json").inner_text())
    assert resource["resourceType"] == "MedicationRequest" and resource["id"] == "try-it-draft"
    new_dose = resource["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"]
    assert 0 < new_dose < 40
    screenshot(page, "try-order-sign-obese-first-ivig-dose")
    # Dismissed with no reason picked: the feedback carries no overrideReason at all.
    iga = page.locator("#cards article.card[data-topic='IGA-03']")
    iga.locator("button.dismiss").click()
    sent = page.locator(".exchange--feedback[data-outcome='overridden']")
    sent.locator(".status[data-status='200']").wait_for(timeout=TIMEOUT_MS)
    (item,) = json.loads(sent.locator(".request-json").inner_text())["feedback"]
    assert item["card"] == iga.get_attribute("data-uuid") and "overrideReason" not in item
    # Edit the order as the suggestion says: the over-dose cards go, the calculation stays.
    page.fill("#dose", str(new_dose))
    with page.expect_navigation():
        page.click("button[type=submit]")
    assert f"dose={new_dose}" in page.url and "days=5" in page.url
    edited = shown_cards(page)
    assert {(c["topic"], c["indicator"]) for c in edited} == {("DOSE-01", "info"),
                                                              ("IGA-03", "info")}
    assert_cards_match(edited, expected_cards(make_app, settings_for(settings, name), {
        "example": name, "hook": "order-sign", "product": "octagam", "dose": str(new_dose),
        "days": "5"}))
    assert page.locator("#timeline svg g.draft-mark").count() == 1
    assert browser.errors == []


RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def feedback_sent(page: Any, outcome: str) -> tuple[dict[str, Any], Any]:
    """The one feedback item the page posted with this outcome, once its 200 came back."""
    box = page.locator(f".exchange--feedback[data-outcome='{outcome}']")
    box.locator(".status[data-status='200']").wait_for(timeout=TIMEOUT_MS)
    assert box.count() == 1
    assert box.locator("summary code").inner_text() == "/cds-services/myopathy-review/feedback"
    assert json.loads(box.locator(".response-json").inner_text()) == {}
    body = json.loads(box.locator(".request-json").inner_text())
    assert list(body) == ["feedback"] and len(body["feedback"]) == 1
    return body["feedback"][0], box


def test_dismiss_and_accept_send_feedback_to_the_issuing_service(serve, settings,
                                                                 browser: Browser):
    name = "statin-ck-over-10x"
    server = serve(settings_for(settings, name))
    page = browser.page
    answer = page.goto(server.url + f"/try?example={name}")
    # The page's own policy lets it post only to its origin, which is where the feedback goes.
    assert "connect-src 'self'" in answer.headers["content-security-policy"]
    shown_cards(page)
    issued = json.loads(page.locator(".exchange[data-service='myopathy-review'] .response-json")
                        .inner_text())["cards"]
    by_topic = {c["source"]["topic"]["code"]: c for c in issued}
    store = server.app.extensions["myocds"].store
    assert store.count_feedback() == 0

    # STAT-02 dismissed with the clinician's reason: overridden, the reason as a full Coding.
    stat02 = page.locator("#cards article.card[data-topic='STAT-02']")
    assert stat02.get_attribute("data-uuid") == by_topic["STAT-02"]["uuid"]
    stat02.locator("select.override-reason").select_option(index=2)
    reason = by_topic["STAT-02"]["overrideReasons"][1]
    stat02.locator("button.dismiss").click()
    dismissed, _ = feedback_sent(page, "overridden")
    assert dismissed["card"] == by_topic["STAT-02"]["uuid"]
    assert dismissed["overrideReason"] == {"reason": {
        "code": reason["code"], "system": reason["system"], "display": reason["display"]}}
    assert "acceptedSuggestions" not in dismissed
    assert RFC3339_UTC.match(dismissed["outcomeTimestamp"]), dismissed["outcomeTimestamp"]
    assert stat02.locator(".card-outcome").inner_text().endswith("200 OK")
    assert stat02.locator("button.dismiss").is_disabled()

    # STAT-01: clicking the suggestion only shows it; Accept applies it and sends feedback.
    stat01 = page.locator("#cards article.card[data-topic='STAT-01']")
    stat01.locator("button.suggestion").first.click()
    assert page.locator(".exchange--feedback").count() == 1
    stat01.locator("button.accept").first.click()
    accepted, _ = feedback_sent(page, "accepted")
    suggestion = by_topic["STAT-01"]["suggestions"][0]
    assert accepted == {
        "card": by_topic["STAT-01"]["uuid"],
        "outcome": "accepted",
        "acceptedSuggestions": [{"id": suggestion["uuid"]}],
        "outcomeTimestamp": accepted["outcomeTimestamp"],
    }
    assert RFC3339_UTC.match(accepted["outcomeTimestamp"])
    assert stat01.locator(".card-outcome").inner_text().endswith("200 OK")
    assert stat01.locator("button.accept").first.is_disabled()
    assert stat01.locator("button.dismiss").is_disabled()

    # The service stored both, each joined to the rule of the card it was issued as.
    rows = {row["outcome"]: row for row in store.feedback_rows()}
    assert set(rows) == {"overridden", "accepted"} and store.count_feedback() == 2
    assert store.issued_card(rows["overridden"]["card_uuid"]).topic == "STAT-02"
    assert (rows["overridden"]["override_system"], rows["overridden"]["override_code"]) == (
        reason["system"], reason["code"])
    assert store.issued_card(rows["accepted"]["card_uuid"]).topic == "STAT-01"
    assert rows["accepted"]["accepted_suggestions"] == suggestion["uuid"]
    assert all(row["service_id"] == "myopathy-review" for row in rows.values())
    report = store.rule_report()
    assert (report["STAT-01"].issued, report["STAT-01"].accepted,
            report["STAT-01"].overridden) == (1, 1, 0)
    assert (report["STAT-02"].issued, report["STAT-02"].accepted,
            report["STAT-02"].overridden) == (1, 0, 1)
    assert None not in report  # no feedback on a card the store did not issue
    screenshot(page, "try-feedback-dismiss-and-accept")
    assert browser.errors == []


def test_a_link_reproduces_the_view(serve, settings, browser: Browser):
    name = "first-ivig-no-iga"
    server = serve(settings_for(settings, name))
    url = server.url + f"/try?example={name}&hook=order-select&product=privigen&dose=20&days=3"
    page = browser.page
    page.goto(url)
    shown = shown_cards(page)
    assert page.locator("#product").input_value() == "privigen"
    assert page.locator("input[name=hook][value=order-select]").is_checked()
    request = json.loads(page.locator(".exchange[data-service='ivig-order-select'] .request-json")
                         .inner_text())
    draft = request["context"]["draftOrders"]["entry"][0]["resource"]
    assert draft["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] == 20
    assert draft["dosageInstruction"][0]["timing"]["repeat"]["count"] == 3
    assert request["context"]["selections"] == ["MedicationRequest/try-it-draft"]
    assert ("IGA-01", "warning") in {(c["topic"], c["indicator"]) for c in shown}
    assert browser.errors == []


HOSTILE = {
    "uuid": "0b3cc6a2-0d5c-4b9e-8f0e-2f4c1d7a9e11",
    "summary": "<img src=x onerror=\"window.pwned='summary'\"> CK",
    "indicator": "critical",
    "detail": (
        "<script>window.pwned='script'</script>\n\n"
        "<img src=x onerror=\"window.pwned='img'\">\n\n"
        "[click me](javascript:window.pwned='link') and [ok](https://example.org/x)\n\n"
        "<a href=\"javascript:window.pwned='raw'\">raw</a>"
    ),
    "source": {"label": "<svg onload=\"window.pwned='label'\">",
               "topic": {"system": "https://myocds.dev/fhir/CodeSystem/advice",
                         "code": "STAT-01"}},
    "suggestions": [{"label": "<b onmouseover=\"window.pwned='s'\">go</b>",
                     "uuid": "0b3cc6a2-0d5c-4b9e-8f0e-2f4c1d7a9e12",
                     "actions": [{"type": "create", "description": "x",
                                  "resource": {"resourceType": "ServiceRequest",
                                               "note": [{"text": "</pre><script>window.pwned="
                                                                 "'pre'</script>"}]}}]}],
    "selectionBehavior": "at-most-one",
}


def test_hostile_card_content_is_inert_in_the_browser(serve, settings, browser: Browser):
    server = serve(settings)
    page = browser.page
    page.goto(server.url + "/try?example=statin-ck-over-10x")
    shown_cards(page)
    page.evaluate(
        "response => window.myocdsTryIt.showCards([{serviceId: 'x', response: response}])",
        {"cards": [HOSTILE]},
    )
    page.wait_for_selector("#cards article.card[data-indicator='critical']")
    card = page.locator("#cards article.card").first
    card.locator("button.suggestion").click()
    card.locator("button.suggestion").hover()
    page.locator("#cards a", has_text="ok").hover()
    assert page.evaluate("window.pwned") is None
    assert page.locator("#cards script, #cards img, #cards svg, #cards b").count() == 0
    hrefs = page.locator("#cards a").evaluate_all("links => links.map(a => a.href)")
    assert hrefs == ["https://example.org/x"]
    # The text is shown as written, not interpreted.
    assert "<script>window.pwned='script'</script>" in card.locator(".card-detail").inner_text()
    assert "[click me](javascript:" in card.locator(".card-detail").inner_text()
    screenshot(page, "try-hostile-card-inert")
    assert browser.errors == []


def test_with_authentication_on_the_page_says_why_no_cards(serve, settings, browser: Browser):
    server = serve(settings.with_overrides(auth="required", try_pages=True,
                                           today=SHIPPED.get("statin-ck-over-10x").today))
    page = browser.page
    page.goto(server.url + "/try?example=statin-ck-over-10x")
    assert page.locator("#auth-note").is_visible()
    page.wait_for_selector("#cards .call-failed", timeout=TIMEOUT_MS)
    assert "401 Unauthorized" in page.locator("#cards .call-failed").inner_text()
    assert page.locator("#cards article.card").count() == 0
    assert page.locator(".exchange .status").first.inner_text().startswith("401")
    assert page.locator("#timeline svg g.ck-point").count() == len(ck_dates("statin-ck-over-10x"))
    screenshot(page, "try-auth-on")
    # The browser reports the refused call as a failed resource load; nothing else went wrong.
    assert all("401" in e for e in browser.errors), browser.errors


def test_card_gallery(serve, settings, browser: Browser):
    server = serve(settings)
    page = browser.page
    page.goto(server.url + "/try/rules")
    sections = page.locator("section.rule")
    assert sections.count() >= 23
    assert page.locator("section.rule--uncovered").count() == 0
    assert page.locator("#coverage").inner_text().startswith("All ")
    links = page.locator("section.rule a.source-link").evaluate_all(
        "links => links.map(a => a.href)")
    assert links and all(re.match(r"^https://[^/]+\.[^/]+", href) for href in links)
    screenshot(page, "try-card-gallery", full_page=False)
    # Suggestions work here too (same card drawing, same script).
    first = page.locator("section.rule button.suggestion").first
    first.click()
    assert page.locator("#" + first.get_attribute("aria-controls")).is_visible()
    page.locator("#DOSE-02").scroll_into_view_if_needed()
    screenshot(page, "try-card-gallery-dose-02", full_page=False)
    assert browser.errors == []
