"""DOSE-01…04: IVIG dose by dosing weight (rules.md), the arithmetic of clinical-evidence.md §6,
and the boundaries at 10 % (weight excess, dose band for k = 1 and 2), 2.2 g/kg, the 28-day
window and the 90-day weight."""

from __future__ import annotations

import dataclasses
from datetime import date
from decimal import Decimal

import pytest

from cds_service.advice import dosing
from cds_service.advice.model import Advice
from cds_service.record.dosing import DosingWeight, dosing_weight
from cds_service.record.model import Medication, OrderedDose, PatientRecord
from cds_service.settings import ClinicalSettings
from tests.advice.builders import (
    GAMUNEX,
    TODAY,
    condition,
    given,
    lab,
    medication,
    record,
    use,
)

ESTRADIOL = medication("estradiol 1 MG Oral Tablet", estrogen=True)

IDEAL = ClinicalSettings(ivig_dosing_weight="ideal")
ADJUSTED = ClinicalSettings(ivig_dosing_weight="adjusted")
ACTUAL = ClinicalSettings(ivig_dosing_weight="actual")
ADULT = date(1975, 8, 8)  # 49 today: no age risk


def draft(
    grams: str = "35", days: int = 2, unit: str = "g", med: Medication = GAMUNEX, rid: str = "mr-1"
):
    return use(
        med,
        "draft",
        drafted=True,
        authored=0,
        resource_id=rid,
        dose=OrderedDose(Decimal(grams), unit, days, f"{grams} {unit} daily for {days} days"),
    )


def patient(
    sex: str = "male",
    cm: str | None = "175",
    kg: str | None = "100",
    *,
    drafts=None,
    weight_days: int = 11,
    **kw,
) -> PatientRecord:
    kw.setdefault("birth_date", ADULT)
    return record(
        hook=kw.pop("hook", "order-sign"),
        gender=sex,
        weight=() if kg is None else (lab("weight", kg, weight_days),),
        height=() if cm is None else (lab("height", cm, weight_days),),
        ivig_uses=(draft(),) if drafts is None else tuple(drafts),
        **kw,
    )


def rules(rec: PatientRecord, clinical: ClinicalSettings = IDEAL) -> dict[str, Advice]:
    return {a.rule_id: a for a in dosing.evaluate(rec, TODAY, clinical, rec.hook)}


def rows(advice: Advice) -> dict[str, str]:
    return dict(advice.rows)


def test_only_on_order_hooks_with_ivig_drafted():
    assert rules(patient(hook="patient-view")) == {}
    assert rules(patient(drafts=())) == {}
    assert rules(patient(drafts=(dataclasses.replace(draft(), subcutaneous=True),))) == {}
    assert "DOSE-01" in rules(patient(hook="order-select"))


# --- DOSE-01: the arithmetic --------------------------------------------------------------------


def test_dose_01_reproduces_worked_example_one_under_adjusted_policy():
    # clinical-evidence.md §6: M 175 cm 100 kg: IBW 70.46, DDW 82.28 → 164.6 g (1646 mL),
    # 82.3 / 32.9 g per day, maintenance 82.3 g (823 mL); rates on 100 kg: 60 and 240 mL/h.
    advice = rules(patient(), ADJUSTED)["DOSE-01"]
    assert advice.indicator == "info"
    r = rows(advice)
    assert r["Actual weight"] == "100 kg"
    assert r["Ideal body weight (Devine)"] == "70.5 kg"
    assert r["Adjusted weight (IBW + 0.4 × (actual − IBW))"] == "82.3 kg"
    assert r["Dosing weight used"] == "82.3 kg: adjusted body weight"
    assert r["Induction 2 g/kg"] == "164.6 g = 1,646 mL at 10 %"
    assert r["Induction over 2 days"] == "82.3 g/day"
    assert r["Induction over 5 days"] == "32.9 g/day"
    assert r["Maintenance 1 g/kg every 4 weeks"] == "82.3 g = 823 mL at 10 %"
    assert r["Initial rate 0.01 mL/kg/min × actual weight"] == "60 mL/h"
    assert r["Maximum rate 0.04 mL/kg/min × actual weight"] == "240 mL/h"
    assert advice.values["induction_g"] == "164.6 g"
    assert advice.values["basis"] == "adjusted body weight"


