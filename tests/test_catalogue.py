"""The start-up check of hooks, rules, services and card templates (``cds_service.catalogue``):
every disagreement stops the service with a message naming the rule, service or hook at fault."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from cds_service import create_app
from cds_service.advice import RULES
from cds_service.cards_render import Templates, load_templates
from cds_service.cards_render.templates import DEFAULT_CARDS_DIR
from cds_service.catalogue import Catalogue
from cds_service.cli import main
from cds_service.errors import ConfigurationError
from cds_service.hooks import HOOKS, HookDeclaration
from cds_service.services import SERVICES, ServiceDeclaration
from cds_service.settings import Settings


@pytest.fixture(scope="module")
def templates() -> Templates:
    return load_templates()


def with_services(*services: ServiceDeclaration) -> Catalogue:
    return Catalogue(HOOKS, RULES, services)


def without_rule(rule_id: str, service_id: str) -> tuple[ServiceDeclaration, ...]:
    return tuple(
        replace(s, rules=tuple(r for r in s.rules if r != rule_id)) if s.id == service_id else s
        for s in SERVICES
    )


def test_the_shipped_declarations_agree(templates: Templates) -> None:
    assert Catalogue.shipped().problems(templates) == []
    # Every rule has a template and the templates are exactly the rules.
    assert set(templates.cards) == set(RULES.ids())


def test_each_rule_answers_the_hooks_its_template_names(templates: Templates) -> None:
    for rule in RULES:
        assert set(templates[rule.id].hooks) == rule.hooks, rule.id


def test_a_rule_left_out_of_its_service_is_named(templates: Templates) -> None:
    catalogue = with_services(*without_rule("STAT-04", "myopathy-review"))
    assert catalogue.problems(templates) == [
        "rule STAT-04 answers patient-view but no patient-view service runs it "
        "(add it to a service in services.py)"
    ]


def test_a_rule_left_out_of_one_hooks_services_only(templates: Templates) -> None:
    # STAT-06 answers both order hooks: dropping it from order-sign's statin service is named.
    catalogue = with_services(*without_rule("STAT-06", "statin-order-check"))
    assert catalogue.problems(templates) == [
        "rule STAT-06 answers order-sign but no order-sign service runs it "
        "(add it to a service in services.py)"
    ]


def test_an_undeclared_rule_or_hook_on_a_service_is_named(templates: Templates) -> None:
    typo = replace(SERVICES[0], rules=(*SERVICES[0].rules, "STAT-07"))
    stray = replace(SERVICES[1], id="discharge", hook="encounter-discharge")  # type: ignore[arg-type]
    problems = with_services(typo, *SERVICES[1:], stray).problems(templates)
    assert problems == [
        "service myopathy-review: rule STAT-07 is not declared (no @rule)",
        "service discharge: hook encounter-discharge is not declared (hooks.py)",
    ]


def test_a_prefetch_template_the_hook_cannot_fill_is_named(templates: Templates) -> None:
    no_patient = HookDeclaration(name="ping", title="Ping", fields=("userId",), required=())
    service = replace(SERVICES[0], id="ping-check", hook="ping")  # type: ignore[arg-type]
    catalogue = Catalogue(HOOKS.plus(no_patient), RULES, (*SERVICES, service))
    problems = catalogue.problems(templates)
    assert "service ping-check: prefetch patient uses a context field ping does not carry" in (
        problems
    )
    assert len(problems) == len(service.prefetch_keys)


def test_the_service_does_not_start_when_they_disagree(settings: Settings) -> None:
    catalogue = with_services(*without_rule("HMG-03", "myopathy-review"))
    with pytest.raises(ConfigurationError) as raised:
        create_app(settings, catalogue=catalogue)
    assert "rule HMG-03 answers patient-view but no patient-view service runs it" in str(
        raised.value
    )


def copy_cards(tmp_path: Path) -> Path:
    cards = tmp_path / "cards"
    shutil.copytree(DEFAULT_CARDS_DIR, cards)
    return cards


def test_a_template_whose_hooks_differ_from_its_rule_stops_start_up_and_myocds_rules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cards = copy_cards(tmp_path)
    path = cards / "STAT-04.json"
    template = json.loads(path.read_text(encoding="utf-8"))
    template["hooks"] = ["patient-view", "order-sign"]
    path.write_text(json.dumps(template), encoding="utf-8")
    expected = (
        "rule STAT-04: its card template's hooks (patient-view, order-sign) differ from its "
        "@rule declaration (patient-view)"
    )
    monkeypatch.setenv("MYOCDS_CARDS_DIR", str(cards))
    with pytest.raises(ConfigurationError) as raised:
        create_app(settings)
    assert expected in str(raised.value)
    assert main(["rules", "--cards-dir", str(cards)]) == 1
    assert expected in capsys.readouterr().err


def test_a_template_without_a_rule_is_named(tmp_path: Path) -> None:
    cards = copy_cards(tmp_path)
    shutil.copy(cards / "STAT-04.json", cards / "STAT-99.json")
    template = json.loads((cards / "STAT-99.json").read_text(encoding="utf-8"))
    (cards / "STAT-99.json").write_text(json.dumps({**template, "rule": "STAT-99"}))
    problems = Catalogue.shipped().problems(load_templates(cards, mappings_dir=None))
    assert problems == ["card template STAT-99.json: no rule STAT-99 is declared (@rule)"]


def test_a_rule_without_a_template_is_named(tmp_path: Path) -> None:
    cards = copy_cards(tmp_path)
    (cards / "CONT-04.json").unlink()
    problems = Catalogue.shipped().problems(load_templates(cards, mappings_dir=None))
    assert problems == ["rule CONT-04: no card template (cards/CONT-04.json)"]
