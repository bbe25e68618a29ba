"""The card review gallery (/try/rules): every rule, its conditions, settings and sources (absolute
links), the cards the examples give; a rule no example triggers is flagged."""

from __future__ import annotations

import dataclasses
from html.parser import HTMLParser
from typing import Any

import pytest

from cds_service.cards_render import load_templates
from cds_service.cards_render.templates import absolute_https_problem
from cds_service.settings import ClinicalSettings, Settings
from cds_service.tryit.gallery import RULE_SETTINGS, SETTING_ENV, advice_concepts
from tests.tryit.conftest import use_examples

RULES = [c["code"] for c in advice_concepts()]


class Sections(HTMLParser):
    """The gallery's rule sections: their attributes, source links, flags and cards."""

    def __init__(self) -> None:
        super().__init__()
        self.rules: dict[str, dict[str, Any]] = {}
        self._current: dict[str, Any] | None = None
        self._depth = 0
        self._in_flag = False
        self._in_definition = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        classes = (a.get("class") or "").split()
        if tag == "section" and "rule" in classes:
            self._current = {"covered": a.get("data-covered"), "classes": classes,
                             "sources": [], "settings": {}, "cards": [], "flag": "",
                             "definition": ""}
            self.rules[a["data-rule"] or ""] = self._current
            self._depth = 1
            return
        if self._current is None:
            return
        if tag == "section":
            self._depth += 1
        if tag == "a" and "source-link" in classes:
            self._current["sources"].append((a.get("data-source"), a.get("href")))
        if "source-seed" in classes:
            self._current.setdefault("seeds", []).append(a.get("data-source"))
        if "local-protocol" in classes:
            self._current["local_protocol"] = True
        if tag == "tr" and "setting" in classes:
            self._current["settings"][a.get("data-env")] = None
            self._current["_setting"] = a.get("data-env")
        if tag == "article" and "card" in classes:
            self._current["cards"].append((a.get("data-topic"), a.get("data-indicator")))
        self._in_flag = "uncovered-flag" in classes
        self._in_definition = "rule-definition" in classes
        if "setting-value" in classes:
            self._current["_value"] = True

    def handle_endtag(self, tag: str) -> None:
        self._in_flag = self._in_definition = False
        if self._current is not None and tag == "section":
            self._depth -= 1
            if self._depth == 0:
                self._current = None

    def handle_data(self, data: str) -> None:
        if self._current is None:
            return
        if self._in_flag:
            self._current["flag"] += data
        if self._in_definition:
            self._current["definition"] += data
        if self._current.pop("_value", False):
            self._current["settings"][self._current["_setting"]] = data.strip()


def sections(html: str) -> dict[str, dict[str, Any]]:
    parser = Sections()
    parser.feed(html)
    return parser.rules


def test_every_rule_is_shown_with_its_sources_as_absolute_links(try_client):
    response = try_client.get("/try/rules")
    assert response.status_code == 200
    shown = sections(response.get_data(as_text=True))
    templates = load_templates()
    assert list(shown) == [r for r in RULES if r in templates]
    assert len(shown) >= 23
    for rule, section in shown.items():
        cited = templates.sources_of(templates[rule])
        # rules.md r2: verified first; a seed is named, never linked.
        expected = [(s.key, s.url) for s in cited if not s.is_seed]
        assert section["sources"] == expected, rule
        assert section.get("seeds", []) == [s.key for s in cited if s.is_seed], rule
        assert section["sources"] or section.get("seeds"), f"{rule} names no source"
        for _, href in section["sources"]:
            assert absolute_https_problem(href) is None, (rule, href)
        assert section["definition"].strip(), f"{rule} has no plain-words condition"
        assert section.get("local_protocol", False) == (rule == "CONT-02"), rule


# rules.md r2 points the gallery states in plain words, per rule (and for every rule, above).
R2_WORDING = {
    "STAT-01": ["lower bound", "not a plan or proposal"],
    "STAT-03": ["lower-bound CK"],
    "STAT-05": ["a resolved one still forbids statins for life", "refuted"],
    "SAFE-03": ["refuted", "any clinical status"],
    "DOSE-02": ["One draft, one dose", "same, smaller dose"],
    "DOSE-03": [
        "an infusion exactly 28 days ago belongs to the previous cycle",
        "two drafts add up",
        "usual maximum of 2 g/kg per 4-week cycle",
        "not the 2.2 g/kg margin",
    ],
    "CONT-02": ["local protocol", "site settings"],
    "ORDER-UNIDENTIFIED": ["A draft with no medication at all", "ignored without a card"],
}


