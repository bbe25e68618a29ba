"""The repository's own templates, sources and CodeSystems: complete, consistent with rules.md and
clinical-evidence.md, and every template renders a conformant card whose summary fits in 139
characters with worst-case values."""

from __future__ import annotations

import json
import re
import string
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B.codesystem import CodeSystem
from fhir.resources.R4B.medicationrequest import MedicationRequest
from fhir.resources.R4B.servicerequest import ServiceRequest

from cds_service.advice.model import Advice, Suggestion
from cds_service.cards_render import (
    ADVICE_SYSTEM,
    OVERRIDE_REASON_SYSTEM,
    Source,
    Templates,
    load_templates,
    render,
)
from cds_service.cards_render.markdown import escape
from cds_service.cards_render.render import (
    LOCAL_PROTOCOL_NOTE,
    MIN_VALUE_CHARS,
    SEED_NOTE,
    SUMMARY_MAX,
    fill_summary,
    utf16_length,
)
from cds_service.cards_render.templates import (
    ADVICE_CODESYSTEM,
    DEFAULT_MAPPINGS_DIR,
    OVERRIDE_CODESYSTEM,
    placeholder_names,
)
from cds_service.protocol.schemas import errors as schema_errors
from cds_service.services import SERVICES
from tests.advice import builders as b
from tests.advice.cards import rules_table
from tests.cards_render.conftest import REPO

KNOWLEDGE = REPO.parent / "shared" / "knowledge"
RULES_MD = KNOWLEDGE / "rules.md"
EVIDENCE_MD = KNOWLEDGE / "clinical-evidence.md"
needs_knowledge = pytest.mark.skipif(
    not RULES_MD.is_file(), reason=f"{KNOWLEDGE} not found (the team's shared knowledge)"
)

# The longest value each summary placeholder realistically takes (the advice modules' formats:
# comparators, thousands separators, units). A placeholder missing here, and not free text,
# fails the test: add its worst case.
SUMMARY_WORST_CASE: dict[str, str] = {
    "ck": ">123,456",
    "ck_x_uln": ">1,302.1",  # 250,000 U/L on a 192 U/L ULN
    "ck_shown": "≥ 123,456",
    "ck_x_uln_shown": "at least 1,302.1",
    "peak_shown": "≥ 123,456",
    "peak_x_uln_shown": "at least 1,302.1",
    "ck_date": "2025-12-31",
    "ck_preliminary": " (preliminary)",
    "ck_prev": "1,000",
    "course_start": "2025-12-31",
    "gap_days": "1,825",
    "stop_date": "2025-12-31",
    "days_since_last": "365",  # CONT-02 looks only at the first year
    "last_ck_clause": "no CK on file",
    "due_date": "2025-12-31",
    "days_after_ivig": "3,650",
    "course_months": "120",
    "dosing_kg": "249.9 kg",
    "basis": "actual weight (height < 152.4 cm)",
    "induction_g": "499.8 g",
    "induction_2d_g": "249.9 g",
    "maintenance_g": "249.9 g",
    "ordered_g": "599.9 g",
    "k": "2",
    "actual_kg": "299.9 kg",
    "corrected_g": "499.8 g",
    "total_g": "1,199.8 g",
    "max_g": "549.8 g",
    "remaining_g": "549.8 g",
    "missing": "weight and height",
    "weight_days": "365",
    "days_since_stop": "3,650",
    "trend": "above 10×ULN",
    "hmgcr_notes": ", flagged POS/H, preliminary",  # a numeric result's flags (labs send 1 or 2)
    "hmgcr_date": "2025-12-31",
    "iga": "<=60.99 mg/dL",
    "iga_date": "2025-12-31",
    "lower_limit": "120.5 mg/dL",
    "bound_note": "; deficiency (< 7 mg/dL) not excluded",
    "more_orders": " and 12 more",
    "days": "365",
    "last_renal": "last eGFR <=15.5 mL/min/1.73m2 on 2025-12-31",
    "risks": "eGFR <=59.9, creatinine >=12.34 mg/dL, age 105, diabetes",
    "creatinine_clause": ", creatinine >=12.34 mg/dL → >=13.84 mg/dL",
    "peak": ">123,456",
    "peak_x_uln": ">1,302.1",
    "why": "CK still >1,302.1×ULN on 2025-12-31",
}


