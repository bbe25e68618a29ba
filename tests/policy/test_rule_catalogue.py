"""The versioned rule catalogue (issue 15): each rule's version, status and review in its card
template; the catalogue version in the advice CodeSystem, on every card's source.topic and in
discovery; a draft rule gives cards on the try-it pages only, a retired one nowhere."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest
from flask import Flask

from cds_service.cards_render import load_templates
from cds_service.cards_render.templates import DEFAULT_CARDS_DIR, DEFAULT_MAPPINGS_DIR
from cds_service.cli import main
from cds_service.errors import ConfigurationError
from cds_service.protocol.routes import CATALOGUE_EXTENSION
from cds_service.settings import Settings

from .conftest import TODAY, card_of, example_call

CODESYSTEM = json.loads(
    (DEFAULT_MAPPINGS_DIR / "CodeSystem-myocds-advice.json").read_text(encoding="utf-8")
)
CATALOGUE_VERSION = CODESYSTEM["version"]


def test_every_shipped_rule_carries_version_status_and_review() -> None:
    templates = load_templates()
    for rule in templates:
        template = templates[rule]
        assert template.version and template.version.count(".") == 2, rule
        assert template.status in ("draft", "active", "retired"), rule
        if template.status != "draft":
            assert template.reviewed_by and isinstance(template.reviewed_on, date), rule
    assert templates.catalogue_version == CATALOGUE_VERSION


def test_discovery_carries_the_catalogue_version_in_an_extension(client) -> None:
    services = client.get("/cds-services").get_json()["services"]
    assert services
    for service in services:
        assert service["extension"][CATALOGUE_EXTENSION] == {
            "system": CODESYSTEM["url"], "version": CATALOGUE_VERSION,
        }


def test_every_card_of_every_example_carries_the_catalogue_version(make_app, settings) -> None:
    from cds_service.services import services_for_hook
    from cds_service.tryit.examples import View, load_examples, request_body

    client = make_app(settings.with_overrides(today=TODAY)).test_client()
    seen = 0
    for example in load_examples():
        view = View(example, example.hook, example.draft)
        for service in services_for_hook(view.hook):
            response = client.post(f"/cds-services/{service.id}",
                                   json=request_body(view, service, example.today))
            for card in response.get_json()["cards"]:
                assert card["source"]["topic"]["version"] == CATALOGUE_VERSION
                seen += 1
    assert seen > 20


# --- draft and retired rules -----------------------------------------------------------------


@pytest.fixture
def cards_with(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """A copy of the shipped cards/ with some rules' status changed, used by the service."""

    def change(**statuses: str) -> None:
        directory = tmp_path / "cards"
        shutil.copytree(DEFAULT_CARDS_DIR, directory)
        for rule, status in statuses.items():
            path = directory / f"{rule.replace('_', '-')}.json"
            template = json.loads(path.read_text(encoding="utf-8"))
            template["status"] = status
            path.write_text(json.dumps(template), encoding="utf-8")
        monkeypatch.setenv("MYOCDS_CARDS_DIR", str(directory))

    return change


def _try_app(make_app: Callable[[Settings], Flask], settings: Settings) -> Flask:
    return make_app(settings.with_overrides(today=TODAY, try_pages=True))


def test_a_draft_rule_fires_on_the_try_pages_only(cards_with, make_app, settings) -> None:
    cards_with(STAT_01="draft")
    client = _try_app(make_app, settings).test_client()
    body = example_call("statin-ck-over-10x", "myopathy-review")
    cards = client.post("/cds-services/myopathy-review", json=body).get_json()["cards"]
    assert card_of(cards, "STAT-01") is None  # a draft never reaches an EHR
    assert card_of(cards, "STAT-02") is not None  # the active rules still do
    gallery = client.get("/try/rules").get_data(as_text=True)
    assert 'data-topic="STAT-01"' in gallery  # the review gallery shows the draft's card


def test_a_retired_rule_fires_nowhere(cards_with, make_app, settings) -> None:
    cards_with(STAT_01="retired")
    client = _try_app(make_app, settings).test_client()
    body = example_call("statin-ck-over-10x", "myopathy-review")
    cards = client.post("/cds-services/myopathy-review", json=body).get_json()["cards"]
    assert card_of(cards, "STAT-01") is None and card_of(cards, "STAT-02") is not None
    assert 'data-topic="STAT-01"' not in client.get("/try/rules").get_data(as_text=True)


def test_an_active_rule_without_review_stops_start_up(tmp_path: Path) -> None:
    directory = tmp_path / "cards"
    shutil.copytree(DEFAULT_CARDS_DIR, directory)
    path = directory / "CONT-02.json"
    template = json.loads(path.read_text(encoding="utf-8"))
    del template["reviewedBy"]
    path.write_text(json.dumps(template), encoding="utf-8")
    with pytest.raises(ConfigurationError, match=r"CONT-02.json: status 'active' needs reviewedBy"):
        load_templates(directory)


def test_myocds_rules_prints_versions_and_review_status(
    cards_with, capsys: pytest.CaptureFixture[str]
) -> None:
    cards_with(CONT_02="draft")
    assert main(["rules"]) == 0
    out = capsys.readouterr().out
    cont02 = next(line for line in out.splitlines() if line.startswith("CONT-02 "))
    assert " draft " in cont02
    stat01 = next(line for line in out.splitlines() if line.startswith("STAT-01 "))
    template = load_templates()["STAT-01"]
    assert f" {template.version} " in stat01 and " active " in stat01
    assert f"{template.reviewed_on} by {template.reviewed_by}" in stat01
    assert f"rule catalogue version {CATALOGUE_VERSION}" in out
    assert "(1 draft, 23 active)" in out