@pytest.mark.parametrize(
    "sex,cm,kg,policy,used,induction,per2,per5,maint",
    [
        ("male", "175", "100", ADJUSTED, "82.3 kg", "164.6 g", "82.3 g", "32.9 g", "82.3 g"),
        ("female", "160", "58", ADJUSTED, "54.6 kg", "109.3 g", "54.6 g", "21.9 g", "54.6 g"),
        ("female", "150", "70", ADJUSTED, "70 kg", "140 g", "70 g", "28 g", "70 g"),
        ("male", "180", "60", ADJUSTED, "60 kg", "120 g", "60 g", "24 g", "60 g"),
        ("female", "165", "120", ADJUSTED, "82.1 kg", "164.3 g", "82.1 g", "32.9 g", "82.1 g"),
        ("male", "175", "100", IDEAL, "70.5 kg", "140.9 g", "70.5 g", "28.2 g", "70.5 g"),
        ("female", "165", "120", IDEAL, "56.9 kg", "113.8 g", "56.9 g", "22.8 g", "56.9 g"),
        ("female", "150", "70", IDEAL, "70 kg", "140 g", "70 g", "28 g", "70 g"),
    ],
)
def test_dose_01_worked_examples(sex, cm, kg, policy, used, induction, per2, per5, maint):
    values = rules(patient(sex, cm, kg), policy)["DOSE-01"].values
    assert values["dosing_kg"] == used
    assert values["induction_g"] == induction
    assert values["induction_2d_g"] == per2
    assert values["induction_5d_g"] == per5
    assert values["maintenance_g"] == maint


def test_dose_01_says_why_the_actual_weight_was_used():
    short = rules(patient("female", "150", "70"))["DOSE-01"]
    assert short.values["basis"] == "actual weight (height < 152.4 cm)"
    light = rules(patient("male", "180", "60"))["DOSE-01"]
    assert light.values["basis"] == "actual weight (actual < IBW)"
    child = rules(patient(birth_date=date(2010, 1, 1)))["DOSE-01"]
    assert child.values["basis"] == "actual weight (age < 18)"
    policy = rules(patient(), ACTUAL)["DOSE-01"]
    assert policy.values["basis"] == "actual weight (site policy)"


def test_dose_01_caps_the_maximum_rate_with_renal_or_thrombosis_risk():
    # age 67: SAFE-02 and SAFE-03 conditions → 0.03 mL/kg/min × 100 kg = 180 mL/h
    r = rows(rules(patient(birth_date=date(1958, 1, 1)))["DOSE-01"])
    label = "Maximum rate 0.03 mL/kg/min × actual weight (capped: age 67)"
    assert r[label] == "180 mL/h"
    egfr = lab("egfr", "50", 5)
    r = rows(rules(patient(egfr=(egfr,)))["DOSE-01"])
    assert r["Maximum rate 0.03 mL/kg/min × actual weight (capped: eGFR 50)"] == "180 mL/h"


@pytest.mark.parametrize(
    "risk,reason",
    [
        (
            dict(conditions=(dataclasses.replace(
                condition("Deep vein thrombosis", clinical_status="resolved"), kinds=("vte",)
            ),)),
            "venous thromboembolism",
        ),
        (dict(estrogen_uses=(use(ESTRADIOL, "active"),)), "estrogen therapy"),
    ],
)
def test_dose_01_caps_the_maximum_rate_for_a_thrombosis_risk_alone(risk, reason):
    # Mutation-run gap: a VTE Condition (any clinicalStatus) or an estrogen, age 49, no renal
    # risk: 0.03 mL/kg/min × 100 kg × 60 = 180 mL/h, not 0.04 (240 mL/h).
    rec = patient(**risk)
    assert rec.age_on(TODAY) == 49 and not rec.egfr and not rec.creatinine
    r = rows(rules(rec)["DOSE-01"])
    assert r[f"Maximum rate 0.03 mL/kg/min × actual weight (capped: {reason})"] == "180 mL/h"
    assert rules(rec)["DOSE-01"].values["max_ml_h"] == "180"
    assert rules(patient())["DOSE-01"].values["max_ml_h"] == "240"


@pytest.mark.parametrize("sex", ["other", "unknown", None])
def test_dose_01_other_or_unknown_sex_uses_45_5_kg_and_says_so(sex):
    # rules.md r2 "Dosing weight": other and unknown sex use the 45.5 kg base, and the card says
    # so. 175 cm = 68.9 in: 45.5 + 2.3 × 8.898 = 65.96 kg (male would be 70.46 kg).
    advice = rules(patient(sex))["DOSE-01"]
    assert rows(advice)["Ideal body weight (Devine)"] == "66 kg"
    assert advice.values["dosing_kg"] == "66 kg"
    assert "Sex not recorded as male or female: female Devine formula used (lower)" in (
        advice.caveats
    )
    male = rules(patient("male"))["DOSE-01"]
    assert not any("Sex not recorded" in c for c in male.caveats)


