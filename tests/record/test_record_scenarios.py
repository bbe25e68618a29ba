"""build_record over the reference scenarios (the optional set beside the repository, when it is
there): the numbers each one's ``notes`` state.

The record is built straight from the scenario (the whole ``record`` Bundle as the gathered
resources, ``draftOrders`` as the drafts), so this checks normalization alone; the prefetch and
FHIR-server paths are tested by the fhir layer and end to end.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest

from cds_service.fhir.data import FhirData
from cds_service.record.build import build_record
from cds_service.record.dosing import dose_grams
from cds_service.record.model import CkValue, MedicationUse, PatientRecord
from cds_service.settings import Settings
from tests.conftest import load_scenarios


def record_of(scenario: dict[str, Any]) -> PatientRecord:
    context = scenario["context"]
    drafts = context.get("draftOrders", {}).get("entry", [])
    data = FhirData(
        resources=tuple(e["resource"] for e in scenario["record"]["entry"]),
        drafts=tuple(e["resource"] for e in drafts),
        selections=tuple(context.get("selections", ())),
    )
    body = {"hook": scenario["hook"], "hookInstance": "test", "context": context}
    return build_record(data, body, Settings(), date.fromisoformat(scenario["today"]))


def x_uln(value: CkValue) -> Decimal:
    """×ULN as the cards show it (one decimal)."""
    return value.times_uln.quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)


def cycle_grams(use: MedicationUse) -> Decimal:
    assert use.dose is not None
    grams = dose_grams(use.dose, use.medication)
    assert grams is not None
    return grams * use.dose.days


def days_before(today: date, day: date) -> int:
    return (today - day).days


# --- what each scenario's notes say, checked on the record --------------------------------------


def ck_high_five_weeks_after_stop(r: PatientRecord, today: date) -> None:
    # "Stopped 35 days ago (28-55); latest CK after the stop 4,000 / 308 = 13.0x."
    (course,) = r.statin_uses
    assert course.status == "stopped" and course.end_date is not None
    assert days_before(today, course.end_date) == 35
    latest = r.ck[-1]
    assert (latest.value, latest.uln, x_uln(latest)) == (4000, 308, Decimal("13.0"))
    assert latest.day > course.end_date


def ck_monitoring_overdue(r: PatientRecord, today: date) -> None:
    # "Last IVIG 2025-02-02 (149 days ago): stopped; latest CK 108 days ago."
    assert r.ivig_given[-1].day == date(2025, 2, 2)
    assert days_before(today, r.ivig_given[-1].day) == 149
    assert days_before(today, r.ck[-1].day) == 108
    assert all(g.resource_type == "MedicationAdministration" for g in r.ivig_given)
    assert not any(u.status in ("active", "on-hold") for u in r.ivig_uses)


def first_ivig_obese_no_iga(r: PatientRecord, today: date) -> None:
    # "Order 200 g = 2 g/kg x actual weight" (actual 100 kg); no IgA on file.
    (draft,) = r.drafted_ivig
    assert cycle_grams(draft) == 200
    assert r.weight[-1].value == 100 and r.height[-1].value == 175
    assert r.iga == ()
    assert r.ivig_given == ()


def hmgcr_positive_untreated(r: PatientRecord, today: date) -> None:
    # "Anti-HMGCR 85 (positive) 30 days ago, no IVIG given."
    (antibody,) = r.hmgcr
    assert antibody.value == 85 and "POS" in antibody.interpretation
    assert days_before(today, antibody.day) == 30
    assert r.ivig_given == () and r.ivig_uses == ()


def ivig_iga_deficient(r: PatientRecord, today: date) -> None:
    # "IBW 56.9 kg vs actual 60 kg; 60 g per cycle." (IgA 4 mg/dL: the deficiency range)
    (draft,) = r.drafted_ivig
    assert cycle_grams(draft) == 60
    assert r.weight[-1].value == 60 and r.height[-1].value == 165
    assert r.iga[-1].value == 4 and r.iga[-1].ref_low == 61


def ivig_low_iga_no_weight(r: PatientRecord, today: date) -> None:
    # "7 <= 40 < 61: low, not deficient. No weight."
    latest = r.iga[-1]
    assert latest.value == 40 and latest.ref_low == 61 and latest.comparator is None
    assert r.weight == ()
    assert len(r.drafted_ivig) == 1


def ivig_no_ck_response(r: PatientRecord, today: date) -> None:
    # "Course since 2024-10-02 (272 days), ongoing; latest CK 900 / 192 = 4.7x."
    assert r.ivig_given[0].day == date(2024, 10, 2)
    assert days_before(today, r.ivig_given[0].day) == 272
    assert any(u.status == "active" for u in r.ivig_uses)
    latest = r.ck[-1]
    assert (latest.value, latest.uln, x_uln(latest)) == (900, 192, Decimal("4.7"))


def ivig_stale_creatinine_estrogen(r: PatientRecord, today: date) -> None:
    # "Creatinine 91 days old. Estradiol active. 104 g <= 2.2 x 52.4."
    assert days_before(today, r.creatinine[-1].day) == 91
    assert [u.status for u in r.estrogen_uses] == ["active"]
    (draft,) = r.drafted_ivig
    assert cycle_grams(draft) == 104


def persistent_ck_after_statin_stop(r: PatientRecord, today: date) -> None:
    # "Stopped 2025-03-01, 122 days ago; latest CK 1,800 / 192 = 9.4x ULN; no anti-HMGCR."
    (course,) = r.statin_uses
    assert course.end_date == date(2025, 3, 1) and days_before(today, course.end_date) == 122
    latest = r.ck[-1]
    assert (latest.value, latest.uln, x_uln(latest)) == (1800, 192, Decimal("9.4"))
    assert r.hmgcr == ()


def relapse_after_ivig_stop(r: PatientRecord, today: date) -> None:
    # "Last IVIG 2025-01-11 (171 days ago, order completed). CK 1,500 / 192 = 7.8x after it."
    assert r.ivig_given[-1].day == date(2025, 1, 11)
    assert days_before(today, r.ivig_given[-1].day) == 171
    assert [u.status for u in r.ivig_uses] == ["completed"]
    # the completed order has administrations after it: it is not counted again
    assert all(g.resource_type == "MedicationAdministration" for g in r.ivig_given)
    latest = r.ck[-1]
    assert (latest.value, x_uln(latest)) == (1500, Decimal("7.8"))
    assert latest.day > r.ivig_given[-1].day


def seed_remission_chart_open(r: PatientRecord, today: date) -> None:
    # "Last two CKs 110 and 96 U/L (ULN 308), 101 days apart, none above ULN in 182 days;
    # IVIG order active since 2022-05-01, course 3 years."
    older, newer = r.ck[-2:]
    assert (older.value, newer.value, older.uln, newer.uln) == (110, 96, 308, 308)
    assert (newer.day - older.day).days == 101
    assert not any(c.value > c.uln for c in r.ck if days_before(today, c.day) <= 182)
    standing = [(u.status, u.authored_on) for u in r.ivig_uses if not u.drafted]
    assert standing == [("active", date(2022, 5, 1))]
    assert days_before(today, r.ivig_given[0].day) >= 3 * 365
    # the first CK of the story: "CK 6950 U/L, ULN 308 → 22.6×" (clinical-evidence.md §2)
    assert (r.ck[0].value, x_uln(r.ck[0])) == (6950, Decimal("22.6"))


def seed_remission_ivig_order(r: PatientRecord, today: date) -> None:
    # "Remission (110 and 96 U/L, ULN 308, 14 weeks apart). IgA never measured. Age 67.
    # Order 70 g per cycle."
    seed_remission_chart_open(r, today)
    assert r.iga == ()
    assert r.age_on(today) == 67
    (draft,) = r.drafted_ivig
    assert cycle_grams(draft) == 70


def statin_ck_4_to_10x(r: PatientRecord, today: date) -> None:
    # "1,000 / 192 = 5.2x ULN."
    latest = r.ck[-1]
    assert (latest.value, latest.uln, x_uln(latest)) == (1000, 192, Decimal("5.2"))
    assert [u.status for u in r.statin_uses] == ["active"]


def statin_ck_over_10x_assumed_uln(r: PatientRecord, today: date) -> None:
    # "No referenceRange: assumed female ULN 192 U/L, 27.1x."
    latest = r.ck[-1]
    assert latest.uln_assumed and latest.uln == 192 and r.gender == "female"
    assert x_uln(latest) == Decimal("27.1")


def statin_ck_over_40x(r: PatientRecord, today: date) -> None:
    # "14,000 / 200 (lab ULN) = 70.0x ULN."
    latest = r.ck[-1]
    assert not latest.uln_assumed
    assert (latest.value, latest.uln, x_uln(latest)) == (14000, 200, Decimal("70.0"))


def statin_ck_under_4x(r: PatientRecord, today: date) -> None:
    # "600 / 308 = 1.9x ULN."
    latest = r.ck[-1]
    assert (latest.value, latest.uln, x_uln(latest)) == (600, 308, Decimal("1.9"))


def statin_rechallenge_hmgcr_positive(r: PatientRecord, today: date) -> None:
    # "CK is back under ULN and the stop was more than 8 weeks ago." (anti-HMGCR 90 on file)
    latest = r.ck[-1]
    assert latest.value <= latest.uln
    courses = [u for u in r.statin_uses if u.status == "stopped"]
    assert courses[0].end_date is not None and days_before(today, courses[0].end_date) > 56
    assert [u.resource_id for u in r.drafted_statins] == ["mr-94"]
    assert r.hmgcr[-1].value == 90


def statin_rechallenge_too_soon(r: PatientRecord, today: date) -> None:
    # "CK 9,500 / 308 = 30.8x four days before the stop (2025-06-01, 30 days ago); latest 900 =
    # 2.9x. The drafted statin..."
    stop = next(u.end_date for u in r.statin_uses if u.status == "stopped")
    assert stop == date(2025, 6, 1) and days_before(today, stop) == 30
    peak = max(r.ck, key=lambda c: c.value)
    assert (peak.value, x_uln(peak), (stop - peak.day).days) == (9500, Decimal("30.8"), 4)
    assert (r.ck[-1].value, x_uln(r.ck[-1])) == (900, Decimal("2.9"))
    assert [u.resource_id for u in r.drafted_statins] == ["mr-148"]


# --- rules.md revision 2 ---------------------------------------------------------------------


def r2_ck_lower_bound_exactly_10x(r: PatientRecord, today: date) -> None:
    # "'>=3080' is at least 3,080 = 10.0x ULN" (ULN 308 from the lab's range).
    (latest,) = r.ck
    assert (latest.comparator, latest.value, latest.uln) == (">=", 3080, 308)
    assert latest.times_uln == 10 and not latest.uln_assumed
    assert [u.status for u in r.statin_uses] == ["active"]


def r2_future_dated_ck_ignored(r: PatientRecord, today: date) -> None:
    # "a result whose day is after today is not usable. The latest usable CK is 600 / 192 = 3.1x
    # (11 days ago)".
    (usable,) = r.ck
    assert (usable.value, x_uln(usable), days_before(today, usable.day)) == (
        600, Decimal("3.1"), 11)
    (future,) = r.unusable
    assert (future.kind, future.resource_id) == ("ck", "obs-188")
    assert future.reason == "dated after today"
    assert future.time is not None and future.time.date() == date(2025, 7, 10)


def r2_on_hold_statement_is_active_statin(r: PatientRecord, today: date) -> None:
    # "a MedicationStatement active or on-hold is an active statin. 1,600 / 308 = 5.2x".
    (statement,) = r.statin_uses
    assert (statement.resource_type, statement.status) == ("MedicationStatement", "on-hold")
    assert (r.ck[-1].value, x_uln(r.ck[-1])) == (1600, Decimal("5.2"))


def r2_plan_intent_statin_not_active(r: PatientRecord, today: date) -> None:
    # "'plan' is not an order, so no statin is active. 8,500 / 192 = 44.3x".
    (plan,) = r.statin_uses
    assert (plan.status, plan.intent, plan.is_order) == ("active", "plan", False)
    assert (r.ck[-1].value, x_uln(r.ck[-1])) == (8500, Decimal("44.3"))


def r2_resolved_hmgcr_condition_statin_draft(r: PatientRecord, today: date) -> None:
    # "a Condition of any clinicalStatus counts, resolved included".
    (condition,) = r.conditions
    assert condition.clinical_status == "resolved" and not condition.void
    assert "HMGCR" in condition.text and condition.day == date(2021, 3, 1)
    assert [u.resource_id for u in r.drafted_statins] == ["mr-167"]
    assert r.hmgcr == ()


def r2_duplicate_ck_counted_once_remission(r: PatientRecord, today: date) -> None:
    # "The last two CKs are then 110 (2025-03-15) and 95 (2025-06-20), both <= 192 and 97 days
    # apart; course since 2024-10-02 (272 days)."
    older, newer = r.ck[-2:]
    assert (older.value, older.day, newer.value, newer.day) == (
        110, date(2025, 3, 15), 95, date(2025, 6, 20))
    assert older.uln == newer.uln == 192 and (newer.day - older.day).days == 97
    assert [c.day for c in r.ck].count(date(2025, 6, 20)) == 1
    first = r.ivig_given[0].day
    assert first == date(2024, 10, 2) and days_before(today, first) == 272


def r2_egfr_unit_with_space(r: PatientRecord, today: date) -> None:
    # "the unit text 'mL/min/1.73 m2' (no UCUM code) is mL/min/1.73m2: eGFR 48 < 60"; IBW 75 kg.
    (egfr,) = r.egfr
    assert (egfr.value, egfr.unit, egfr.converted) == (48, "mL/min/1.73m2", False)
    assert days_before(today, egfr.day) <= 30
    assert r.weight[-1].value == 80 and r.height[-1].value == 180


def r2_statin_medication_reference_via_include(r: PatientRecord, today: date) -> None:
    # "medicationReference Medication/med-atorvastatin-40 ... (RxNorm 617311). 3,400 / 308 = 11.0x
    # on an active statin".
    (order,) = r.statin_uses
    assert order.status == "active" and order.medication.identified
    assert "http://www.nlm.nih.gov/research/umls/rxnorm|617311" in order.medication.codes
    assert (r.ck[-1].value, x_uln(r.ck[-1])) == (3400, Decimal("11.0"))


def r2_two_ivig_drafts_add_up(r: PatientRecord, today: date) -> None:
    # "70 + 70 = 140 g > 2.2 x IBW 61.4 kg = 135.1 g (each order alone, 70 g, is under it).
    # Actual 64 kg is 4% over IBW".
    assert [u.resource_id for u in r.drafted_ivig] == ["mr-178", "mr-179"]
    assert [cycle_grams(u) for u in r.drafted_ivig] == [70, 70]
    assert r.gender == "male" and r.weight[-1].value == 64 and r.height[-1].value == 165
    assert r.ivig_given == ()


def r2_infusion_28_days_ago_not_counted(r: PatientRecord, today: date) -> None:
    # "2025-06-03 is 28 days ago, the previous cycle, so G28 = 0 and 60 g <= 2.2 x IBW 52.4 kg".
    (infusion,) = r.ivig_given
    assert (infusion.day, infusion.grams) == (date(2025, 6, 3), 60)
    assert days_before(today, infusion.day) == 28
    (draft,) = r.drafted_ivig
    assert cycle_grams(draft) == 60
    assert r.weight[-1].value == 70 and r.height[-1].value == 160


def r2_refuted_dvt_no_thrombosis_risk(r: PatientRecord, today: date) -> None:
    # "a Condition whose verificationStatus is refuted is ignored everywhere"; IBW 56.9 kg vs 60
    # kg actual; 60 g.
    assert r.conditions == ()
    assert r.age_on(today) == 45 and r.estrogen_uses == ()
    (draft,) = r.drafted_ivig
    assert cycle_grams(draft) == 60


def r2_order_select_draft_without_medication(r: PatientRecord, today: date) -> None:
    # "the selected draft has no medication[x] and no intent ... it is ignored without a card";
    # "simvastatin active, CK 1,500 / 192 = 7.8x".
    assert r.drafted_statins == () and r.drafted_ivig == () and r.unidentified_drafts == ()
    assert [u.status for u in r.statin_uses] == ["active"]
    assert (r.ck[-1].value, r.ck[-1].uln, x_uln(r.ck[-1])) == (1500, 192, Decimal("7.8"))


# Scenarios whose record holds a result the rules cannot use, on purpose.
UNUSABLE_ON_PURPOSE = frozenset({"r2-future-dated-ck-ignored"})
# Order-hook scenarios whose only draft is unfinished (no medication yet), on purpose.
NO_DRAFT_ON_PURPOSE = frozenset({"r2-order-select-draft-without-medication"})


EXPECTATIONS: dict[str, Callable[[PatientRecord, date], None]] = {
    "ck-high-five-weeks-after-stop": ck_high_five_weeks_after_stop,
    "ck-monitoring-overdue": ck_monitoring_overdue,
    "first-ivig-obese-no-iga": first_ivig_obese_no_iga,
    "hmgcr-positive-untreated": hmgcr_positive_untreated,
    "ivig-iga-deficient": ivig_iga_deficient,
    "ivig-low-iga-no-weight": ivig_low_iga_no_weight,
    "ivig-no-ck-response": ivig_no_ck_response,
    "ivig-stale-creatinine-estrogen": ivig_stale_creatinine_estrogen,
    "persistent-ck-after-statin-stop": persistent_ck_after_statin_stop,
    "relapse-after-ivig-stop": relapse_after_ivig_stop,
    "seed-remission-chart-open": seed_remission_chart_open,
    "seed-remission-ivig-order": seed_remission_ivig_order,
    "statin-ck-4-to-10x": statin_ck_4_to_10x,
    "statin-ck-over-10x-assumed-uln": statin_ck_over_10x_assumed_uln,
    "statin-ck-over-40x": statin_ck_over_40x,
    "statin-ck-under-4x": statin_ck_under_4x,
    "statin-rechallenge-hmgcr-positive": statin_rechallenge_hmgcr_positive,
    "statin-rechallenge-too-soon": statin_rechallenge_too_soon,
    "r2-ck-lower-bound-exactly-10x": r2_ck_lower_bound_exactly_10x,
    "r2-future-dated-ck-ignored": r2_future_dated_ck_ignored,
    "r2-on-hold-statement-is-active-statin": r2_on_hold_statement_is_active_statin,
    "r2-plan-intent-statin-not-active": r2_plan_intent_statin_not_active,
    "r2-resolved-hmgcr-condition-statin-draft": r2_resolved_hmgcr_condition_statin_draft,
    "r2-duplicate-ck-counted-once-remission": r2_duplicate_ck_counted_once_remission,
    "r2-egfr-unit-with-space": r2_egfr_unit_with_space,
    "r2-statin-medication-reference-via-include": r2_statin_medication_reference_via_include,
    "r2-two-ivig-drafts-add-up": r2_two_ivig_drafts_add_up,
    "r2-infusion-28-days-ago-not-counted": r2_infusion_28_days_ago_not_counted,
    "r2-refuted-dvt-no-thrombosis-risk": r2_refuted_dvt_no_thrombosis_risk,
    "r2-order-select-draft-without-medication": r2_order_select_draft_without_medication,
}


# The optional reference scenarios beside the repository (the project's own set, tests/scenarios,
# is judged end to end by its expectations; its records' numbers are not restated here).
SHARED = {
    key.split("/")[-1]: scenario
    for key, scenario in load_scenarios().items()
    if key.startswith("shared/") or "/" not in key
}


@pytest.mark.parametrize("name", sorted(SHARED))
def test_record_of_scenario(name: str) -> None:
    scenario = SHARED[name]
    record = record_of(scenario)
    today = date.fromisoformat(scenario["today"])

    # Every scenario: identity, sorted series, nothing unreadable, drafts as the hook says.
    assert record.patient_id == scenario["context"]["patientId"]
    assert record.hook == scenario["hook"]
    assert record.gender in ("male", "female") and record.birth_date is not None
    for series in (record.ck, record.iga, record.hmgcr, record.weight, record.height,
                   record.creatinine, record.egfr):
        assert [v.time for v in series] == sorted(v.time for v in series)
    assert [g.time for g in record.ivig_given] == sorted(g.time for g in record.ivig_given)
    assert record.unusable == () or name in UNUSABLE_ON_PURPOSE
    assert record.unidentified_drafts == () and record.skipped == ()
    drafted = record.drafted_statins + record.drafted_ivig
    assert bool(drafted) is (scenario["hook"] != "patient-view" and name not in NO_DRAFT_ON_PURPOSE)

    if name not in EXPECTATIONS:
        pytest.fail(f"scenario {name} has no expectations in {__name__}: add its notes' numbers")
    EXPECTATIONS[name](record, today)