# Summary placeholders whose value is someone's own text, of any length (a lab's wording of an
# anti-HMGCR result, a diagnosis, an order's name): the advice passes it in full and the renderer
# shortens it (``fill_summary``), down to MIN_VALUE_CHARS. So a summary must fit with each at
# that floor and every other value at its worst, and then no other value is ever cut.
SUMMARY_FREE_TEXT = frozenset({"hmgcr", "order"})


def texts_of(data: dict[str, Any]) -> list[str]:
    texts = [data["summary"], data["reasoning"], data.get("plan", "")]
    return texts + list(data.get("suggestions", {}).values())


def template_files() -> list[Path]:
    return sorted(p for p in (REPO / "cards").glob("*.json") if p.name != "sources.json")


def codesystem(file_and_url: tuple[str, str]) -> dict[str, Any]:
    return json.loads((DEFAULT_MAPPINGS_DIR / file_and_url[0]).read_text(encoding="utf-8"))


# --- completeness and consistency ------------------------------------------------------------


def test_repository_templates_load(repo_templates: Templates) -> None:
    assert len(repo_templates) == len(template_files())


@needs_knowledge
def test_every_rules_md_rule_has_a_template(repo_templates: Templates) -> None:
    rules = rules_table()
    assert len(rules) == 23  # STAT-01…06, HMG-01…03, IGA-01…03, DOSE-01…04, SAFE-01…03, CONT-01…04
    assert sorted(set(rules) - set(repo_templates)) == []


def test_every_declared_rule_has_a_template(repo_templates: Templates) -> None:
    for service in SERVICES:
        repo_templates.require(service.rules)


@needs_knowledge
def test_templates_agree_with_rules_md(repo_templates: Templates) -> None:
    for rule, row in rules_table().items():
        template = repo_templates[rule]
        assert set(template.indicators) == row["indicators"], rule
        assert list(template.sources) == row["sources"], rule
        for hook in template.hooks:
            assert hook in row["hooks"] or row["hooks"] == "all", (rule, hook)


def test_advice_codesystem_and_templates_match_both_ways(repo_templates: Templates) -> None:
    data = codesystem(ADVICE_CODESYSTEM)
    concepts = {c["code"]: c["display"] for c in data["concept"]}
    assert set(concepts) == set(repo_templates)
    for rule, template in repo_templates.cards.items():
        assert concepts[rule] == template.display, rule


@needs_knowledge
def test_advice_codesystem_has_every_rules_md_rule_and_the_notice() -> None:
    codes = {c["code"] for c in codesystem(ADVICE_CODESYSTEM)["concept"]}
    assert codes == set(rules_table()) | {"ORDER-UNIDENTIFIED"}


@pytest.mark.parametrize("file_and_url", [ADVICE_CODESYSTEM, OVERRIDE_CODESYSTEM])
def test_codesystems_are_valid_fhir_r4(file_and_url: tuple[str, str]) -> None:
    data = codesystem(file_and_url)
    CodeSystem.parse_obj(data)
    assert data["url"] == file_and_url[1]
    assert data["url"] in (ADVICE_SYSTEM, OVERRIDE_REASON_SYSTEM)
    codes = [c["code"] for c in data["concept"]]
    assert len(codes) == len(set(codes)) == data["count"]
    assert all(c.get("display") and c.get("definition") for c in data["concept"])


