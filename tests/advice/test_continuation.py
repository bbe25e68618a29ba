"""CONT-01…04 (rules.md): IVIG remission, CK monitoring after stopping, relapse, no response.

Pure-function tests on hand-built records (``tests/advice/builders.py``); every boundary of the
rule table is tested at the threshold and on each side of it.
"""

from __future__ import annotations

import string
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from cds_service.advice import continuation
from cds_service.advice.model import Advice
from cds_service.record.model import CkValue, MedicationUse, PatientRecord
from cds_service.settings import ClinicalSettings, Settings
from tests.advice import cards
from tests.advice.builders import GAMUNEX, TODAY, ck, given, medication, record, unusable, use
from tests.advice.scenarios import advice_by_rule, named_scenario

CLINICAL = ClinicalSettings()
CONT_RULES = ("CONT-01", "CONT-02", "CONT-03", "CONT-04")


def run(rec: PatientRecord, hook: str = "patient-view") -> dict[str, Advice]:
    advices = continuation.evaluate(rec, TODAY, CLINICAL, hook)
    by_rule = {a.rule_id: a for a in advices}
    assert len(by_rule) == len(advices), "one card per rule per call"
    return by_rule


def ivig_draft() -> MedicationUse:
    return use(GAMUNEX, "draft", drafted=True, authored=0, resource_id="ivig-draft")


def on_ivig(
    cks: tuple[CkValue, ...] = (),
    *,
    course_days: int = 400,
    last_days: int = 20,
    hook: str = "patient-view",
    drafted: bool = False,
    active_order: bool = True,
    **kw: Any,
) -> PatientRecord:
    """Monthly IVIG from ``course_days`` ago to ``last_days`` ago, an active order."""
    doses = tuple(given(d) for d in range(course_days, last_days - 1, -28)) + (given(last_days),)
    uses: list[MedicationUse] = []
    if active_order:
        uses.append(use(GAMUNEX, "active", resource_id="ivig-active"))
    if drafted:
        uses.append(ivig_draft())
    return record(
        hook=hook,
        ck=cks,
        ivig_given=tuple({g.time: g for g in doses}.values()),
        ivig_uses=tuple(uses),
        **kw,
    )


def stopped_ivig(
    cks: tuple[CkValue, ...] = (), *, last_days: int, course_days: int = 500, **kw: Any
) -> PatientRecord:
    """IVIG given monthly, the last dose ``last_days`` ago, order completed."""
    doses = tuple(given(d) for d in range(course_days, last_days, -28)) + (given(last_days),)
    return record(
        ck=cks,
        ivig_given=tuple({g.time: g for g in doses}.values()),
        ivig_uses=(use(GAMUNEX, "completed", resource_id="ivig-done"),),
        **kw,
    )


# --- CONT-01 remission --------------------------------------------------------------------------

REMISSION_CKS = (ck(110, 120), ck(96, 19))


def test_cont01_seed_remission_on_patient_view_is_info_without_suggestions() -> None:
    advice = run(on_ivig(REMISSION_CKS))["CONT-01"]
    assert advice.indicator == "info"
    assert advice.suggestions == ()
    assert advice.ck_trend
    assert advice.values["ck"] == "96" and advice.values["ck_prev"] == "110"
    assert advice.values["gap_days"] == "101"
    assert advice.values["ck_x_uln"] == "0.3"
    ck_facts = [f for f in advice.facts if f.label == "CK"]
    assert [f.day for f in ck_facts] == [REMISSION_CKS[0].day, REMISSION_CKS[1].day]
    assert "0.3×ULN" in ck_facts[1].value
    labels = {f.label for f in advice.facts}
    assert {"IVIG course (first dose)", "Last IVIG", "IVIG status"} <= labels


@pytest.mark.parametrize("hook", ["order-select", "order-sign"])
def test_cont01_order_hooks_with_ivig_drafted_warn_and_suggest_delete_and_ck(hook: str) -> None:
    advice = run(on_ivig(REMISSION_CKS, hook=hook, drafted=True), hook)["CONT-01"]
    assert advice.indicator == "warning"
    kinds = [
        (s.kind, s.loinc, s.target.resource_id if s.target else None) for s in advice.suggestions
    ]
    assert kinds == [("delete-draft", None, "ivig-draft"), ("order-lab", "2157-6", None)]


