"""The template loader refuses every kind of broken template with a message naming the file and
the problem, and loads a good directory into typed templates."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from cds_service.cards_render import CARDS_DIR_ENV, load_templates
from cds_service.cards_render.templates import contains_raw_html, placeholder_problems
from cds_service.errors import ConfigurationError
from tests.cards_render.conftest import CONT_01, SOURCES, STAT_01, CardsDir


def changed(base: dict[str, Any], **members: Any) -> dict[str, Any]:
    data = copy.deepcopy(base)
    for key, value in members.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    return data


def load_error(directory: Path, **kw: Any) -> str:
    with pytest.raises(ConfigurationError) as caught:
        load_templates(directory, **kw)
    return caught.value.message


def test_good_directory_loads_typed_templates(cards_dir: CardsDir) -> None:
    templates = load_templates(cards_dir())
    assert sorted(templates) == ["CONT-01", "STAT-01"]
    stat = templates["STAT-01"]
    assert stat.indicators == ("critical",)
    assert stat.hooks == ("patient-view", "order-select", "order-sign")
    assert stat.sources == ("EAS15", "SEED1")
    assert stat.plan == "Repeat CK in {repeat_days} days."
    assert stat.suggestions["order-lab:2157-6"] == "Order a repeat CK"
    assert [r.code for r in stat.override_reasons] == ["other-cause", "statin-already-stopped"]
    # A list indicator is kept in urgency order whatever order the file uses.
    assert templates["CONT-01"].indicators == ("warning", "info")
    assert templates.sources["SEED1"].is_seed
    assert not templates.sources["EAS15"].is_seed


@pytest.mark.parametrize(
    ("missing", "message"),
    [
        ("rule", "'rule' is a required property"),
        ("display", "'display' is a required property"),
        ("hooks", "'hooks' is a required property"),
        ("indicator", "'indicator' is a required property"),
        ("summary", "'summary' is a required property"),
        ("reasoning", "'reasoning' is a required property"),
        ("sources", "'sources' is a required property"),
        ("overrideReasons", "'overrideReasons' is a required property"),
    ],
)
def test_missing_required_member_is_refused(
    cards_dir: CardsDir, missing: str, message: str
) -> None:
    error = load_error(cards_dir({"STAT-01": changed(STAT_01, **{missing: None})}))
    assert f"cards/STAT-01.json: {message}" in error
    assert "CONT-01" not in error  # only the broken file is named


@pytest.mark.parametrize(
    ("members", "expected"),
    [
        ({"indicator": "urgent"}, "indicator"),
        ({"hooks": ["Order Sign"]}, "hooks/0"),  # a declared hook is checked at start-up
        ({"hooks": []}, "hooks"),
        ({"summary": ""}, "summary"),
        ({"summary": "two\nlines"}, "summary"),
        ({"sources": []}, "sources"),
        ({"suggestions": {"order-lab:1234-5": "Order"}}, "'order-lab:1234-5' does not match"),
        ({"suggestions": {"cancel": "Cancel"}}, "'cancel' does not match"),
        ({"overrideReasons": [{"code": "other-cause"}]}, "'display' is a required property"),
        ({"overrideReasons": [{"display": "Other"}]}, "'code' is a required property"),
        ({"overrideReasons": []}, "overrideReasons"),
        ({"overideReasons": []}, "'overideReasons' was unexpected"),  # a typo is caught
    ],
)
def test_schema_violations_are_refused(
    cards_dir: CardsDir, members: dict[str, Any], expected: str
) -> None:
    error = load_error(cards_dir({"STAT-01": changed(STAT_01, **members)}))
    assert "cards/STAT-01.json:" in error
    assert expected in error


def test_unknown_source_is_refused(cards_dir: CardsDir) -> None:
    broken = changed(STAT_01, sources=["EAS15", "NOPE99"])
    error = load_error(cards_dir({"STAT-01": broken}))
    assert "cards/STAT-01.json: source 'NOPE99' is not declared in sources.json" in error


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("CK {ck U/L", "malformed placeholder"),
        ("CK ck} U/L", "malformed placeholder"),
        ("CK {} U/L", "empty placeholder"),
        ("CK {0} U/L", "is not a plain name"),
        ("CK {ck.value} U/L", "is not a plain name"),
        ("CK {ck[0]} U/L", "is not a plain name"),
        ("CK {ck!r} U/L", "conversion or format spec"),
        ("CK {ck:>10} U/L", "conversion or format spec"),
    ],
)
def test_bad_placeholder_is_refused(cards_dir: CardsDir, text: str, problem: str) -> None:
    error = load_error(cards_dir({"STAT-01": changed(STAT_01, summary=text)}))
    assert "cards/STAT-01.json: summary:" in error
    assert problem in error


def test_bad_placeholder_in_a_suggestion_label_is_refused(cards_dir: CardsDir) -> None:
    broken = changed(STAT_01, suggestions={"delete-draft": "Cancel {medication"})
    error = load_error(cards_dir({"STAT-01": broken}))
    assert "cards/STAT-01.json: suggestions['delete-draft']: malformed placeholder" in error


def test_literal_braces_are_allowed() -> None:
    assert placeholder_problems("a set {{of}} braces and {value}") == []


@pytest.mark.parametrize(
    "url",
    [
        "/docs/rules.html",  # relative
        "www.example.org/page",  # no scheme
        "http://example.org/page",  # not https
        "https:///path-only",  # no host
        "https://example.org/a page",  # space
        'https://api.fda.gov/drug/label.json?search=set_id:"abc"',  # raw quotes
    ],
)
def test_source_without_absolute_https_url_is_refused(cards_dir: CardsDir, url: str) -> None:
    sources = copy.deepcopy(SOURCES)
    sources["EAS15"]["url"] = url
    error = load_error(cards_dir(sources=sources))
    assert "cards/sources.json:" in error
    assert "source EAS15: url" in error or "EAS15/url" in error


def test_source_with_unknown_kind_is_refused(cards_dir: CardsDir) -> None:
    sources = copy.deepcopy(SOURCES)
    sources["EAS15"]["kind"] = "blog"
    error = load_error(cards_dir(sources=sources))
    assert "cards/sources.json: EAS15/kind: 'blog' is not one of" in error


def test_caution_on_a_source_that_is_not_a_seed_is_refused(cards_dir: CardsDir) -> None:
    sources = copy.deepcopy(SOURCES)
    sources["EAS15"]["caution"] = "not peer reviewed"
    error = load_error(cards_dir(sources=sources))
    assert "cards/sources.json: source EAS15: caution applies to seed sources only" in error


def test_seed_caution_defaults_to_the_ai_generated_expert_summary(cards_dir: CardsDir) -> None:
    sources = copy.deepcopy(SOURCES)
    loaded = load_templates(cards_dir(sources=sources)).sources
    assert loaded["SEED1"].caution == "expert summary (AI-generated, not peer reviewed)"
    sources["SEED1"]["caution"] = "pharmacy information page (not peer reviewed)"
    loaded = load_templates(cards_dir(sources=sources)).sources
    assert loaded["SEED1"].caution == "pharmacy information page (not peer reviewed)"
    assert loaded["EAS15"].caution is None


def test_invalid_json_names_file_and_line(cards_dir: CardsDir) -> None:
    error = load_error(cards_dir({"STAT-01": '{\n  "rule": "STAT-01",\n  oops\n}'}))
    assert "cards/STAT-01.json: invalid JSON at line 3" in error


def test_duplicate_json_key_is_refused(cards_dir: CardsDir) -> None:
    text = json.dumps(STAT_01)[:-1] + ', "summary": "again"}'
    error = load_error(cards_dir({"STAT-01": text}))
    assert "cards/STAT-01.json: invalid JSON: duplicate key 'summary'" in error


def test_rule_must_match_file_name(cards_dir: CardsDir) -> None:
    error = load_error(cards_dir({"STAT-02": STAT_01}), mappings_dir=None)
    assert "cards/STAT-02.json: rule 'STAT-01' does not match the file name" in error


def test_raw_html_in_markdown_is_refused(cards_dir: CardsDir) -> None:
    broken = changed(STAT_01, reasoning="CK is <b>very</b> high")
    error = load_error(cards_dir({"STAT-01": broken}))
    assert "cards/STAT-01.json: reasoning: contains raw HTML" in error


def test_comparison_signs_are_not_mistaken_for_html() -> None:
    assert not contains_raw_html("IgA < 7 mg/dL and CK > 10×ULN; IgA <7 and CK >4×ULN")
    assert contains_raw_html("<script>alert(1)</script>")
    assert contains_raw_html("text <!-- comment --> text")


def test_duplicate_override_code_is_refused(cards_dir: CardsDir) -> None:
    reasons = [{"code": "other-cause", "display": "A"}, {"code": "other-cause", "display": "B"}]
    error = load_error(cards_dir({"STAT-01": changed(STAT_01, overrideReasons=reasons)}))
    assert "overrideReasons: duplicate code(s) other-cause" in error


def test_every_problem_is_reported_at_once(cards_dir: CardsDir) -> None:
    error = load_error(
        cards_dir(
            {
                "STAT-01": changed(STAT_01, sources=["NOPE99"]),
                "CONT-01": changed(CONT_01, summary="{ck"),
            }
        )
    )
    assert "cards/STAT-01.json: source 'NOPE99'" in error
    assert "cards/CONT-01.json: summary: malformed placeholder" in error
    assert error.startswith("broken card template(s), the service cannot start")


def test_missing_sources_file_is_refused(cards_dir: CardsDir) -> None:
    directory = cards_dir()
    (directory / "sources.json").unlink()
    error = load_error(directory)
    assert "cards/sources.json: file not found" in error


def test_missing_directory_is_refused(tmp_path: Path) -> None:
    error = load_error(tmp_path / "nowhere")
    assert "card templates directory" in error and CARDS_DIR_ENV in error


def test_environment_variable_points_to_the_directory(
    cards_dir: CardsDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CARDS_DIR_ENV, str(cards_dir()))
    assert sorted(load_templates()) == ["CONT-01", "STAT-01"]


def test_rule_unknown_to_the_advice_codesystem_is_refused(cards_dir: CardsDir) -> None:
    template = changed(STAT_01, rule="STAT-99")
    error = load_error(cards_dir({"STAT-99": template}))
    assert "cards/STAT-99.json: rule STAT-99 is not a concept of CodeSystem-myocds-advice.json" in (
        error
    )
    # Without the CodeSystem check the same directory loads.
    assert "STAT-99" in load_templates(cards_dir({"STAT-99": template}), mappings_dir=None)


def test_display_differing_from_the_codesystem_is_refused(cards_dir: CardsDir) -> None:
    error = load_error(cards_dir({"STAT-01": changed(STAT_01, display="Statin: CK very high")}))
    assert "cards/STAT-01.json: display 'Statin: CK very high' differs from" in error


def test_override_code_unknown_to_the_codesystem_is_refused(cards_dir: CardsDir) -> None:
    reasons = [{"code": "felt-like-it", "display": "Felt like it"}]
    error = load_error(cards_dir({"STAT-01": changed(STAT_01, overrideReasons=reasons)}))
    assert "override reason 'felt-like-it' is not a concept of" in error


def test_require_names_rules_without_template(cards_dir: CardsDir) -> None:
    templates = load_templates(cards_dir())
    templates.require(["STAT-01", "CONT-01"])
    with pytest.raises(ConfigurationError, match=r"no card template for rule\(s\) HMG-01, STAT-02"):
        templates.require(["STAT-01", "STAT-02", "HMG-01"])