def test_dose_01_says_when_the_rate_cap_rests_on_a_preliminary_result():
    # rules.md "Usable observation": a card whose decision used a preliminary value says so.
    egfr = lab("egfr", "50", 5, status="preliminary")
    advice = rules(patient(egfr=(egfr,)))["DOSE-01"]
    assert rows(advice)["Maximum rate 0.03 mL/kg/min × actual weight (capped: eGFR 50)"] == (
        "180 mL/h"
    )
    assert "eGFR 50 mL/min/1.73m2 (2025-06-26) is a preliminary result" in advice.caveats


def test_dose_01_rates_use_the_actual_weight_and_round_to_whole_ml_per_hour():
    # 82.28 kg actual (hypothetical): 0.01 × 82.28 × 60 = 49.37 → 49; 0.04 → 197.47 → 197
    rec = patient(kg="82.28", cm="175")
    r = rows(rules(rec)["DOSE-01"])
    assert r["Initial rate 0.01 mL/kg/min × actual weight"] == "49 mL/h"
    assert r["Maximum rate 0.04 mL/kg/min × actual weight"] == "197 mL/h"


def test_dose_01_shows_this_order_per_kg_of_dosing_weight():
    r = rows(rules(patient(drafts=(draft("100", 2),)))["DOSE-01"])
    assert r["This order (Gamunex-C 10%)"] == (
        "100 g/day × 2 days = 200 g = 2.84 g/kg of dosing weight"
    )


def test_dose_01_says_when_the_order_cannot_be_converted_to_grams():
    no_strength = medication("Immune globulin IV, human", ivig=True)
    advice = rules(patient(drafts=(draft("500", 2, "mL", no_strength),)))["DOSE-01"]
    assert any("could not be converted to grams" in c for c in advice.caveats)
    assert not any(label.startswith("This order") for label, _ in advice.rows)


def test_dose_01_warns_when_the_product_is_not_10_percent():
    five = medication("Octagam 5%", ivig=True, concentration="0.05")
    advice = rules(patient(drafts=(draft("35", 2, med=five),)))["DOSE-01"]
    assert any("not a 10 % product" in c for c in advice.caveats)


def test_dose_01_facts_carry_weight_and_height_with_dates_and_conversions():
    w = lab("weight", "99.790321", 11, original="220 [lb_av]", converted=True)
    rec = dataclasses.replace(patient(), weight=(w,))
    advice = rules(rec)["DOSE-01"]
    weight_fact = next(f for f in advice.facts if f.label == "Weight")
    assert weight_fact.day == date(2025, 6, 20)
    assert weight_fact.note == "converted from 220 [lb_av]"
    assert any("converted from 220 [lb_av]" in c for c in advice.caveats)


# --- DOSE-02 ------------------------------------------------------------------------------------


def dw_of(actual: str, used: str) -> DosingWeight:
    """A DosingWeight with exactly these kilograms (for boundary arithmetic)."""
    base = dosing_weight(patient(), TODAY, IDEAL)
    assert base is not None
    return dataclasses.replace(base, actual_kg=Decimal(actual), used_kg=Decimal(used))


@pytest.mark.parametrize(
    "used,fires",
    [("90", False), ("89.99", True), ("90.01", False)],  # excess exactly 10 %: not > 10 %
)
def test_dose_02_weight_excess_boundary(used, fires):
    rec = patient(drafts=(draft("100", 2),))  # 200 g = 2 g/kg × 100 kg
    advice = dosing.dose_02_actual_weight_dose(rec, TODAY, dw_of("100", used))
    assert (advice is not None) is fires


@pytest.mark.parametrize(
    "cycle_g,k",
    [
        ("180", 2),
        ("179.9", None),
        ("200", 2),
        ("220", 2),
        ("220.1", None),
        ("90", 1),
        ("89.9", None),
        ("100", 1),
        ("110", 1),
        ("110.1", None),
        ("150", None),
    ],
)
def test_dose_02_dose_band_plus_minus_10_percent_of_k_g_per_kg_actual(cycle_g, k):
    rec = patient(drafts=(draft(cycle_g, 1),))
    advice = dosing.dose_02_actual_weight_dose(rec, TODAY, dw_of("100", "70"))
    if k is None:
        assert advice is None
        return
    assert advice is not None and advice.values["k"] == str(k)
    (suggestion,) = advice.suggestions
    assert suggestion.kind == "update-draft"
    assert suggestion.target is rec.ivig_uses[0]
    assert suggestion.dose_g == Decimal(70 * k)
    assert suggestion.days == 1


