"""The IGA, DOSE and SAFE card templates fit their Advice and the rules.md table.

Realistic worst-case records (long values, every risk at once, bounds, conversions) are run
through the rules; each advice must fill its template (every placeholder has a value), keep the
filled summary within 139 characters, and have a label for each suggestion it makes.
"""

from __future__ import annotations

import dataclasses
import string
from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from cds_service.advice import dosing, iga, safety
from cds_service.advice.model import Advice
from cds_service.record.model import OrderedDose, PatientRecord
from cds_service.settings import ClinicalSettings
from tests.advice.builders import (
    TODAY,
    condition,
    creatinine,
    given,
    lab,
    medication,
    record,
    unusable,
    use,
)
from tests.advice.cards import check_card, rules_table, template

RULES = (
    "IGA-01", "IGA-02", "IGA-03", "DOSE-01", "DOSE-02", "DOSE-03", "DOSE-04",
    "SAFE-01", "SAFE-02", "SAFE-03",
)  # fmt: skip
LONG_PRODUCT = medication(
    "Privigen (immune globulin intravenous, human) 10% Liquid 40 g/400 mL vial",
    ivig=True,
    concentration="0.1",
)
ESTROGEN = medication(
    "ethinyl estradiol 0.03 MG / levonorgestrel 0.15 MG Oral Tablet", estrogen=True
)


def draft(grams: str, days: int) -> object:
    return use(
        LONG_PRODUCT,
        "draft",
        drafted=True,
        authored=0,
        resource_id="mr-long",
        dose=OrderedDose(Decimal(grams), "g", days, f"{grams} g daily for {days} days"),
    )


def worst_records() -> list[PatientRecord]:
    elderly = date(1925, 1, 1)  # 100 years old
    risks = (
        dataclasses.replace(
            condition("Type 2 diabetes mellitus with diabetic chronic kidney disease"),
            kinds=("diabetes",),
        ),
        dataclasses.replace(
            condition("Chronic pulmonary embolism", clinical_status="resolved"), kinds=("vte",)
        ),
    )
    base: dict[str, Any] = dict(hook="order-sign", gender="female", birth_date=elderly)
    return [
        # IGA-01, DOSE-04 (both missing), SAFE-01 (last eGFR long ago), SAFE-02/03 every risk
        record(
            **base,
            ivig_uses=(draft("500.5", 5),),
            egfr=(lab("egfr", "14.5", 400, comparator="<"),),
            creatinine=(creatinine("12.65", 400),),
            conditions=risks,
            estrogen_uses=(use(ESTROGEN, "active"),),
            unusable=(unusable("weight", "unit 'stone' not recognised", 3),),
        ),
        # IGA-02 preliminary bound, DOSE-01 on a very heavy short patient
        record(
            **base,
            ivig_uses=(draft("250.5", 2),),
            iga=(lab("iga", "6.25", 2, comparator="<", status="preliminary"),),
            weight=(lab("weight", "250.35", 1),),
            height=(lab("height", "152.3", 1),),
        ),
        # IGA-03 bound not excluding deficiency; DOSE-02 and DOSE-03 with large numbers
        record(
            **base,
            ivig_uses=(draft("100.1", 5),),
            iga=(lab("iga", "60.5", 2, comparator="<", original="<0.605 g/L", converted=True),),
            weight=(lab("weight", "250.35", 1),),
            height=(lab("height", "195.5", 1),),
            ivig_given=(given(3, "999.5"), given(2, "999.5")),
        ),
    ]


def all_advice() -> list[Advice]:
    clinical = ClinicalSettings()
    advices = []
    for rec in worst_records():
        for module in (iga, dosing, safety):
            advices.extend(module.evaluate(rec, TODAY, clinical, rec.hook))
    return advices


def test_worst_case_records_fire_every_rule() -> None:
    assert {a.rule_id for a in all_advice()} == set(RULES)


@pytest.mark.parametrize("advice", all_advice(), ids=lambda a: a.rule_id)
def test_advice_fills_its_template_within_139_characters(advice: Advice) -> None:
    summary = check_card(advice)
    assert "{" not in summary and "}" not in summary
    labels = template(advice.rule_id).get("suggestions", {})
    for suggestion in advice.suggestions:
        key = suggestion.kind if suggestion.kind != "order-lab" else f"order-lab:{suggestion.loinc}"
        names = {n for _, n, _, _ in string.Formatter().parse(labels[key]) if n}
        # label placeholders: Advice.values plus what the renderer adds for a suggestion
        assert names <= set(advice.values) | {"dose_g", "days", "medication", "lab"}


@pytest.mark.parametrize("rule", RULES)
def test_templates_agree_with_rules_md(rule: str) -> None:
    data = template(rule)
    row = rules_table()[rule]
    assert data["rule"] == rule
    assert data["indicator"] == row["indicator"]
    assert data["sources"] == row["sources"]
    expected_hooks = ["order-select", "order-sign"]
    if "patient-view" in row["hooks"]:
        expected_hooks = ["patient-view", *expected_hooks]
    assert data["hooks"] == expected_hooks
    assert 2 <= len(data["overrideReasons"]) <= 4
    assert 2 <= len(data["reasoning"].splitlines()) <= 3