def test_every_override_code_is_in_the_codesystem_and_used(repo_templates: Templates) -> None:
    defined = {c["code"] for c in codesystem(OVERRIDE_CODESYSTEM)["concept"]}
    used = {r.code for t in repo_templates.cards.values() for r in t.override_reasons}
    assert used <= defined
    assert defined - used == set(), "override reasons no card offers"


# --- sources ---------------------------------------------------------------------------------


@needs_knowledge
def test_every_evidence_source_key_is_declared(repo_templates: Templates) -> None:
    section = EVIDENCE_MD.read_text(encoding="utf-8").split("## 1.", 1)[1].split("## 2.", 1)[0]
    keys: set[str] = set()
    for line in section.splitlines():
        match = re.match(r"^\| ([A-Z][A-Z0-9/]+) \|", line)
        if match and match.group(1) != "Key":
            key = match.group(1)
            keys |= {"SEED3", "SEED4"} if key == "SEED3/4" else {key}
    assert len(keys) >= 35
    assert sorted(keys - set(repo_templates.sources)) == []
    assert "DESIGN" in repo_templates.sources


def test_sources_are_typed_and_seeds_are_marked(repo_templates: Templates) -> None:
    sources = repo_templates.sources
    assert {k for k, s in sources.items() if s.kind == "seed"} == {
        "SEED0",
        "SEED1",
        "SEED2",
        "SEED3",
        "SEED4",
    }
    assert all(s.verified == "S" for s in sources.values() if s.kind == "seed")
    assert sources["DESIGN"].kind == "design" and sources["DESIGN"].verified == "DESIGN"
    assert all(s.url.startswith("https://") for s in sources.values())


# --- every template renders ------------------------------------------------------------------


def test_every_summary_fits_with_worst_case_values(repo_templates: Templates) -> None:
    missing: dict[str, list[str]] = {}
    for rule, template in repo_templates.cards.items():
        names = placeholder_names(template.summary)
        unknown = [n for n in names if n not in SUMMARY_WORST_CASE.keys() | SUMMARY_FREE_TEXT]
        if unknown:
            missing[rule] = unknown
            continue
        values = {**SUMMARY_WORST_CASE, **dict.fromkeys(SUMMARY_FREE_TEXT, "f" * MIN_VALUE_CHARS)}
        summary = string.Formatter().vformat(template.summary, (), values)
        assert utf16_length(summary) <= SUMMARY_MAX, (rule, utf16_length(summary), summary)
    assert missing == {}, "add worst-case values for these summary placeholders"


def test_a_long_free_text_is_the_only_value_shortened(repo_templates: Templates) -> None:
    # The renderer, not the advice, shortens a lab's or an order's own text: at a word boundary,
    # with every other value (a date, "preliminary", "and 12 more") and the template's words kept.
    checked = 0
    for rule, template in repo_templates.cards.items():
        names = placeholder_names(template.summary)
        free = SUMMARY_FREE_TEXT.intersection(names)
        if not free:
            continue
        values = {**SUMMARY_WORST_CASE, **dict.fromkeys(free, LONG_WORDS)}
        summary = fill_summary(template.summary, values)
        assert utf16_length(summary) <= SUMMARY_MAX, (rule, summary)
        kept = {**SUMMARY_WORST_CASE, **dict.fromkeys(free, "")}
        for literal, name, _, _ in string.Formatter().parse(template.summary):
            assert literal in summary, (rule, literal, summary)
            if name is not None and name not in free:
                assert kept[name] in summary, (rule, name, summary)
        start = summary.index("POSITIVE")
        shown = summary[start : summary.index("\u2026", start)]
        assert LONG_WORDS.startswith(shown) and LONG_WORDS[len(shown)] == " ", (rule, summary)
        checked += 1
    assert checked == 3  # STAT-05, HMG-03, ORDER-UNIDENTIFIED