def test_dose_02_scenario_numbers_obese_man_on_actual_weight():
    # 175 cm, 100 kg, ideal policy: IBW 70.46 kg; 100 g × 2 days = 200 g = 2 g/kg actual.
    found = rules(patient(drafts=(draft("100", 2),)))
    advice = found["DOSE-02"]
    assert advice.indicator == "warning"
    assert advice.values["ordered_g"] == "200 g"
    assert advice.values["corrected_g"] == "140.9 g"
    assert advice.values["excess_percent"] == "30"
    (suggestion,) = advice.suggestions
    # 2 × 70.4646 / 2 days = 70.46 g/day: DOSE-02 alone would round it to 70.5, but DOSE-03
    # fires too (200 g > 2.2 × 70.46 = 155 g) and its allowance, 2 g/kg − 0 g given, is rounded
    # down to 70.4: one dose per draft, the smaller (rules.md r2), on both cards.
    assert (suggestion.dose_g, suggestion.days) == (Decimal("70.4"), 2)
    assert advice.values["suggested_dose_g"] == "70.4 g"
    (same,) = found["DOSE-03"].suggestions
    assert (same.kind, same.target, same.dose_g, same.days) == (
        "update-draft", suggestion.target, Decimal("70.4"), 2
    )


def test_dose_02_alone_rounds_the_corrected_daily_dose_half_up():
    # 110 g × 1 day = 1.1 g/kg actual (k = 1); dosing weight 70.4646 → 70.5 g (DOSE-03 silent).
    found = rules(patient(drafts=(draft("110", 1),)))
    assert "DOSE-03" not in found
    (suggestion,) = found["DOSE-02"].suggestions
    assert (suggestion.dose_g, suggestion.days) == (Decimal("70.5"), 1)
    assert suggestion.recommended


def test_dose_02_judges_each_draft_by_its_own_grams():
    # rules.md r2: 60 g + 140 g = 200 g is 2 g/kg × actual 100 kg, but neither draft alone is
    # within 10 % of 1 or 2 g/kg × actual: no DOSE-02 (DOSE-03 adds them up and fires).
    two = (draft("60", 1, rid="mr-1"), draft("140", 1, rid="mr-2"))
    found = rules(patient(drafts=two))
    assert "DOSE-02" not in found
    assert found["DOSE-03"].values["ordered_g"] == "200 g"
    # each draft that matches gets its own correction, on one card
    both = (draft("100", 1, rid="mr-1"), draft("200", 1, rid="mr-2"))
    advice = dosing.dose_02_actual_weight_dose(patient(drafts=both), TODAY, dw_of("100", "70"))
    assert advice is not None
    targets = [(s.target.resource_id, s.dose_g) for s in advice.suggestions if s.target]
    # 2.2 × 70 = 154 < 300: DOSE-03 fires, 140 g remain, shared 1:2 → 46.6 and 93.3 g, each
    # smaller than DOSE-02's 70 g (k = 1) and 140 g (k = 2)
    assert targets == [("mr-1", Decimal("46.6")), ("mr-2", Decimal("93.3"))]
    assert [s.recommended for s in advice.suggestions] == [True, False]


def test_dose_02_silent_when_the_dosing_weight_is_the_actual_weight():
    assert "DOSE-02" not in rules(patient(drafts=(draft("100", 2),)), ACTUAL)
    assert "DOSE-02" not in rules(patient("male", "180", "60", drafts=(draft("60", 2),)))


def test_dose_02_silent_when_the_order_is_on_the_dosing_weight():
    assert "DOSE-02" not in rules(patient(drafts=(draft("70.5", 2),)))


# --- DOSE-03 ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cycle_g,fires",
    [("154", False), ("154.0", False), ("154.1", True)],
)
def test_dose_03_exactly_2_2_g_per_kg_does_not_fire(cycle_g, fires):
    # dosing weight 70 kg: maximum 2.2 × 70 = 154 g
    rec = patient(drafts=(draft(cycle_g, 1),))
    advice = dosing.dose_03_over_cycle_maximum(rec, TODAY, dw_of("100", "70"))
    assert (advice is not None) is fires


