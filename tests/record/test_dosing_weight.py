"""Dosing weight and ordered grams (rules.md "Dosing weight", "Ordered IVIG dose").

The worked examples are clinical-evidence.md §6 (policy A = ``adjusted``; ``ideal`` is the
rules.md default), reproduced to the precision the table gives them.
"""

from __future__ import annotations

import dataclasses
from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from cds_service.record.build import ordered_dose
from cds_service.record.dosing import (
    REASON_BELOW_IBW,
    REASON_CHILD,
    REASON_SHORT,
    DosingWeight,
    adjusted_weight_kg,
    devine_ibw_kg,
    dosing_weight,
    grams_per_cycle,
)
from cds_service.record.model import OrderedDose, PatientRecord
from cds_service.settings import ClinicalSettings
from tests.advice.builders import GAMUNEX, TODAY, lab, medication, record, use

ADJUSTED = ClinicalSettings(ivig_dosing_weight="adjusted")
IDEAL = ClinicalSettings(ivig_dosing_weight="ideal")
ACTUAL = ClinicalSettings(ivig_dosing_weight="actual")
ADULT = date(1970, 1, 1)


def patient(sex: str, height_cm: str | None, weight_kg: str, **kw: Any) -> PatientRecord:
    return record(
        hook="order-sign",
        gender=sex,
        birth_date=kw.pop("birth_date", ADULT),
        weight=(lab("weight", weight_kg, kw.pop("weight_days", 5)),),
        height=() if height_cm is None else (lab("height", height_cm, 400),),
        **kw,
    )


def two(value: Decimal | None) -> Decimal:
    assert value is not None
    return value.quantize(Decimal("0.01"))