@pytest.mark.parametrize("hook", ["order-select", "order-sign"])
def test_cont01_order_hooks_without_ivig_draft_are_silent(hook: str) -> None:
    assert "CONT-01" not in run(on_ivig(REMISSION_CKS, hook=hook), hook)


def test_cont01_subcutaneous_draft_is_not_an_ivig_draft() -> None:
    sc = use(GAMUNEX, "draft", drafted=True, subcutaneous=True, authored=0)
    rec = on_ivig(REMISSION_CKS, hook="order-sign")
    rec = record(
        hook="order-sign", ck=rec.ck, ivig_given=rec.ivig_given, ivig_uses=rec.ivig_uses + (sc,)
    )
    assert "CONT-01" not in run(rec, "order-sign")


@pytest.mark.parametrize(("gap", "fires"), [(27, False), (28, True), (29, True)])
def test_cont01_last_two_cks_must_be_28_days_apart(gap: int, fires: bool) -> None:
    cks = (ck(100, 10 + gap), ck(90, 10))
    assert ("CONT-01" in run(on_ivig(cks))) is fires


@pytest.mark.parametrize(("value", "fires"), [(307, True), (308, True), (309, False)])
def test_cont01_ck_at_uln_counts_as_normal(value: int, fires: bool) -> None:
    cks = (ck(100, 100), ck(value, 10))
    assert ("CONT-01" in run(on_ivig(cks))) is fires


def test_cont01_older_ck_above_uln_breaks_remission() -> None:
    assert "CONT-01" not in run(on_ivig((ck(400, 100), ck(90, 10))))


@pytest.mark.parametrize(("days_ago", "fires"), [(181, False), (182, False), (183, True)])
def test_cont01_no_ck_above_uln_in_the_last_182_days(days_ago: int, fires: bool) -> None:
    cks = (ck(900, days_ago), ck(100, 100), ck(90, 10))
    assert ("CONT-01" in run(on_ivig(cks))) is fires


def test_cont01_ck_of_window_day_written_east_of_utc_breaks_remission() -> None:
    # The raised CK is of day 182 as written (00:30 at +14:00) but of day 183 in UTC; CKs are in
    # instant order, so it comes before one of 23:00 UTC on day 183. The scan back from the
    # newest must not stop before it (continuation._Context.cks_since).
    window_day = TODAY - timedelta(days=182)
    raised = replace(
        ck(900, 182),
        time=datetime(
            window_day.year, window_day.month, window_day.day, 0, 30,
            tzinfo=timezone(timedelta(hours=14)),
        ),
    )
    cks = (ck(100, 300), raised, ck(100, 183, hour=23), ck(100, 100), ck(90, 10))
    assert "CONT-01" not in run(on_ivig(cks))
    # the same CK written in UTC is of day 183, outside the 182 days: a remission
    assert "CONT-01" in run(on_ivig((ck(100, 300), ck(900, 183), ck(100, 100), ck(90, 10))))


def test_cont01_ck_above_uln_in_182_days_but_not_among_the_last_two_breaks_remission() -> None:
    # Mutation-run gap: the last two CKs (60 and 10 days ago, 50 days apart) are normal, but a
    # CK of 600 U/L 90 days ago lies within the 182 days: no remission.
    cks = (ck(100, 150), ck(600, 90), ck(95, 60), ck(90, 10))
    assert "CONT-01" not in run(on_ivig(cks))
    # the same without the raised CK is a remission
    assert "CONT-01" in run(on_ivig((ck(100, 150), ck(95, 60), ck(90, 10))))
    # a preliminary CK above the ULN in the window counts too
    prelim = (ck(100, 150), ck(600, 90, status="preliminary"), ck(95, 60), ck(90, 10))
    assert "CONT-01" not in run(on_ivig(prelim))


@pytest.mark.parametrize(("course", "fires"), [(181, False), (182, True), (183, True)])
def test_cont01_needs_a_course_of_182_days(course: int, fires: bool) -> None:
    assert ("CONT-01" in run(on_ivig(REMISSION_CKS, course_days=course))) is fires


def test_cont01_needs_ivig_ongoing() -> None:
    rec = on_ivig(REMISSION_CKS, last_days=57, active_order=False)
    assert "CONT-01" not in run(rec)
    rec = on_ivig(REMISSION_CKS, last_days=56, active_order=False)
    assert "CONT-01" in run(rec)