def sample_advice(rule: str, template: Any, indicator: str, record: Any) -> Advice:
    data = json.loads(template.path.read_text(encoding="utf-8"))
    names = {n for text in texts_of(data) for n in placeholder_names(text)}
    values = {n: SUMMARY_WORST_CASE.get(n, f"<{n}>") for n in names}
    statin_draft, ivig_draft, active = (
        record.statin_uses[0],
        record.ivig_uses[0],
        record.statin_uses[1],
    )
    suggestions = []
    for key in template.suggestions:
        if key.startswith("order-lab:"):
            suggestions.append(Suggestion("order-lab", loinc=key.split(":", 1)[1]))
        elif key == "delete-draft":
            target = (
                ivig_draft if rule.startswith(("CONT", "DOSE", "IGA", "SAFE")) else statin_draft
            )
            suggestions.append(Suggestion("delete-draft", target=target))
        elif key == "update-draft":
            suggestions.append(
                Suggestion("update-draft", target=ivig_draft, dose_g=Decimal("82.3"), days=2)
            )
        elif key == "stop-active":
            suggestions.append(Suggestion("stop-active", target=active))
    return Advice(
        rule_id=rule,
        indicator=indicator,
        values=values,
        facts=(),
        caveats=("Assumed ULN 308 U/L",),
        suggestions=tuple(suggestions),
        ck_trend=True,
    )


def sample_record() -> Any:
    active_raw = b.request_json("atorva-active", "atorvastatin 40 MG Oral Tablet", "active")
    ivig_raw = b.request_json(
        "ivig-draft",
        "Gamunex-C 10%",
        dosageInstruction=[{"doseAndRate": [{"doseQuantity": {"value": 100, "unit": "g"}}]}],
    )
    return b.record(
        patient_id="p1",
        ck=(b.ck(6950, day=3), b.ck(2368, day=20, uln=192, uln_assumed=True)),
        statin_uses=(
            b.drafted_statin(resource_id="statin-draft"),
            b.statin("active", resource_id="atorva-active", raw=active_raw),
        ),
        ivig_uses=(
            b.use(b.GAMUNEX, "draft", drafted=True, resource_id="ivig-draft", raw=ivig_raw),
        ),
    )


def test_every_template_renders_a_conformant_card(repo_templates: Templates) -> None:
    record = sample_record()
    rendered = 0
    for rule, template in repo_templates.cards.items():
        for indicator in template.indicators:
            advice = sample_advice(rule, template, indicator, record)
            for hook in template.hooks:
                (card,) = render([advice], record, repo_templates, hook)
                rendered += 1
                assert schema_errors("response", {"cards": [card]}) == [], rule
                assert card["source"]["topic"]["code"] == rule
                assert card["overrideReasons"]
                assert ("selectionBehavior" in card) == bool(template.suggestions), rule
                check_sources(card, repo_templates.sources_of(template), rule)
                for suggestion in card.get("suggestions", ()):
                    for action in suggestion["actions"]:
                        check_action(action, record.patient_id)
    assert rendered >= len(repo_templates)


def check_sources(card: dict[str, Any], sources: tuple[Source, ...], rule: str) -> None:
    """rules.md "What every card must show" (r2): verified sources first; a seed never a link,
    named in the detail for what it is; a seed-only rule says it is a local protocol."""
    detail = card["detail"]
    listed = detail.rsplit("**Sources:**", 1)[1].strip().splitlines()
    assert len(listed) == len(sources), rule
    linked = [s for s in sources if not s.is_seed]
    assert [link["url"] for link in card.get("links", ())] == list(
        dict.fromkeys(s.url for s in linked)
    ), rule
    ranks = ["V" if s.verified == "V" else "seed" if s.is_seed else "other" for s in sources]
    assert ranks == sorted(ranks, key=["V", "other", "seed"].index), rule
    for line, source in zip(listed, sources, strict=True):
        assert escape(source.title) in line, rule
        if source.is_seed:
            assert "](" not in line and source.url not in detail, (rule, source.key)
            expected = source.caution or SEED_NOTE
            assert line.endswith(f"— {expected}"), (rule, line)
            if source.title.startswith("Dr.Oracle"):
                assert expected == "expert summary (AI-generated, not peer reviewed)"
        else:
            assert f"]({source.url.replace('(', '%28').replace(')', '%29')})" in line, rule
    seed_only = all(s.is_seed for s in sources)
    assert (LOCAL_PROTOCOL_NOTE in detail) == seed_only, rule
    assert (
        "local protocol: not from a published guideline; thresholds are site settings" in detail
    ) == seed_only, rule
    assert ("links" in card) == (not seed_only), rule