@pytest.mark.parametrize("days_ago,counted", [(0, True), (27, True), (28, False), (40, False)])
def test_dose_03_counts_ivig_given_in_the_28_days_up_to_today(days_ago, counted):
    # rules.md r2: G28 = days 0–27; a dose exactly 28 days ago is the previous cycle.
    # 100 g given + 60 g ordered = 160 g > 154 g only when the earlier dose counts
    rec = patient(drafts=(draft("60", 1),), ivig_given=(given(days_ago, 100),))
    advice = dosing.dose_03_over_cycle_maximum(rec, TODAY, dw_of("100", "70"))
    assert (advice is not None) is counted
    if counted:
        assert advice.values["given_28d_g"] == "100 g"
        # remaining allowance = 2 g/kg × 70 kg − 100 g = 40 g (not the 2.2 g/kg margin: 54 g)
        assert advice.values["remaining_g"] == "40 g"
        (suggestion,) = advice.suggestions
        assert (suggestion.kind, suggestion.dose_g, suggestion.days) == (
            "update-draft", Decimal("40.0"), 1
        )


def test_dose_03_total_shown_is_given_plus_ordered():
    # 30 g given + 130 g ordered = 160 g > 154 g; the total is neither part alone
    rec = patient(drafts=(draft("65", 2),), ivig_given=(given(3, 30),))
    advice = dosing.dose_03_over_cycle_maximum(rec, TODAY, dw_of("100", "70"))
    assert advice is not None
    values = advice.values
    assert (values["given_28d_g"], values["ordered_g"], values["total_g"]) == (
        "30 g", "130 g", "160 g"
    )
    assert dict(advice.rows)["Total"] == "160 g"
    assert (values["max_g"], values["margin_g"]) == ("140 g", "154 g")
    assert values["remaining_g"] == "110 g"
    (suggestion,) = advice.suggestions
    assert (suggestion.dose_g, suggestion.days) == (Decimal("55.0"), 2)  # 110 g over 2 days


def test_dose_03_first_order_can_fire_and_rounds_the_allowance_down():
    # fires above 2.2 × 70.4646 = 155.02 g; suggests 2 g/kg = 140.93 g over 3 days = 46.98 g/day
    # → 46.9 (never above the allowance)
    advice = rules(patient(drafts=(draft("70", 3),)))["DOSE-03"]
    assert advice.values["given_28d_g"] == "0 g"
    assert advice.values["max_g"] == "140.9 g"
    assert advice.values["margin_g"] == "155 g"
    assert advice.values["remaining_g"] == "140.9 g"
    (suggestion,) = advice.suggestions
    assert (suggestion.dose_g, suggestion.days) == (Decimal("46.9"), 3)
    assert advice.values["suggested_dose_g"] == "46.9 g"


def test_dose_03_two_drafts_add_up_and_share_the_allowance():
    # rules.md r2 (scenario r2-two-ivig-drafts-add-up): 70 + 70 = 140 g > 2.2 × 61.4 = 135.1 g
    # though each alone is under it; 2 g/kg × 61.4 = 122.8 g shared in proportion: 30.7 g/day
    # × 2 days on each draft.
    two = (draft("35", 2, rid="mr-a"), draft("35", 2, rid="mr-b"))
    rec = patient(drafts=two)
    one = dosing.dose_03_over_cycle_maximum(patient(drafts=two[:1]), TODAY, dw_of("64", "61.4"))
    assert one is None
    advice = dosing.dose_03_over_cycle_maximum(rec, TODAY, dw_of("64", "61.4"))
    assert advice is not None
    assert (advice.values["ordered_g"], advice.values["total_g"]) == ("140 g", "140 g")
    assert advice.values["drafts"] == "2"
    assert [(s.target.resource_id, s.dose_g, s.days) for s in advice.suggestions if s.target] == [
        ("mr-a", Decimal("30.7"), 2),
        ("mr-b", Decimal("30.7"), 2),
    ]
    assert advice.values["suggested"] == "30.7 g/day × 2 days; 30.7 g/day × 2 days"


def test_dose_03_nothing_remains_suggests_deleting_the_draft():
    # 160 g given ≥ 2 g/kg × 70.46 = 140.9 g: the remaining allowance is ≤ 0
    rec = patient(drafts=(draft("35", 2),), ivig_given=(given(10, 100), given(9, 60)))
    advice = rules(rec)["DOSE-03"]
    assert advice.values["remaining_g"] == "0 g"
    (suggestion,) = advice.suggestions
    assert (suggestion.kind, suggestion.target) == ("delete-draft", rec.ivig_uses[0])
    assert advice.values["suggested"] == "delete the order"
    assert [f.value for f in advice.facts if f.label == "IVIG given"] == ["100 g", "60 g"]