def test_cont01_preliminary_ck_is_not_one_of_the_two() -> None:
    # Counted, the last two would be 14 days apart; the preliminary one is skipped: 101 days.
    cks = (ck(110, 120), ck(96, 19), ck(80, 5, status="preliminary"))
    advice = run(on_ivig(cks))["CONT-01"]
    assert advice.values["ck"] == "96" and advice.values["gap_days"] == "101"
    assert any("Preliminary CK 80 U/L" in c and "not counted" in c for c in advice.caveats)


def test_cont01_two_preliminary_cks_are_not_a_remission() -> None:
    cks = (ck(110, 120, status="preliminary"), ck(96, 19, status="preliminary"))
    assert "CONT-01" not in run(on_ivig(cks))


def test_cont01_preliminary_ck_above_uln_in_window_still_counts() -> None:
    cks = (ck(110, 120), ck(96, 19), ck(500, 5, status="preliminary"))
    assert "CONT-01" not in run(on_ivig(cks))


def test_cont01_upper_bound_ck_meets_at_most_uln() -> None:
    cks = (ck(110, 120), ck(20, 19, comparator="<"))
    advice = run(on_ivig(cks))["CONT-01"]
    assert advice.values["ck"] == "<20"


def test_cont01_lower_bound_ck_cannot_be_shown_normal() -> None:
    cks = (ck(110, 120), ck(50, 19, comparator=">"))
    assert "CONT-01" not in run(on_ivig(cks))


def test_cont01_needs_two_cks() -> None:
    assert "CONT-01" not in run(on_ivig((ck(96, 19),)))


# --- CONT-02 monitoring overdue -----------------------------------------------------------------


def test_cont02_scenario_shape_fires_with_plan_values_and_ck_order() -> None:
    advice = run(stopped_ivig((ck(250, 108),), last_days=149))["CONT-02"]
    assert advice.indicator == "warning"
    assert [(s.kind, s.loinc) for s in advice.suggestions] == [("order-lab", "2157-6")]
    assert advice.values["interval_days"] == "56"
    # Due one interval after the later of the last CK (108 days ago) and the stop (149 days ago).
    assert advice.values["due_date"] == "2025-05-10"  # TODAY - 108 + 56
    assert advice.values["overdue_days"] == "52"
    assert advice.values["stop_date"] == "2025-02-02"
    assert advice.ck_trend


@pytest.mark.parametrize(("ck_days", "fires"), [(55, False), (56, False), (57, True)])
def test_cont02_first_six_months_wants_a_ck_every_56_days(ck_days: int, fires: bool) -> None:
    rec = stopped_ivig((ck(150, ck_days),), last_days=182)
    assert ("CONT-02" in run(rec)) is fires


@pytest.mark.parametrize(("ck_days", "fires"), [(57, False), (91, False), (92, True)])
def test_cont02_after_182_days_wants_a_ck_every_91_days(ck_days: int, fires: bool) -> None:
    rec = stopped_ivig((ck(150, ck_days),), last_days=183)
    advice = run(rec).get("CONT-02")
    assert (advice is not None) is fires
    if advice:
        assert advice.values["interval_days"] == "91"


@pytest.mark.parametrize(("last", "fires"), [(364, True), (365, True), (366, False)])
def test_cont02_watches_the_first_365_days(last: int, fires: bool) -> None:
    assert ("CONT-02" in run(stopped_ivig((), last_days=last))) is fires


def test_cont02_overdue_days_count_from_the_last_ivig_when_the_last_ck_is_older() -> None:
    # Mutation-run gap: last CK 150 days ago, before the last IVIG (100 days ago): the CK is due
    # 56 days after the last IVIG, i.e. 44 days ago (not 56 days after the old CK: 94 days ago).
    advice = run(stopped_ivig((ck(150, 150),), last_days=100))["CONT-02"]
    assert advice.values["days_since_last"] == "100"
    assert advice.values["due_date"] == "2025-05-18"  # TODAY - 100 + 56
    assert advice.values["overdue_days"] == "44"
    assert advice.values["stop_date"] == "2025-03-23"


def test_cont02_no_ck_ever_is_due_one_interval_after_the_stop() -> None:
    advice = run(stopped_ivig((), last_days=60))["CONT-02"]
    assert advice.values["last_ck_clause"] == "no CK on file"
    assert advice.values["due_date"] == "2025-06-27"  # TODAY - 60 + 56
    assert advice.facts[0].value == "none on file"