@needs_knowledge
def test_rules_supported_by_seeds_only_are_exactly_the_unverified_ones() -> None:
    # clinical-evidence.md section 3: CONT-02 is "SEED1 S only"; the templates agree.
    templates = load_templates()
    seed_only = {r for r, t in templates.cards.items() if templates.seed_only(t)}
    assert seed_only == {"CONT-02"}
    text = EVIDENCE_MD.read_text(encoding="utf-8")
    assert "| CONT-02 | SEED1 S only" in text


def test_cont02_shows_its_four_thresholds(repo_templates: Templates) -> None:
    template = repo_templates["CONT-02"]
    shown = set(placeholder_names(template.reasoning + (template.plan or "")))
    assert {"early_interval_days", "phase_days", "late_interval_days", "horizon_days"} <= shown


def test_seed_sources_name_what_they_are(repo_templates: Templates) -> None:
    cautions = {k: s.caution for k, s in repo_templates.sources.items() if s.is_seed}
    assert cautions == {
        "SEED0": "expert summary (AI-generated, not peer reviewed)",
        "SEED1": "expert summary (AI-generated, not peer reviewed)",
        "SEED2": "expert summary (AI-generated, not peer reviewed)",
        # clinical-evidence.md: seeds 003/004 are a pharmacy information page, not AI-generated.
        "SEED3": "pharmacy information page (not peer reviewed)",
        "SEED4": "pharmacy information page (not peer reviewed)",
    }
    assert all(s.caution is None for s in repo_templates.sources.values() if not s.is_seed)


def check_action(action: dict[str, Any], patient_id: str) -> None:
    assert action["description"]
    if action["type"] == "delete":
        assert re.fullmatch(r"MedicationRequest/[A-Za-z0-9\-.]{1,64}", action["resourceId"])
        assert "resource" not in action
        return
    resource = action["resource"]
    model = {"ServiceRequest": ServiceRequest, "MedicationRequest": MedicationRequest}
    model[resource["resourceType"]].parse_obj(resource)  # valid FHIR R4
    assert resource["subject"] == {"reference": f"Patient/{patient_id}"}


LONG_WORDS = ("POSITIVE (>200 U) confirmed at the reference laboratory " * 100).strip()


def test_long_values_in_any_summary_field_never_fail_a_card(repo_templates: Templates) -> None:
    # issue 11: a long valueString made a summary pass 139 characters and the call a 500. Every
    # field any summary quotes, long alone and all long at once: the card renders, <= 139.
    record = sample_record()
    checked = 0
    for rule, template in repo_templates.cards.items():
        names = placeholder_names(template.summary)
        prefix = template.summary.split("{", 1)[0]
        base = sample_advice(rule, template, template.indicators[0], record)
        cases = [{name: LONG_WORDS} for name in names] + [dict.fromkeys(names, LONG_WORDS)]
        for long_values in cases:
            advice = replace(base, values={**base.values, **long_values})
            (card,) = render([advice], record, repo_templates, template.hooks[0])
            summary = card["summary"]
            assert utf16_length(summary) <= SUMMARY_MAX, (rule, summary)
            assert summary.startswith(prefix), (rule, summary)
            assert "POSITIVE" in summary or not names, (rule, summary)
            checked += 1
    assert checked > 2 * len(repo_templates)