def test_the_gallery_states_the_r2_wording_in_plain_words(try_client):
    html = try_client.get("/try/rules").get_data(as_text=True)
    shown = sections(html)
    for rule, phrases in R2_WORDING.items():
        definition = " ".join(shown[rule]["definition"].split())
        for phrase in phrases:
            assert phrase in definition, (rule, phrase)
    reading = html.split('id="reading"', 1)[1].split("</details>", 1)[0]
    text = " ".join(reading.split())
    for phrase in [
        "a draft with no medication yet (order entry just opened) is ignored without a card",
        "<code>note</code> given as a string",
        "<code>_include</code>",
        "Diagnoses marked refuted or entered in error are ignored everywhere",
        "an anti-HMGCR myopathy that has resolved still forbids statins for life",
        "the 4-week dose window is days 0–27",
        "counts as at least that value",
        "time zone offset not converted",
    ]:
        assert phrase in text, phrase


def test_with_the_shipped_examples_every_rule_fires(try_client, examples):
    html = try_client.get("/try/rules").get_data(as_text=True)
    shown = sections(html)
    for rule, section in shown.items():
        assert section["covered"] == "true", f"{rule}: no example triggers it"
        assert "rule--uncovered" not in section["classes"]
        assert section["cards"] and {topic for topic, _ in section["cards"]} == {rule}
    # The cards shown are exactly those the examples expect.
    expected = {(e.topic, e.indicator) for x in examples for e in x.expect}
    shown_cards = {c for s in shown.values() for c in s["cards"]}
    assert shown_cards == expected
    assert 'class="coverage coverage--ok"' in html


def test_a_rule_no_example_triggers_is_flagged(try_app, reduced_examples):
    use_examples(try_app, reduced_examples(["statin-ck-over-10x", "first-ivig-no-iga"]))
    html = try_app.test_client().get("/try/rules").get_data(as_text=True)
    shown = sections(html)
    covered = {rule for rule, s in shown.items() if s["covered"] == "true"}
    assert covered == {"STAT-01", "STAT-02", "IGA-01", "DOSE-01"}
    for rule, section in shown.items():
        if rule in covered:
            continue
        assert "rule--uncovered" in section["classes"], rule
        assert section["flag"] == "No example patient triggers this rule", rule
        assert section["cards"] == []
    assert 'class="coverage coverage--missing"' in html
    assert f"{len(shown) - 4} of {len(shown)} rules fire for no example patient" in html


def test_settings_and_their_current_values(make_app, settings):
    client = make_app(settings.with_overrides(recent_days=45, egfr_threshold=45)).test_client()
    shown = sections(client.get("/try/rules").get_data(as_text=True))
    assert shown["STAT-01"]["settings"]["MYOCDS_RECENT_DAYS"] == "45 (default 30)"
    assert shown["STAT-01"]["settings"]["MYOCDS_CK_ULN_MALE"] == "308"
    assert shown["SAFE-02"]["settings"] == {"MYOCDS_EGFR_THRESHOLD": "45 (default 60)"}
    assert shown["IGA-01"]["settings"] == {}


def test_the_rule_settings_map_names_real_settings():
    fields = {f.name for f in dataclasses.fields(ClinicalSettings)}
    assert set(SETTING_ENV) == fields  # every clinical setting has its variable
    for name, env in SETTING_ENV.items():
        # The variable really sets that field.
        value = "actual" if name == "ivig_dosing_weight" else "7"
        parsed = getattr(Settings.from_env({env: value}).clinical, name)
        assert str(parsed) == value, env
    used = {s for names in RULE_SETTINGS.values() for s in names}
    assert used == fields, "every clinical setting is read by some rule"
    assert set(RULE_SETTINGS) == set(RULES)


@pytest.mark.parametrize(("rule", "link"), [
    ("STAT-01", "/try?example=statin-ck-over-10x&amp;hook=patient-view"),
    ("DOSE-02", "/try?example=obese-first-ivig-dose&amp;hook=order-sign&amp;product=octagam"
                "&amp;dose=40&amp;days=5"),
    ("CONT-01", "/try?example=remission-on-ivig&amp;hook=patient-view"),
])
def test_each_card_links_to_the_view_that_gave_it(try_client, rule, link):
    html = try_client.get("/try/rules").get_data(as_text=True)
    start = html.index(f'data-rule="{rule}"')
    section = html[start: html.index("</section>", start)]
    assert f'href="{link}"' in section
    page = try_client.get(link.replace("&amp;", "&"))
    assert page.status_code == 200