@pytest.mark.parametrize(("last", "fires"), [(56, False), (57, True)])
def test_cont02_needs_ivig_stopped(last: int, fires: bool) -> None:
    assert ("CONT-02" in run(stopped_ivig((), last_days=last))) is fires


def test_cont02_not_while_an_ivig_order_is_active() -> None:
    assert "CONT-02" not in run(on_ivig((), last_days=150))


@pytest.mark.parametrize("hook", ["order-select", "order-sign"])
def test_cont02_is_patient_view_only(hook: str) -> None:
    assert "CONT-02" not in run(stopped_ivig((), last_days=100, hook=hook), hook)


def test_cont02_preliminary_ck_counts_as_monitoring() -> None:
    rec = stopped_ivig((ck(150, 10, status="preliminary"),), last_days=100)
    assert "CONT-02" not in run(rec)


def test_cont02_never_given_is_silent() -> None:
    assert run(record(ck=(ck(500, 200),))) == {}


# --- CONT-03 possible relapse -------------------------------------------------------------------


@pytest.mark.parametrize(("value", "fires"), [(575, False), (576, False), (577, True)])
def test_cont03_ck_above_3x_uln_after_stop(value: int, fires: bool) -> None:
    rec = stopped_ivig((ck(value, 10, uln=192, uln_assumed=True),), last_days=171, gender="female")
    advice = run(rec).get("CONT-03")
    assert (advice is not None) is fires
    if advice:
        assert advice.indicator == "warning"
        assert advice.values["ck_x_uln"] == "3.0"
        assert any("Assumed ULN 192 U/L" in c for c in advice.caveats)


def test_cont03_relapse_scenario_values() -> None:
    rec = stopped_ivig((ck(1500, 5, uln=192, uln_assumed=True),), last_days=171)
    advice = run(rec)["CONT-03"]
    assert advice.values["ck"] == "1,500" and advice.values["ck_x_uln"] == "7.8"
    assert advice.values["days_after_ivig"] == "166"
    assert advice.suggestions == ()
    assert advice.ck_trend


@pytest.mark.parametrize(("ck_day", "fires"), [(100, False), (99, True)])
def test_cont03_ck_must_be_dated_after_the_last_ivig(ck_day: int, fires: bool) -> None:
    rec = stopped_ivig((ck(3000, ck_day, hour=18),), last_days=100)
    assert ("CONT-03" in run(rec)) is fires


def test_cont03_only_the_latest_ck_counts() -> None:
    rec = stopped_ivig((ck(3000, 50), ck(200, 10)), last_days=100)
    assert "CONT-03" not in run(rec)


@pytest.mark.parametrize(("last", "fires"), [(56, False), (57, True)])
def test_cont03_active_order_counts_once_last_dose_is_over_56_days(last: int, fires: bool) -> None:
    rec = on_ivig((ck(3000, 1),), last_days=last)
    assert ("CONT-03" in run(rec)) is fires


def test_cont03_order_select_with_ivig_drafted() -> None:
    rec = on_ivig((ck(3000, 1),), last_days=60, hook="order-select", drafted=True)
    assert run(rec, "order-select")["CONT-03"].indicator == "warning"
    rec = on_ivig((ck(3000, 1),), last_days=60, hook="order-select")
    assert "CONT-03" not in run(rec, "order-select")
    rec = on_ivig((ck(3000, 1),), last_days=60, hook="order-sign", drafted=True)
    assert "CONT-03" not in run(rec, "order-sign")


def test_cont03_preliminary_ck_is_used_and_said() -> None:
    rec = stopped_ivig((ck(3000, 3, status="preliminary"),), last_days=100)
    advice = run(rec)["CONT-03"]
    assert advice.values["ck_preliminary"] == " (preliminary)"
    assert any("preliminary" in c for c in advice.caveats)
    assert "preliminary" in (advice.facts[0].note or "")


@pytest.mark.parametrize(("comparator", "value", "fires"), [(">", 924, True), ("<", 5000, False)])
def test_cont03_bounds(comparator: str, value: int, fires: bool) -> None:
    rec = stopped_ivig((ck(value, 3, comparator=comparator),), last_days=100)
    assert ("CONT-03" in run(rec)) is fires