def one(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.1"))


# (sex, cm, kg) -> IBW, adjusted, policy-A weight, basis under A, reason (clinical-evidence §6)
WORKED = [
    ("male", "175", "100", "70.46", "82.28", "82.3", "adjusted", None),
    ("female", "160", "58", "52.38", "54.63", "54.6", "adjusted", None),
    ("female", "150", "70", "43.33", "54.00", "70.0", "actual", REASON_SHORT),
    ("male", "180", "60", "74.99", "69.00", "60.0", "actual", REASON_BELOW_IBW),
    ("female", "165", "120", "56.91", "82.15", "82.1", "adjusted", None),
]


@pytest.mark.parametrize("sex,cm,kg,ibw,adj,used,basis,reason", WORKED)
def test_worked_examples_under_adjusted_policy(sex, cm, kg, ibw, adj, used, basis, reason):
    dw = dosing_weight(patient(sex, cm, kg), TODAY, ADJUSTED)
    assert dw is not None
    assert two(dw.ideal_kg) == Decimal(ibw)
    assert two(dw.adjusted_kg) == Decimal(adj)
    assert one(dw.used_kg) == Decimal(used)
    assert dw.basis == basis
    assert dw.actual_reason == reason
    assert dw.actual_kg == Decimal(kg)


@pytest.mark.parametrize(
    "sex,cm,kg,used,basis",
    [
        ("male", "175", "100", "70.46", "ideal"),
        ("female", "160", "58", "52.38", "ideal"),
        ("female", "150", "70", "70.00", "actual"),  # height < 152.4 cm
        ("male", "180", "60", "60.00", "actual"),  # actual < IBW
        ("female", "165", "120", "56.91", "ideal"),
    ],
)
def test_worked_examples_under_ideal_policy(sex, cm, kg, used, basis):
    dw = dosing_weight(patient(sex, cm, kg), TODAY, IDEAL)
    assert dw is not None
    assert two(dw.used_kg) == Decimal(used)
    assert dw.basis == basis


def test_induction_and_maintenance_grams_of_example_one():
    # §6 patient 1, policy A: 164.6 g induction (1646 mL), 82.3 / 32.9 g per day, 82.3 g maint.
    dw = dosing_weight(patient("male", "175", "100"), TODAY, ADJUSTED)
    assert dw is not None
    induction = 2 * dw.used_kg
    assert one(induction) == Decimal("164.6")
    assert (induction * 10).quantize(Decimal(1)) == 1646
    assert one(induction / 2) == Decimal("82.3")
    assert one(induction / 5) == Decimal("32.9")


def test_devine_is_exact_decimal_and_unrounded_in_inches():
    # 175 cm = 68.897637... in: 50 + 2.3 × 8.897637... = 70.4646 (not 70.7 from 69 in).
    assert devine_ibw_kg(Decimal("175"), "male").quantize(Decimal("0.0001")) == Decimal("70.4646")
    # exactly 60 in: the base weight
    assert devine_ibw_kg(Decimal("152.4"), "female") == Decimal("45.5")
    assert adjusted_weight_kg(Decimal("70"), Decimal("100")) == Decimal("82.0")


def test_unknown_sex_uses_the_lower_female_formula_and_says_so():
    dw = dosing_weight(patient("unknown", "175", "100"), TODAY, IDEAL)
    assert dw is not None
    assert two(dw.used_kg) == two(devine_ibw_kg(Decimal("175"), "female"))
    assert dw.sex_assumed
    male = dosing_weight(patient("male", "175", "100"), TODAY, IDEAL)
    assert male is not None and not male.sex_assumed


@pytest.mark.parametrize(
    "cm,basis,reason",
    [("152.3", "actual", REASON_SHORT), ("152.4", "adjusted", None), ("152.5", "adjusted", None)],
)
def test_height_152_4_cm_boundary(cm, basis, reason):
    dw = dosing_weight(patient("female", cm, "80"), TODAY, ADJUSTED)
    assert dw is not None
    assert (dw.basis, dw.actual_reason) == (basis, reason)


@pytest.mark.parametrize(
    "birth,basis",
    [
        (date(2007, 7, 2), "actual"),  # 17 years until tomorrow
        (date(2007, 7, 1), "ideal"),  # 18 today
        (date(2007, 6, 30), "ideal"),
    ],
)
def test_age_18_boundary(birth, basis):
    dw = dosing_weight(patient("male", "175", "100", birth_date=birth), TODAY, IDEAL)
    assert dw is not None
    assert dw.basis == basis
    assert dw.actual_reason == (REASON_CHILD if basis == "actual" else None)


def test_actual_equal_to_ibw_keeps_the_policy_weight():
    ibw = devine_ibw_kg(Decimal("175"), "male")
    rec = record(
        hook="order-sign",
        birth_date=ADULT,
        weight=(lab("weight", ibw, 5),),
        height=(lab("height", "175", 5),),
    )
    dw = dosing_weight(rec, TODAY, ADJUSTED)
    assert dw is not None and dw.basis == "adjusted" and dw.actual_reason is None
    below = record(
        hook="order-sign",
        birth_date=ADULT,
        weight=(lab("weight", ibw - Decimal("0.01"), 5),),
        height=(lab("height", "175", 5),),
    )
    dw = dosing_weight(below, TODAY, ADJUSTED)
    assert dw is not None and dw.actual_reason == REASON_BELOW_IBW


@pytest.mark.parametrize("days,usable", [(89, True), (90, True), (91, False)])
def test_weight_within_90_days(days, usable):
    dw = dosing_weight(patient("male", "175", "100", weight_days=days), TODAY, IDEAL)
    assert (dw is not None) == usable


def test_weight_window_is_the_setting():
    rec = patient("male", "175", "100", weight_days=120)
    assert dosing_weight(rec, TODAY, IDEAL) is None
    assert dosing_weight(rec, TODAY, ClinicalSettings(weight_recent_days=120)) is not None


def test_latest_weight_and_latest_height_are_used():
    rec = record(
        hook="order-sign",
        birth_date=ADULT,
        weight=(lab("weight", "90", 60), lab("weight", "100", 10)),
        height=(lab("height", "170", 3000), lab("height", "175", 2000)),
    )
    dw = dosing_weight(rec, TODAY, IDEAL)
    assert dw is not None
    assert dw.actual_kg == 100 and dw.height_cm == 175
    assert dw.weight.day == date(2025, 6, 21)


def test_no_height_means_no_dosing_weight_unless_policy_actual():
    rec = patient("male", None, "100")
    assert dosing_weight(rec, TODAY, IDEAL) is None
    assert dosing_weight(rec, TODAY, ADJUSTED) is None
    dw = dosing_weight(rec, TODAY, ACTUAL)
    assert dw is not None
    assert (dw.used_kg, dw.basis, dw.ideal_kg, dw.adjusted_kg) == (
        Decimal(100),
        "actual",
        None,
        None,
    )


def test_actual_policy_with_height_still_shows_ideal_and_adjusted():
    dw = dosing_weight(patient("male", "175", "100"), TODAY, ACTUAL)
    assert dw is not None
    assert dw.used_kg == 100 and dw.basis == "actual" and dw.actual_reason is None
    assert two(dw.ideal_kg) == Decimal("70.46")


def test_a_weight_given_as_a_bound_is_not_a_dosing_weight():
    rec = record(
        hook="order-sign",
        weight=(lab("weight", "150", 5, comparator=">"),),
        height=(lab("height", "175", 5),),
    )
    assert dosing_weight(rec, TODAY, IDEAL) is None


def test_no_birth_date_is_treated_as_adult_and_flagged():
    rec = patient("male", "175", "100", birth_date=None)
    dw = dosing_weight(rec, TODAY, IDEAL)
    assert dw is not None and dw.basis == "ideal" and dw.age_unknown


# --- grams per cycle ---------------------------------------------------------------------------


def _dw(used: str = "70") -> DosingWeight:
    rec = patient("male", "175", "100")
    dw = dosing_weight(rec, TODAY, IDEAL)
    assert dw is not None
    return dataclasses.replace(dw, used_kg=Decimal(used))


def draft(amount: str, unit: str, days: int = 1, med=GAMUNEX):
    return use(
        med,
        "draft",
        drafted=True,
        authored=0,
        dose=OrderedDose(Decimal(amount), unit, days, f"{amount} {unit}"),
    )


@pytest.mark.parametrize(
    "amount,unit,days,expected",
    [
        ("100", "g", 2, "200"),
        ("35", "g", 1, "35"),
        ("40000", "mg", 2, "80"),
        ("400", "mL", 2, "80.0"),  # Gamunex-C 10 %: 0.1 g/mL
        ("1", "g/kg", 2, "140"),  # × dosing weight 70 kg
        ("0.4", "g/kg", 5, "140.0"),
    ],
)
def test_grams_per_cycle(amount, unit, days, expected):
    assert grams_per_cycle(draft(amount, unit, days), _dw("70")) == Decimal(expected)


def test_grams_per_cycle_unknown_when_it_cannot_be_converted():
    unknown_strength = medication("Immune globulin IV", ivig=True)
    assert grams_per_cycle(draft("400", "mL", 1, unknown_strength), _dw()) is None
    assert grams_per_cycle(draft("1", "g/kg", 2), None) is None
    assert grams_per_cycle(draft("0", "g", 2), _dw()) is None
    assert grams_per_cycle(use(GAMUNEX, "draft", drafted=True), _dw()) is None


@pytest.mark.parametrize(
    "repeat,days",
    [
        ({"count": 2}, 2),
        ({"count": 2.0}, 2),  # not a valid positiveInt, but read as far as the rule needs it
        ({"count": "3"}, 3),
        ({"count": 2.5}, 1),  # not a whole number of days: the default
        ({"count": 0}, 1),
        ({"count": True}, 1),
        ({"boundsDuration": {"value": 5, "unit": "days", "code": "d",
                             "system": "http://unitsofmeasure.org"}}, 5),
        ({"boundsDuration": {"value": 1, "unit": "wk"}}, 7),
        ({}, 1),
    ],
)
def test_ordered_dose_days(repeat: dict[str, Any], days: int) -> None:
    # rules.md "Ordered IVIG dose": timing.repeat.count, or boundsDuration in days; 1 otherwise
    dosage = {
        "doseAndRate": [{"doseQuantity": {"value": 30, "system": "http://unitsofmeasure.org",
                                          "code": "g"}}],
        "timing": {"repeat": repeat},
    }
    dose = ordered_dose(dosage)
    assert dose is not None and (dose.amount, dose.unit, dose.days) == (Decimal(30), "g", days)
