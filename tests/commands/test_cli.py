"""``myocds call`` against the app served on a real loopback port, and ``myocds feedback-report``
over a store filled through the HTTP API."""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from werkzeug.serving import make_server

from cds_service.cli import main
from cds_service.commands.call import Printer, markdown_to_text
from cds_service.commands.report import NOT_ISSUED, feedback_report
from cds_service.services import services_for_hook
from cds_service.settings import Settings
from tests.support.fhir_server import FhirTestServer
from tests.support.records import scenario_body

REPO_ROOT = Path(__file__).resolve().parents[2]
SCENARIO_DIR = Path(
    os.environ.get("MYOCDS_SCENARIOS_DIR", REPO_ROOT.parent / "shared" / "scenarios")
)
TODAY = date(2025, 7, 1)  # the date every scenario is written for


def scenario_path(name: str) -> Path:
    path = SCENARIO_DIR / f"{name}.json"
    if not path.is_file():
        pytest.skip(f"scenario {name} not found in {SCENARIO_DIR}")
    return path


@pytest.fixture
def served(
    settings: Settings, make_app: Callable[[Settings], Flask], tmp_path: Path
) -> Iterator[tuple[str, Flask, list[FhirTestServer]]]:
    """The app on a free loopback port (werkzeug, threaded), today pinned to the scenarios'.

    A FHIR server for the --no-prefetch test is started first so its base can be allowed.
    """
    record = json.loads(scenario_path("first-ivig-obese-no-iga").read_text())["record"]
    fhir = FhirTestServer(record=record).start()
    app = make_app(settings.with_overrides(today=TODAY, fhir_allow=(fhir.base_url,)))
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", app, [fhir]
    finally:
        server.shutdown()
        thread.join(timeout=10)
        fhir.stop()


def expected_pairs(path: Path) -> set[tuple[str, str]]:
    scenario = json.loads(path.read_text())
    return {(e["topic"], e["indicator"]) for e in scenario["expect"]["present"]}


def printed_pairs(output: str) -> set[tuple[str, str]]:
    """(topic, indicator) of every card line: "[WARNING] summary  (DOSE-02)"."""
    pairs = set()
    for line in output.splitlines():
        if line.startswith("[") and line.endswith(")"):
            indicator = line[1:line.index("]")].lower()
            topic = line[line.rindex("(") + 1:-1]
            pairs.add((topic, indicator))
    return pairs


def test_call_with_a_scenario_prints_its_cards(
    served: tuple[str, Flask, list[FhirTestServer]], capsys: pytest.CaptureFixture[str]
) -> None:
    url, _, _ = served
    path = scenario_path("first-ivig-obese-no-iga")
    code = main(["call", "--hook", "order-sign", "--record", str(path), "--url", url])
    output = capsys.readouterr().out
    assert code == 0, output
    assert expected_pairs(path) <= printed_pairs(output)
    assert "\x1b[" not in output  # not a terminal: no colour codes
    # Both order-sign services were called (discovery first) and each said how many cards.
    for service in services_for_hook("order-sign"):
        assert f"({service.id}): " in output
    # Suggestions with their action and resource types, override reasons, detail as text.
    assert "Suggestion: " in output
    assert any(line.strip().startswith(("- create ", "- update ", "- delete "))
               for line in output.splitlines())
    assert "Override reasons: " in output
    assert "**" not in output
    total = sum(1 for line in output.splitlines() if line.startswith("["))
    assert output.rstrip().splitlines()[-1].startswith(f"{total} cards: ")