def test_cont03_medication_request_only_given_counts() -> None:
    rec = record(
        ck=(ck(2000, 5),),
        ivig_given=(given(171, 70, resource_type="MedicationRequest", resource_id="mr-1"),),
        ivig_uses=(use(GAMUNEX, "completed", resource_id="mr-1"),),
    )
    advice = run(rec)["CONT-03"]
    last = next(f for f in advice.facts if f.label == "Last IVIG")
    assert last.value == "70 g" and "from the order" in (last.note or "")


# --- CONT-04 no response ------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "fires"), [(192, False), (193, True)])
def test_cont04_latest_ck_above_uln_on_ongoing_course(value: int, fires: bool) -> None:
    rec = on_ivig((ck(value, 10, uln=192),), course_days=272)
    advice = run(rec).get("CONT-04")
    assert (advice is not None) is fires
    if advice:
        assert advice.indicator == "info" and advice.ck_trend
        assert advice.values["course_months"] == "8"


@pytest.mark.parametrize(("course", "fires"), [(181, False), (182, True)])
def test_cont04_needs_182_day_course(course: int, fires: bool) -> None:
    assert ("CONT-04" in run(on_ivig((ck(900, 10, uln=192),), course_days=course))) is fires


def test_cont04_not_when_stopped_and_not_on_order_hooks() -> None:
    assert "CONT-04" not in run(stopped_ivig((ck(900, 10),), last_days=100))
    rec = on_ivig((ck(900, 10),), hook="order-select", drafted=True)
    assert "CONT-04" not in run(rec, "order-select")


def test_cont04_preliminary_latest_counts() -> None:
    advice = run(on_ivig((ck(90, 40), ck(900, 2, status="preliminary"))))["CONT-04"]
    assert advice.values["ck"] == "900"


# --- caveats ------------------------------------------------------------------------------------


def test_caveats_name_matched_ivig_unusable_ck_and_skipped_resources() -> None:
    by_name = medication("privigen infusion", ivig=True, matched_by_name=True)
    rec = record(
        ck=(ck(900, 10),),
        ivig_given=(given(300), given(20)),
        ivig_uses=(use(by_name, "active"),),
        unusable=(unusable("ck", "unit 'mmol/h' not recognised", 5),),
        skipped=(("MedicationAdministration", 2),),
    )
    caveats = run(rec)["CONT-04"].caveats
    assert "IVIG matched by name: privigen infusion" in caveats
    assert "CK result of 2025-06-26 not used: unit 'mmol/h' not recognised" in caveats
    assert "2 malformed MedicationAdministration resources skipped" in caveats


def test_converted_ck_says_so() -> None:
    value = ck(900, 10, original="15 ukat/L", converted=True)
    advice = run(on_ivig((value,)))["CONT-04"]
    assert "converted from 15 ukat/L" in (advice.facts[0].note or "")


# --- templates ----------------------------------------------------------------------------------


def _placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


# One firing example per rule, with realistic long values (comparators, thousands, preliminary).
def _examples() -> dict[str, Advice]:
    long_course = 3650
    examples = {
        "CONT-01": run(
            on_ivig(
                (ck(1000, 1200, comparator="<=", uln=1000), ck(1000, 10, uln=1000)),
                course_days=long_course,
                hook="order-sign",
                drafted=True,
            ),
            "order-sign",
        )["CONT-01"],
        "CONT-02": run(stopped_ivig((ck(12000, 360),), last_days=365))["CONT-02"],
        "CONT-03": run(
            stopped_ivig(
                (ck(150000, 1, comparator=">=", status="preliminary", uln=192),), last_days=2000
            )
        )["CONT-03"],
        "CONT-04": run(
            on_ivig(
                (ck(150000, 1, comparator=">=", status="preliminary", uln=192),),
                course_days=long_course,
            )
        )["CONT-04"],
    }
    return examples


