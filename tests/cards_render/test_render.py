"""render(): hand-made Advice objects → CDS Hooks cards (fields, detail, suggestions, errors)."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest
from fhir.resources.R4B.medicationrequest import MedicationRequest
from fhir.resources.R4B.servicerequest import ServiceRequest
from markdown_it import MarkdownIt

from cds_service.advice.model import Advice, Fact, Suggestion
from cds_service.cards_render import (
    ADVICE_SYSTEM,
    OVERRIDE_REASON_SYSTEM,
    CardRenderError,
    Templates,
    render,
)
from cds_service.cards_render.markdown import MissingValue
from cds_service.cards_render.render import (
    LOCAL_PROTOCOL_NOTE,
    SEED_NOTE,
    SUMMARY_MAX,
    fill_summary,
    render_card,
    shorten,
    utf16_length,
)
from cds_service.cards_render.suggestions import LAB_TESTS, build_actions, validated
from cds_service.protocol.schemas import errors as schema_errors
from tests.advice import builders as b

VALUES = {
    "ck": "6,950",
    "ck_x_uln": "22.6",
    "ck_date": "2025-06-28",
    "statin": "atorvastatin 40 MG Oral Tablet",
    "repeat_days": "7",
}
CK_FACT = Fact("CK", "6,950 U/L (22.6×ULN)", b.day_of(3), "assumed ULN 308 U/L")
WEIGHT_FACT = Fact("Weight", "100 kg")  # no date: shown as a dash


def stat01(**kw: Any) -> Advice:
    base: dict[str, Any] = {
        "rule_id": "STAT-01",
        "indicator": "critical",
        "values": VALUES,
        "facts": (CK_FACT, WEIGHT_FACT),
        "caveats": (
            "Assumed ULN 308 U/L (no reference range on the result)",
            "Statin matched by name",
        ),
    }
    base.update(kw)
    return Advice(**base)


def cont01(indicator: str = "info", **kw: Any) -> Advice:
    return Advice(rule_id="CONT-01", indicator=indicator, values={"ck": "96"}, **kw)


def one(advice: Advice, templates: Templates, record: Any = None, hook: str = "patient-view"):
    cards = render([advice], record or b.record(), templates, hook)
    assert len(cards) == 1
    return cards[0]


def html_of(markdown: str) -> str:
    """The detail as a raw-HTML-passing client (the CDS Hooks Sandbox) would render it."""
    return MarkdownIt("commonmark", {"html": True}).enable("table").render(markdown)


def table_rows(detail: str, header: str) -> list[list[str]]:
    """Body rows of the Markdown table that follows ``header``, split into cells."""
    section = detail.split(header, 1)[1].strip().split("\n\n", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")][2:]
    return [[c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]] for line in lines]


# --- card fields -----------------------------------------------------------------------------


def test_card_fields(small_templates: Templates) -> None:
    card = one(stat01(), small_templates)
    assert uuid.UUID(card["uuid"]).version == 4
    assert card["summary"] == "Stop the statin: CK 6,950 U/L = 22.6×ULN (2025-06-28)"
    assert card["indicator"] == "critical"
    assert card["source"] == {
        "label": "myocds — Statin: CK over 10×ULN",
        "topic": {"system": ADVICE_SYSTEM, "code": "STAT-01", "display": "Statin: CK over 10×ULN",
                  "version": "2.0.0"},  # the advice CodeSystem's version: the rule catalogue's
    }
    assert card["overrideReasons"] == [
        {
            "code": "other-cause",
            "system": OVERRIDE_REASON_SYSTEM,
            "display": "CK rise explained by another cause",
        },
        {
            "code": "statin-already-stopped",
            "system": OVERRIDE_REASON_SYSTEM,
            "display": "Statin already stopped",
        },
    ]
    # rules.md r2: a seed (SEED1 here) is never a card link.
    assert card["links"] == [
        {
            "label": "Stroes ES, et al. Statin-associated muscle symptoms. Eur Heart J. 2015",
            "url": "https://pmc.ncbi.nlm.nih.gov/articles/PMC4416140/",
            "type": "absolute",
        },
    ]
    assert "suggestions" not in card and "selectionBehavior" not in card
    assert schema_errors("response", {"cards": [card]}) == []


def test_source_url_only_when_absolute(small_templates: Templates) -> None:
    record = b.record()
    good = render([stat01()], record, small_templates, "patient-view", source_url="https://x.org/a")
    assert good[0]["source"]["url"] == "https://x.org/a"
    relative = render([stat01()], record, small_templates, "patient-view", source_url="/about")
    assert "url" not in relative[0]["source"]


def test_detail_shows_reasoning_values_dates_caveats_plan_and_sources(
    small_templates: Templates,
) -> None:
    detail = one(stat01(), small_templates)["detail"]
    assert detail.startswith("CK 6,950 U/L on 2025-06-28 is 22.6× the upper limit of normal.")
    assert "Statin: atorvastatin 40 MG Oral Tablet." in detail
    assert table_rows(detail, "**Values used**") == [
        ["CK", "6,950 U/L (22.6×ULN)", "2025-06-28", "assumed ULN 308 U/L"],
        ["Weight", "100 kg", "—", ""],
    ]
    assert "**Note:**\n\n- Assumed ULN 308 U/L (no reference range on the result)\n" in detail
    assert "- Statin matched by name" in detail
    assert "**Monitoring plan**\n\nRepeat CK in 7 days." in detail
    sources = detail.rsplit("**Sources:**", 1)[1]
    assert "[Stroes ES, et al. Statin-associated muscle symptoms. Eur Heart J. 2015]" in sources
    # The seed is named, unlinked, as an AI-generated expert summary (rules.md r2).
    assert sources.rstrip().endswith(
        "- Dr.Oracle. Is continuation of IVIG medically necessary? 2025 — "
        "expert summary (AI-generated, not peer reviewed)"
    )
    assert SEED_NOTE == "expert summary (AI-generated, not peer reviewed)"
    assert "droracle.ai" not in detail
    assert LOCAL_PROTOCOL_NOTE not in detail  # it has a verified source too


def test_no_seed_note_without_a_seed_source(small_templates: Templates) -> None:
    detail = one(cont01(), small_templates)["detail"]
    assert SEED_NOTE not in detail
    assert "**Values used**" not in detail and "**Note:**" not in detail  # nothing to show


def test_calculation_rows_table(small_templates: Templates) -> None:
    rows = (("Actual weight", "100 kg"), ("Ideal body weight", "70.5 kg (Devine)"))
    detail = one(stat01(rows=rows), small_templates)["detail"]
    assert table_rows(detail, "**Calculation**") == [
        ["Actual weight", "100 kg"],
        ["Ideal body weight", "70.5 kg (Devine)"],
    ]


def test_duplicate_caveats_shown_once(small_templates: Templates) -> None:
    detail = one(stat01(caveats=("Preliminary CK", "Preliminary CK")), small_templates)["detail"]
    assert detail.count("Preliminary CK") == 1


# --- CK trend --------------------------------------------------------------------------------


def test_ck_trend_is_the_last_eight_newest_first(small_templates: Templates) -> None:
    cks = tuple(b.ck(100 * (i + 1), day=60 - 5 * i) for i in range(10))  # 100 … 1,000 U/L
    record = b.record(ck=cks)
    detail = one(stat01(ck_trend=True), small_templates, record)["detail"]
    assert "**CK trend** (last 8, newest first)" in detail
    rows = table_rows(detail, "**CK trend** (last 8, newest first)")
    assert [row[1] for row in rows] == ["1,000", "900", "800", "700", "600", "500", "400", "300"]
    assert rows[0] == [b.day_of(15).isoformat(), "1,000", "3.2"]  # 1000/308 = 3.25 → 3.2
    # 300/308 = 0.97 → "1.0": the same one-decimal text as the card summaries, so the table
    # and the summary never disagree ("13" beside "13.0").
    assert rows[-1][2] == "1.0"


def test_ck_trend_marks_assumed_uln_preliminary_converted_and_bounds(
    small_templates: Templates,
) -> None:
    record = b.record(
        ck=(
            b.ck(6950, day=3, uln=192, uln_assumed=True),
            b.ck(2368, day=10, status="preliminary"),
            b.ck(60, day=20, original="1 ukat/L", converted=True),
            b.ck(50, day=30, comparator="<"),
        )
    )
    detail = one(stat01(ck_trend=True), small_templates, record)["detail"]
    rows = table_rows(detail, "newest first)")
    assert rows == [
        [b.day_of(3).isoformat(), "6,950", "36.2 (assumed ULN 192)"],
        [b.day_of(10).isoformat(), "2,368 (preliminary)", "7.7"],
        [b.day_of(20).isoformat(), "60 (from 1 ukat/L)", "0.2"],
        [b.day_of(30).isoformat(), "&lt;50", "&lt;0.2"],
    ]
    assert "<td>&lt;50</td>" in html_of(detail)  # shown as the text "<50"


def test_ck_trend_without_ck(small_templates: Templates) -> None:
    detail = one(stat01(ck_trend=True), small_templates)["detail"]
    assert "**CK trend**\n\nNo usable CK result on file." in detail


def test_no_ck_trend_unless_asked(small_templates: Templates) -> None:
    detail = one(stat01(), small_templates, b.record(ck=(b.ck(6950, day=3),)))["detail"]
    assert "CK trend" not in detail


# --- safety of the Markdown ------------------------------------------------------------------

MALICIOUS = '<script>alert("x")</script> | **bold** [link](javascript:alert(1)) <img src=x>'


def test_no_raw_html_from_patient_data(small_templates: Templates) -> None:
    drug = b.medication(MALICIOUS, statin=True)
    draft = b.drafted_statin(med=drug, resource_id="draft-1")
    advice = stat01(
        values={**VALUES, "statin": MALICIOUS},
        facts=(Fact("Statin", MALICIOUS, b.day_of(1), MALICIOUS),),
        caveats=(f"Statin matched by name: {MALICIOUS}",),
        rows=((MALICIOUS, MALICIOUS),),
        suggestions=(Suggestion("delete-draft", target=draft),),
    )
    card = one(advice, small_templates, b.record(statin_uses=(draft,)), "order-sign")
    html = html_of(card["detail"])
    assert "<script" not in html and "<img" not in html
    assert all(not href.startswith("javascript") for href in re.findall(r'href="([^"]*)"', html))
    assert "<strong>bold</strong>" not in html  # emphasis markers stay literal text
    assert "&lt;script&gt;" in html  # the text is shown, not run
    # The pipe did not add a column to the facts table.
    assert table_rows(card["detail"], "**Values used**")[0][0] == "Statin"
    assert len(table_rows(card["detail"], "**Values used**")[0]) == 4


def test_line_start_markers_in_values_stay_text(small_templates: Templates) -> None:
    advice = stat01(caveats=("1. not a list", "- not a bullet", "# not a heading"))
    html = html_of(one(advice, small_templates)["detail"])
    assert "<ol" not in html and "<h1" not in html
    for item in ("1. not a list", "- not a bullet", "# not a heading"):
        assert f"<li>{item}</li>" in html


# --- suggestions -----------------------------------------------------------------------------


def actions_of(card: dict[str, Any], index: int = 0) -> list[dict[str, Any]]:
    return card["suggestions"][index]["actions"]


def test_order_lab_is_a_valid_draft_service_request(small_templates: Templates) -> None:
    advice = stat01(suggestions=(Suggestion("order-lab", loinc="2157-6", recommended=True),))
    card = one(advice, small_templates, b.record(patient_id="pat-42"))
    assert card["selectionBehavior"] == "at-most-one"
    suggestion = card["suggestions"][0]
    assert suggestion["label"] == "Order a repeat CK"
    assert suggestion["isRecommended"] is True
    assert uuid.UUID(suggestion["uuid"]).version == 4
    (action,) = suggestion["actions"]
    assert action["type"] == "create"
    assert action["description"]
    resource = action["resource"]
    ServiceRequest.parse_obj(resource)  # valid R4 (R4B is identical for ServiceRequest)
    assert resource["status"] == "draft"
    assert resource["intent"] == "order"
    assert resource["subject"] == {"reference": "Patient/pat-42"}
    assert resource["code"]["coding"] == [
        {
            "system": "http://loinc.org",
            "code": "2157-6",
            "display": "Creatine kinase [Enzymatic activity/volume] in Serum or Plasma",
        }
    ]
    assert "authoredOn" not in resource
    assert schema_errors("response", {"cards": [card]}) == []


@pytest.mark.parametrize("patient_id", ["pat-42", "A.b-9", "x" * 64, "7\n"])
@pytest.mark.parametrize("loinc", sorted(LAB_TESTS))
def test_lab_order_built_once_is_the_one_validated_for_each_patient(
    loinc: str, patient_id: str
) -> None:
    # The request is validated once per lab test and reason, with a stand-in subject; for every
    # patient id _order_lab accepts, validating the card's resource as it is must change nothing.
    (action,) = build_actions(Suggestion("order-lab", loinc=loinc), patient_id, "Statin myopathy")
    resource = action["resource"]
    assert resource["subject"] == {"reference": f"Patient/{patient_id}"}
    assert json.dumps(validated(ServiceRequest, resource)) == json.dumps(resource)
    # each card its own copy: changing one never changes the next
    action["resource"]["code"]["coding"][0]["code"] = "changed"
    (again,) = build_actions(Suggestion("order-lab", loinc=loinc), patient_id, "Statin myopathy")
    assert again["resource"]["code"]["coding"][0]["code"] == loinc


@pytest.mark.parametrize(
    ("loinc", "display"),
    [
        ("3016-3", "Thyrotropin [Units/volume] in Serum or Plasma"),
        ("2157-6", "Creatine kinase [Enzymatic activity/volume] in Serum or Plasma"),
    ],
)
def test_every_lab_order_names_its_loinc(
    small_templates: Templates, loinc: str, display: str
) -> None:
    card = one(stat01(suggestions=(Suggestion("order-lab", loinc=loinc),)), small_templates)
    coding = actions_of(card)[0]["resource"]["code"]["coding"][0]
    assert (coding["code"], coding["display"]) == (loinc, display)
    assert "isRecommended" not in card["suggestions"][0]


def test_delete_draft_names_the_draft_by_resource_id(small_templates: Templates) -> None:
    draft = b.drafted_statin(resource_id="draft-7")
    advice = stat01(suggestions=(Suggestion("delete-draft", target=draft),))
    card = one(advice, small_templates, b.record(statin_uses=(draft,)), "order-select")
    assert card["suggestions"][0]["label"] == "Cancel the order for simvastatin 40 MG Oral Tablet"
    assert actions_of(card) == [
        {
            "type": "delete",
            "description": "Remove the drafted order for simvastatin 40 MG Oral Tablet",
            "resourceId": "MedicationRequest/draft-7",
        }
    ]


def ivig_draft(**raw_members: Any):
    raw = b.request_json(
        "ivig-draft",
        "Gamunex-C 10%",
        dosageInstruction=[
            {
                "text": "100 g daily for 2 days",
                "timing": {"repeat": {"count": 2, "frequency": 1, "period": 1, "periodUnit": "d"}},
                "doseAndRate": [{"doseQuantity": {"value": 100, "unit": "g"}}],
            }
        ],
    )
    raw.update(raw_members)
    return b.use(b.GAMUNEX, "draft", drafted=True, resource_id="ivig-draft", raw=raw)


def test_update_draft_keeps_the_order_and_corrects_dose_and_days(
    small_templates: Templates,
) -> None:
    draft = ivig_draft()
    suggestion = Suggestion("update-draft", target=draft, dose_g=Decimal("82.3"), days=2)
    card = one(stat01(suggestions=(suggestion,)), small_templates, hook="order-sign")
    assert card["suggestions"][0]["label"] == "Change to 82.3 g daily for 2 days"
    (action,) = actions_of(card)
    assert action["type"] == "update"
    resource = action["resource"]
    MedicationRequest.parse_obj(resource)
    assert resource["id"] == "ivig-draft"
    assert resource["subject"] == {"reference": "Patient/p1"}  # kept
    assert resource["medicationCodeableConcept"] == {"text": "Gamunex-C 10%"}
    dosage = resource["dosageInstruction"][0]
    assert dosage["doseAndRate"][0]["doseQuantity"] == {
        "value": 82.3,
        "unit": "g",
        "system": "http://unitsofmeasure.org",
        "code": "g",
    }
    assert dosage["timing"]["repeat"]["count"] == 2
    assert dosage["text"] == "82.3 g once daily for 2 days"  # the stale text is not kept
    assert "82.3 g daily for 2 days" in action["description"]
    # The client's draft itself is not modified.
    assert draft.raw["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] == 100


def test_update_draft_without_dosage_builds_one(small_templates: Templates) -> None:
    draft = ivig_draft(dosageInstruction=[])
    suggestion = Suggestion("update-draft", target=draft, dose_g=Decimal("40"), days=5)
    resource = actions_of(one(stat01(suggestions=(suggestion,)), small_templates))[0]["resource"]
    dosage = resource["dosageInstruction"][0]
    assert dosage["doseAndRate"][0]["doseQuantity"]["value"] == 40
    assert dosage["timing"]["repeat"] == {
        "count": 5,
        "frequency": 1,
        "period": 1,
        "periodUnit": "d",
    }


def test_stop_active_updates_the_active_order_to_stopped(small_templates: Templates) -> None:
    raw = b.request_json(
        "atorva-1", "atorvastatin 40 MG Oral Tablet", "active", authoredOn="2024-05-01"
    )
    active = b.statin("active", resource_id="atorva-1", raw=raw)
    card = one(stat01(suggestions=(Suggestion("stop-active", target=active),)), small_templates)
    (action,) = actions_of(card)
    resource = action["resource"]
    MedicationRequest.parse_obj(resource)
    assert action["type"] == "update"
    assert resource["id"] == "atorva-1" and resource["status"] == "stopped"
    assert resource["statusReason"]["text"].endswith("Statin: CK over 10×ULN")
    assert resource["authoredOn"] == "2024-05-01"


def test_suggestion_uuids_are_unique_and_differ_from_card_uuids(small_templates: Templates) -> None:
    draft = b.drafted_statin()
    advices = [
        stat01(
            suggestions=(
                Suggestion("delete-draft", target=draft, recommended=True),
                Suggestion("order-lab", loinc="2157-6"),
                Suggestion("order-lab", loinc="3016-3"),
            )
        ),
        cont01("warning"),
    ]
    ids: list[str] = []
    for _ in range(3):  # fresh uuids on every call
        for card in render(advices, b.record(statin_uses=(draft,)), small_templates, "order-sign"):
            ids.append(card["uuid"])
            ids.extend(s["uuid"] for s in card.get("suggestions", ()))
    assert len(ids) == len(set(ids)) == 3 * 5


def test_unbuildable_draft_leaves_the_suggestion_out(small_templates: Templates) -> None:
    draft = ivig_draft(dosageInstruction="not a list")  # the client's draft is not valid R4
    suggestion = Suggestion("update-draft", target=draft, dose_g=Decimal("40"), days=2)
    card = one(stat01(suggestions=(suggestion,)), small_templates)
    assert "suggestions" not in card and "selectionBehavior" not in card
    assert "Change to 40 g daily for 2 days" in card["detail"]
    assert "not offered as an action" in card["detail"]


@pytest.mark.parametrize("missing", ["intent", "subject"])
def test_update_of_an_unfinished_draft_is_left_out_and_the_card_says_so(
    small_templates: Templates, missing: str
) -> None:
    # rules.md r2: drafts are unfinished by nature; an update would emit an invalid R4 resource.
    draft = ivig_draft()
    del draft.raw[missing]
    suggestions = (
        Suggestion("update-draft", target=draft, dose_g=Decimal("40"), days=2),
        Suggestion("order-lab", loinc="2157-6"),
    )
    card = one(stat01(suggestions=suggestions), small_templates, hook="order-sign")
    assert [s["label"] for s in card["suggestions"]] == ["Order a repeat CK"]
    note = table_free(card["detail"])
    assert "The suggestion “Change to 40 g daily for 2 days” is not offered as an action" in note
    assert "would not be valid FHIR R4" in note
    # The delete of the same draft needs no resource: still offered.
    delete = one(stat01(suggestions=(Suggestion("delete-draft", target=draft),)), small_templates)
    assert actions_of(delete)[0]["resourceId"] == "MedicationRequest/ivig-draft"
    assert "not offered" not in delete["detail"]


def table_free(detail: str) -> str:
    return detail.replace("\\", "")


# --- ordering and programming errors ---------------------------------------------------------


def test_cards_ordered_by_urgency(small_templates: Templates) -> None:
    cards = render([cont01("info"), stat01()], b.record(), small_templates, "patient-view")
    assert [c["source"]["topic"]["code"] for c in cards] == ["STAT-01", "CONT-01"]


def errors_for(advices: list[Advice], templates: Templates, hook: str = "patient-view") -> str:
    """The error of the one advice that cannot be rendered: raised by ``render_card``; ``render``
    leaves that card out, logs it and counts it in ``failures``."""
    record = b.record(statin_uses=(b.statin(),))
    failures: list[str] = []
    assert render(advices, record, templates, hook, failures=failures) == [] or len(advices) > 1
    assert failures == [advices[-1].rule_id]
    with pytest.raises(CardRenderError) as caught:
        for advice in advices:
            render_card(advice, record, templates, hook)
        raise CardRenderError("one card per rule")  # the only error of two good advices
    return str(caught.value)


def test_missing_placeholder_raises(small_templates: Templates) -> None:
    values = {k: v for k, v in VALUES.items() if k != "ck_date"}
    assert "summary uses {ck_date}" in errors_for([stat01(values=values)], small_templates)


def test_missing_placeholder_in_plan_raises(small_templates: Templates) -> None:
    values = {k: v for k, v in VALUES.items() if k != "repeat_days"}
    assert "plan uses {repeat_days}" in errors_for([stat01(values=values)], small_templates)


def test_summary_over_139_characters_is_shortened_in_the_long_value(
    small_templates: Templates,
) -> None:
    long_date = "2025-06-28 (drawn at the outside laboratory " + "and sent by courier " * 5 + ")"
    card = one(stat01(values={**VALUES, "ck_date": long_date}), small_templates)
    summary = card["summary"]
    assert utf16_length(summary) <= SUMMARY_MAX
    # The template's words and the key value stay; the long value is cut at a word boundary.
    assert summary.startswith("Stop the statin: CK 6,950 U/L = 22.6×ULN (2025-06-28 (drawn at")
    assert summary.endswith("…)")
    assert " and sent by courier and" not in summary[-12:]
    # The full value is still in the detail.
    assert "sent by courier and sent by courier" in card["detail"]


def test_summary_of_exactly_139_characters_is_kept(small_templates: Templates) -> None:
    base = len("Stop the statin: CK 6,950 U/L = 22.6×ULN ()")
    card = one(stat01(values={**VALUES, "ck_date": "d" * (139 - base)}), small_templates)
    assert len(card["summary"]) == 139 and "…" not in card["summary"]


def test_summary_length_counts_utf16_units(small_templates: Templates) -> None:
    base = len("Stop the statin: CK 6,950 U/L = 22.6×ULN ()")
    emoji = "\N{WARNING SIGN}\N{VARIATION SELECTOR-16}\U0001f6a8"  # 🚨 is 2 UTF-16 units
    values = {**VALUES, "ck_date": "d" * (139 - base - 3) + emoji}
    summary = one(stat01(values=values), small_templates)["summary"]
    assert len(summary) <= SUMMARY_MAX and utf16_length(summary) <= SUMMARY_MAX
    assert summary.endswith("…)")


@pytest.mark.parametrize("name", ["ck", "ck_x_uln", "ck_date"])
@pytest.mark.parametrize("length", [140, 1000, 100_000])
def test_no_value_of_any_length_makes_the_summary_fail(
    small_templates: Templates, name: str, length: int
) -> None:
    words = ("POSITIVE (>200 U) " * (length // 18 + 1))[:length]
    card = one(stat01(values={**VALUES, name: words}), small_templates)
    assert utf16_length(card["summary"]) <= SUMMARY_MAX
    assert card["summary"].startswith("Stop the statin: CK ")
    assert "POSITIVE (>200 U)" in card["summary"]  # the start of the long value is kept


def test_a_value_shortened_before_gets_one_ellipsis(small_templates: Templates) -> None:
    # A lab's own text may end in "…" already; the summary never shows "……".
    value = "2025-06-28 drawn at the outside laboratory and sent by cour…, " + "preliminary " * 9
    summary = one(stat01(values={**VALUES, "ck_date": value}), small_templates)["summary"]
    assert utf16_length(summary) <= SUMMARY_MAX
    assert "……" not in summary
    assert shorten("aaaaaaaaaaaaaa…, b", 16) == "aaaaaaaaaaaaaa…"
    assert shorten("short", 16) == "short"
    assert shorten("one two three four five six", 16) == "one two three…"


def test_fill_summary_folds_spacing_and_names_a_missing_value() -> None:
    # A lab's text with line breaks and runs of spaces is one line in the summary (the advice
    # passes it as written); the template's own spacing is kept.
    text = "CK {ck}  U/L ({ck_date})"
    assert fill_summary(text, {"ck": "6,950\n  (repeat)", "ck_date": "\t2025-06-28"}) == (
        "CK 6,950 (repeat)  U/L ( 2025-06-28)"
    )
    with pytest.raises(MissingValue, match="ck_date"):
        fill_summary(text, {"ck": "6,950"})


def test_every_summary_value_long_at_once_still_fits(small_templates: Templates) -> None:
    values = {**VALUES, "ck": "9" * 400, "ck_x_uln": "x " * 300, "ck_date": "\U0001f6a8" * 200}
    summary = one(stat01(values=values), small_templates)["summary"]
    assert utf16_length(summary) <= SUMMARY_MAX
    assert summary.startswith("Stop the statin: CK 999")


def test_one_card_that_cannot_be_rendered_leaves_the_others(
    small_templates: Templates, caplog: pytest.LogCaptureFixture
) -> None:
    broken = stat01(values={k: v for k, v in VALUES.items() if k != "ck"})  # a missing value
    failures: list[str] = []
    with caplog.at_level("ERROR", logger="cds_service.cards_render.render"):
        cards = render(
            [broken, cont01()], b.record(), small_templates, "patient-view", failures=failures
        )
    assert [c["source"]["topic"]["code"] for c in cards] == ["CONT-01"]
    assert failures == ["STAT-01"]
    (message,) = [r.getMessage() for r in caplog.records]
    assert message.startswith("card STAT-01 left out")
    assert VALUES["ck_date"] not in message and VALUES["statin"] not in message


def test_an_unexpected_error_is_logged_without_its_message(
    small_templates: Templates, caplog: pytest.LogCaptureFixture
) -> None:
    class Exploding(dict):  # a value mapping that fails with patient data in the message
        def __getitem__(self, key: str) -> str:
            raise ValueError("patient Jane Doe, MRN 12345")

        def __contains__(self, key: object) -> bool:
            return True

    failures: list[str] = []
    with caplog.at_level("ERROR"):
        cards = render(
            [stat01(values=Exploding()), cont01()],
            b.record(),
            small_templates,
            "patient-view",
            failures=failures,
        )
    assert len(cards) == 1 and failures == ["STAT-01"]
    assert "Jane" not in caplog.text and "ValueError" in caplog.text


def test_suggestion_without_template_label_raises(small_templates: Templates) -> None:
    advice = stat01(suggestions=(Suggestion("order-lab", loinc="2458-8"),))
    assert "no label for suggestion 'order-lab:2458-8'" in errors_for([advice], small_templates)


def test_indicator_not_in_template_raises(small_templates: Templates) -> None:
    assert "indicator 'warning'" in errors_for([stat01(indicator="warning")], small_templates)


def test_list_indicator_accepts_each(small_templates: Templates) -> None:
    for indicator in ("info", "warning"):
        assert one(cont01(indicator), small_templates)["indicator"] == indicator


def test_hook_not_in_template_raises(cards_dir, small_templates: Templates) -> None:
    from cds_service.cards_render import load_templates
    from tests.cards_render.conftest import STAT_01

    templates = load_templates(cards_dir({"STAT-01": {**STAT_01, "hooks": ["patient-view"]}}))
    assert "fired on order-sign" in errors_for([stat01()], templates, "order-sign")


def test_two_recommended_suggestions_raise(small_templates: Templates) -> None:
    advice = stat01(
        suggestions=(
            Suggestion("order-lab", loinc="2157-6", recommended=True),
            Suggestion("order-lab", loinc="3016-3", recommended=True),
        )
    )
    assert "more than one recommended" in errors_for([advice], small_templates)


def test_delete_of_an_order_that_is_not_drafted_raises(small_templates: Templates) -> None:
    advice = stat01(suggestions=(Suggestion("delete-draft", target=b.statin("active")),))
    assert "not drafted" in errors_for([advice], small_templates)


def test_stop_of_a_draft_raises(small_templates: Templates) -> None:
    advice = stat01(suggestions=(Suggestion("stop-active", target=b.drafted_statin()),))
    assert "not active or on-hold" in errors_for([advice], small_templates)


def test_update_without_dose_raises(small_templates: Templates) -> None:
    advice = stat01(suggestions=(Suggestion("update-draft", target=ivig_draft(), days=2),))
    assert "{dose_g}" in errors_for([advice], small_templates)  # the label needs it first
    labelled = stat01(
        suggestions=(Suggestion("update-draft", target=ivig_draft(), days=2),),
        values={**VALUES, "dose_g": "40"},
    )
    assert "needs dose_g and days" in errors_for([labelled], small_templates)


def test_unknown_rule_raises(small_templates: Templates) -> None:
    advice = replace(stat01(), rule_id="HMG-01")
    assert "HMG-01: no card template" in errors_for([advice], small_templates)


def test_two_advices_for_one_rule_raise(small_templates: Templates) -> None:
    assert "one card per rule" in errors_for([stat01(), stat01()], small_templates)


def test_no_member_is_null_or_empty(small_templates: Templates) -> None:
    draft = b.drafted_statin()
    advice = stat01(
        values={**VALUES, "statin": ""},  # an empty value fills to nothing, not to an empty member
        facts=(Fact("CK", "6,950 U/L", None, None),),
        caveats=("", "  "),
        suggestions=(Suggestion("delete-draft", target=draft),),
    )
    card = one(advice, small_templates, b.record(statin_uses=(draft,)), "order-sign")

    def walk(value: Any, path: str) -> None:
        assert value not in (None, "", [], {}), path
        if isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{path}.{key}")
        elif isinstance(value, list):
            for index, item in enumerate(value):
                walk(item, f"{path}[{index}]")

    walk(card, "card")
    assert "**Note:**" not in card["detail"]  # blank caveats are dropped


def test_ids_that_are_not_fhir_ids_leave_the_suggestion_out(small_templates: Templates) -> None:
    draft = b.drafted_statin(resource_id="bad id/with slash")
    advice = stat01(suggestions=(Suggestion("delete-draft", target=draft),))
    card = one(advice, small_templates, b.record(statin_uses=(draft,)), "order-sign")
    assert "suggestions" not in card
    lab = stat01(suggestions=(Suggestion("order-lab", loinc="2157-6"),))
    assert "suggestions" not in one(lab, small_templates, b.record(patient_id="a b"))