def test_call_with_a_bundle_and_a_draft_file_equals_the_scenario(
    served: tuple[str, Flask, list[FhirTestServer]],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    url, _, _ = served
    scenario = json.loads(scenario_path("first-ivig-obese-no-iga").read_text())
    record = tmp_path / "record.json"
    record.write_text(json.dumps(scenario["record"]))
    draft = tmp_path / "draft.json"
    # One drafted resource, not a Bundle: the mini-EHR wraps it.
    draft.write_text(json.dumps(scenario["context"]["draftOrders"]["entry"][0]["resource"]))
    code = main(["call", "--hook", "order-sign", "--record", str(record), "--draft", str(draft),
                 "--url", url])
    output = capsys.readouterr().out
    assert code == 0, output
    assert expected_pairs(scenario_path("first-ivig-obese-no-iga")) <= printed_pairs(output)


def test_call_without_prefetch_lets_the_service_fetch(
    served: tuple[str, Flask, list[FhirTestServer]], capsys: pytest.CaptureFixture[str]
) -> None:
    url, _, [fhir] = served
    path = scenario_path("first-ivig-obese-no-iga")
    assert main(["call", "--hook", "order-sign", "--record", str(path), "--url", url]) == 0
    with_prefetch = printed_pairs(capsys.readouterr().out)
    code = main(["call", "--hook", "order-sign", "--record", str(path), "--url", url,
                 "--no-prefetch", "--fhir-server", fhir.base_url])
    output = capsys.readouterr().out
    assert code == 0, output
    assert fhir.request_count > 0  # the service fetched what the EHR did not send
    assert printed_pairs(output) == with_prefetch


def test_call_reports_refusals_and_unusable_input(
    served: tuple[str, Flask, list[FhirTestServer]],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    url, _, _ = served
    path = scenario_path("statin-ck-over-40x")
    # An order hook without drafted orders cannot be built.
    assert main(["call", "--hook", "order-sign", "--record", str(path), "--url", url]) == 2
    assert "needs drafted orders" in capsys.readouterr().err
    # A service that refuses: fhirServer not allowed and no prefetch -> 412 from every service.
    code = main(["call", "--hook", "patient-view", "--record", str(path), "--url", url,
                 "--no-prefetch", "--fhir-server", "https://fhir.not-allowed.example/r4"])
    output = capsys.readouterr().out
    assert code == 1
    assert "HTTP 412" in output
    # Nothing listening.
    closed = "http://127.0.0.1:9"
    assert main(["call", "--hook", "patient-view", "--record", str(path), "--url", closed]) == 2
    assert "cannot reach" in capsys.readouterr().err
    not_json = tmp_path / "x.json"
    not_json.write_text("{")
    assert main(["call", "--hook", "patient-view", "--record", str(not_json), "--url", url]) == 2
    assert "is not JSON" in capsys.readouterr().err


def test_cards_are_coloured_by_indicator_on_a_terminal() -> None:
    import io

    out = io.StringIO()
    printer = Printer(out, colour=True)
    for indicator in ("critical", "warning", "info"):
        printer.card({"indicator": indicator, "summary": f"a {indicator} card",
                      "source": {"label": "x", "topic": {"code": "T-1"}}})
    text = out.getvalue()
    assert "\x1b[1;97;41m CRITICAL \x1b[0m" in text
    assert "\x1b[1;30;43m WARNING \x1b[0m" in text
    assert "\x1b[1;97;44m INFO \x1b[0m" in text


def test_markdown_detail_becomes_text() -> None:
    markdown = "**Stop** the statin: see [ACC 2013](https://example.org/acc) and `CK` 10\\×ULN"
    assert markdown_to_text(markdown) == (
        "Stop the statin: see ACC 2013 <https://example.org/acc> and CK 10\\×ULN"
    )
    assert markdown_to_text("a \\* b \\| c") == "a * b | c"


# --- feedback-report -------------------------------------------------------------------------


def _post(client: Any, path: str, body: dict[str, Any]) -> Any:
    response = client.post(path, data=json.dumps(body), content_type="application/json")
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_feedback_report_over_feedback_posted_through_the_api(
    settings: Settings,
    make_app: Callable[[Settings], Flask],
    scenarios: dict[str, dict[str, Any]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    if "shared/first-ivig-obese-no-iga" not in scenarios:
        pytest.skip("scenario shared/first-ivig-obese-no-iga not found")
    app = make_app(settings.with_overrides(today=TODAY))
    client = app.test_client()
    scenario = scenarios["shared/first-ivig-obese-no-iga"]
    [service] = [s for s in services_for_hook("order-sign") if s.id == "ivig-order-check"]
    by_topic: dict[str, list[str]] = {}
    for _ in range(4):  # the same order signed four times: four cards per rule
        for card in _post(client, f"/cds-services/{service.id}",
                          scenario_body(service, scenario))["cards"]:
            by_topic.setdefault(card["source"]["topic"]["code"], []).append(card["uuid"])
    assert {"IGA-01", "DOSE-02"} <= set(by_topic)

    def feedback(card: str, outcome: str, reason: str | None = None) -> dict[str, Any]:
        item: dict[str, Any] = {"card": card, "outcome": outcome,
                                "outcomeTimestamp": "2025-07-01T10:00:00Z"}
        if outcome == "accepted":
            item["acceptedSuggestions"] = [{"id": str(uuid.uuid4())}]
        if reason:
            item["overrideReason"] = {"reason": {
                "system": "https://myocds.dev/fhir/CodeSystem/override-reason", "code": reason}}
        return item

    iga, dose = by_topic["IGA-01"], by_topic["DOSE-02"]
    items = [
        feedback(iga[0], "accepted"), feedback(iga[1], "accepted"),
        feedback(iga[2], "overridden", "iga-known"),
        feedback(dose[0], "overridden", "dose-intended"),
        feedback(dose[1], "overridden", "dose-intended"),
        feedback(str(uuid.uuid4()), "accepted"),  # a card this store never issued
    ]
    path = f"/cds-services/{service.id}/feedback"
    _post(client, path, {"feedback": items})
    _post(client, path, {"feedback": items[:2]})  # sent again: counted once

    url = settings.database_url
    reports = {r.topic: r for r in feedback_report(url)}
    assert (reports["IGA-01"].issued, reports["IGA-01"].with_feedback) == (4, 3)
    assert (reports["IGA-01"].accepted, reports["IGA-01"].overridden) == (2, 1)
    assert reports["IGA-01"].acceptance_rate == pytest.approx(2 / 3)
    assert reports["IGA-01"].override_reasons == {"iga-known": 1}
    assert (reports["DOSE-02"].accepted, reports["DOSE-02"].overridden) == (0, 2)
    assert reports["DOSE-02"].override_rate == 1.0
    assert reports["DOSE-02"].override_reasons == {"dose-intended": 2}
    assert (reports[NOT_ISSUED].issued, reports[NOT_ISSUED].accepted) == (0, 1)
    untouched = [t for t in by_topic if t not in ("IGA-01", "DOSE-02")]
    for topic in untouched:
        assert (reports[topic].issued, reports[topic].with_feedback) == (4, 0)
        assert reports[topic].acceptance_rate is None

    assert main(["feedback-report", "--database-url", url]) == 0
    table = capsys.readouterr().out
    iga_line = next(line for line in table.splitlines() if line.startswith("IGA-01 "))
    # rule, version, shown, answered, accepted, overridden, no answer, acceptance (issue 15)
    assert iga_line.split() == ["IGA-01", "2.0.0", "4", "3", "2", "1", "1", "67", "%"]
    assert "DOSE-02: dose-intended 2" in table
    assert main(["feedback-report", "--database-url", url, "--format", "json"]) == 0
    as_json = {r["topic"]: r for r in json.loads(capsys.readouterr().out)}
    assert as_json["DOSE-02"]["override_rate"] == 1.0


def test_feedback_report_on_an_empty_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'empty.sqlite3'}"
    assert main(["feedback-report", "--database-url", url]) == 0
    assert "No cards issued" in capsys.readouterr().out


def test_feedback_report_with_the_database_down_says_so_and_exits_1(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["feedback-report", "--database-url",
                 "postgresql+psycopg://myocds@127.0.0.1:1/gone"]) == 1
    # (A JSON log line may come before it when an app of this process installed logging.)
    assert capsys.readouterr().err.splitlines()[-1] == (
        "myocds feedback-report: the feedback database cannot be reached; try again later"
    )