@pytest.mark.parametrize("rule", CONT_RULES)
def test_template_matches_rules_md_and_covers_advice_values(rule: str) -> None:
    template = cards.template(rule)
    row = cards.rules_table()[rule]
    advice = _examples()[rule]
    assert template["rule"] == rule
    assert template["sources"] == row["sources"]
    for hook in template["hooks"]:
        assert hook in row["hooks"] or row["hooks"] == "all"
    indicators = template["indicator"]  # a list when it depends on the hook (CONT-01)
    for indicator in [indicators] if isinstance(indicators, str) else indicators:
        assert indicator in row["indicator"]
    assert advice.indicator in row["indicator"]
    for part in ("summary", "reasoning", "plan"):
        missing = _placeholders(template.get(part, "")) - set(advice.values)
        assert not missing, f"{rule} {part} uses {missing} that the advice does not give"
    summary = template["summary"].format_map(advice.values)
    assert len(summary) <= 139, summary
    for suggestion in advice.suggestions:
        key = suggestion.kind + (f":{suggestion.loinc}" if suggestion.loinc else "")
        assert key in template["suggestions"]
    assert 2 <= len(template["overrideReasons"]) <= 4
    assert all(r["code"] and r["display"] for r in template["overrideReasons"])
    assert 2 <= len(template["reasoning"].splitlines()) <= 3


# --- the shared scenarios, judged on the CONT topics --------------------------------------------

SCENARIO_SETTINGS = Settings(auth="off")


def scenario_advice(scenario: dict[str, Any]) -> dict[str, Advice]:
    """CONT advice per rule id across the services of the scenario's hook, each run on the record
    its own prefetch templates give (as a hook call builds it)."""
    return advice_by_rule(scenario, SCENARIO_SETTINGS, (continuation.evaluate,))


def test_scenario_cont_topics(scenario: dict[str, Any]) -> None:
    found = scenario_advice(scenario)
    expected = {
        p["topic"]: p["indicator"]
        for p in scenario["expect"]["present"]
        if p["topic"].startswith("CONT-")
    }
    absent = [t for t in scenario["expect"].get("absent", []) if t.startswith("CONT-")]
    assert {t: found[t].indicator for t in expected if t in found} == expected
    assert [t for t in absent if t in found] == []


def test_scenario_ck_monitoring_overdue_numbers() -> None:
    # notes: last IVIG 2025-02-02 (149 days ago), stopped; latest CK 108 days ago > 56 days
    advice = scenario_advice(named_scenario("ck-monitoring-overdue"))["CONT-02"]
    assert advice.values["stop_date"] == "2025-02-02"
    assert advice.values["days_since_last"] == "149"
    assert advice.values["last_ck_clause"] == "last CK 2025-03-15"
    assert advice.values["interval_days"] == "56"
    assert advice.values["due_date"] == "2025-05-10"
    assert advice.suggestions[0].loinc == "2157-6"


def test_scenario_relapse_numbers() -> None:
    # notes: last IVIG 2025-01-11 (171 days ago), CK 1,500 / 192 = 7.8×ULN after it
    advice = scenario_advice(named_scenario("relapse-after-ivig-stop"))["CONT-03"]
    assert advice.values["ck"] == "1,500" and advice.values["ck_x_uln"] == "7.8"
    assert advice.values["last_ivig"] == "2025-01-11"
    assert advice.values["days_since_last"] == "171"


def test_scenario_no_response_numbers() -> None:
    # notes: course since 2024-10-02 (272 days), ongoing; latest CK 900 / 192 = 4.7×
    advice = scenario_advice(named_scenario("ivig-no-ck-response"))["CONT-04"]
    assert advice.values["course_start"] == "2024-10-02"
    assert advice.values["course_days"] == "272"
    assert advice.values["ck"] == "900" and advice.values["ck_x_uln"] == "4.7"


@pytest.mark.parametrize(
    ("name", "indicator", "suggested"),
    [
        ("seed-remission-chart-open", "info", []),
        ("seed-remission-ivig-order", "warning", [("delete-draft", "mr-34"), ("order-lab", None)]),
    ],
)
def test_scenario_seed_remission_numbers(
    name: str, indicator: str, suggested: list[tuple[str, str | None]]
) -> None:
    # notes: last two CKs 110 and 96 U/L (ULN 308), 101 days apart; IVIG since 2022-05
    advice = scenario_advice(named_scenario(name))["CONT-01"]
    assert advice.indicator == indicator
    assert (advice.values["ck_prev"], advice.values["ck"]) == ("110", "96")
    assert advice.values["gap_days"] == "101"
    assert advice.values["ck_uln"] == "308"
    assert advice.values["course_start"] == "2022-05-02"
    assert [
        (s.kind, s.target.resource_id if s.target else None) for s in advice.suggestions
    ] == suggested