def test_dose_03_between_2_and_2_2_g_per_kg_given_a_new_order_is_deleted_too():
    # 145 g given (2.06 g/kg of 70.46) + 20 g ordered = 165 g > 155 g: nothing remains
    rec = patient(drafts=(draft("20", 1),), ivig_given=(given(5, 145),))
    (suggestion,) = rules(rec)["DOSE-03"].suggestions
    assert suggestion.kind == "delete-draft"


def test_dose_03_order_without_a_dose_fires_when_g28_alone_is_over():
    # The case: 120 g given in the last 28 days, limit 2.2 × 52.4 = 115.3 g, a new IVIG
    # order with no dose: G28 alone is over the limit.
    no_dose = dataclasses.replace(draft(), dose=None)
    rec = patient(drafts=(no_dose,), ivig_given=(given(7, 60), given(6, 60)))
    advice = dosing.dose_03_over_cycle_maximum(rec, TODAY, dw_of("60", "52.4"))
    assert advice is not None
    assert (advice.values["given_28d_g"], advice.values["ordered_g"], advice.values["total_g"]) == (
        "120 g", "0 g", "120 g"
    )
    assert any("no dose in grams stated on the order yet" in c for c in advice.caveats)
    (suggestion,) = advice.suggestions
    assert (suggestion.kind, suggestion.target) == ("delete-draft", no_dose)
    # under the limit, an order without a dose has nothing to judge
    rec = patient(drafts=(no_dose,), ivig_given=(given(7, 115),))
    assert dosing.dose_03_over_cycle_maximum(rec, TODAY, dw_of("60", "52.4")) is None


def test_dose_02_gives_no_dose_when_dose_03_says_delete():
    # DOSE-02 fires (100 g ≈ 1 g/kg actual) but 2 g/kg is already given: one answer per draft,
    # so DOSE-02 suggests no dose and says why; DOSE-03 suggests deleting the draft.
    rec = patient(drafts=(draft("100", 1),), ivig_given=(given(10, 150),))
    found = rules(rec)
    assert found["DOSE-02"].suggestions == ()
    assert any("no IVIG remains" in c for c in found["DOSE-02"].caveats)
    assert [s.kind for s in found["DOSE-03"].suggestions] == ["delete-draft"]


def test_dose_03_dose_without_grams_is_named():
    rec = patient(drafts=(draft("160", 1),), ivig_given=(given(5, None),))
    advice = rules(rec)["DOSE-03"]
    assert any("has no dose in grams" in c for c in advice.caveats)


def test_dose_03_g_per_kg_order_uses_the_dosing_weight():
    # 1.2 g/kg × 70.46 kg × 2 days = 169.1 g > 155.0 g
    assert "DOSE-03" in rules(patient(drafts=(draft("1.2", 2, "g/kg"),)))
    assert "DOSE-03" not in rules(patient(drafts=(draft("1", 2, "g/kg"),)))


# --- DOSE-04 ------------------------------------------------------------------------------------


@pytest.mark.parametrize("weight_days,dose_04", [(90, False), (91, True)])
def test_dose_04_weight_older_than_90_days(weight_days, dose_04):
    result = rules(patient(weight_days=weight_days))
    assert ("DOSE-04" in result) is dose_04
    assert ("DOSE-01" in result) is not dose_04
    if dose_04:
        advice = result["DOSE-04"]
        assert advice.values["missing"] == "weight"
        assert advice.facts[0].note == "91 days old"
        assert not {"DOSE-02", "DOSE-03"} & set(result)


def test_dose_04_no_height_under_ideal_or_adjusted_but_not_under_actual():
    rec = patient(cm=None)
    assert rules(rec, IDEAL)["DOSE-04"].values["missing"] == "height"
    assert rules(rec, ADJUSTED)["DOSE-04"].values["missing"] == "height"
    assert set(rules(rec, ACTUAL)) == {"DOSE-01"}


def test_dose_04_neither_weight_nor_height():
    advice = rules(patient(cm=None, kg=None))["DOSE-04"]
    assert advice.indicator == "warning"
    assert advice.values["missing"] == "weight and height"
    assert [f.value for f in advice.facts[:2]] == ["none on file", "none on file"]
