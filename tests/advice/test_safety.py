"""SAFE-01…03: renal function and thrombosis risk before IVIG (rules.md), with the boundaries
of the 30-day renal window, eGFR 60, the creatinine ULN and age 65."""

from __future__ import annotations

import dataclasses
from datetime import date
from decimal import Decimal

import pytest

from cds_service.advice import safety
from cds_service.fhir.data import FhirData
from cds_service.record.build import build_record
from cds_service.record.model import PatientRecord
from cds_service.settings import ClinicalSettings, Settings
from tests.advice.builders import (
    GAMUNEX,
    TODAY,
    condition,
    creatinine,
    lab,
    medication,
    record,
    unusable,
    use,
)

CLINICAL = ClinicalSettings()
ESTRADIOL = medication("estradiol 1 MG Oral Tablet", estrogen=True)
ADULT = date(1970, 1, 1)  # 55 today
AGE_65 = date(1960, 7, 1)
AGE_64 = date(1960, 7, 2)


def ivig_draft():
    return use(GAMUNEX, "draft", drafted=True, authored=0, resource_id="mr-ivig")


def order(hook: str = "order-sign", **kw) -> PatientRecord:
    kw.setdefault("birth_date", ADULT)
    kw.setdefault("gender", "female")
    kw.setdefault("ivig_uses", (ivig_draft(),))
    kw.setdefault("creatinine", (creatinine("0.8", 5, ref_high="1.1"),))
    return record(hook=hook, **kw)


def rules(rec: PatientRecord, clinical: ClinicalSettings = CLINICAL) -> dict[str, object]:
    return {a.rule_id: a for a in safety.evaluate(rec, TODAY, clinical, rec.hook)}


def egfr(value: str, day: int = 5, **kw):
    return lab("egfr", value, day, **kw)


def vte(**kw):
    # kinds: what the record's terminology (fhir_mappings ValueSets) recognised the code as
    kw.setdefault("codes", ("http://hl7.org/fhir/sid/icd-10-cm|I82.401",))
    return dataclasses.replace(condition("Deep vein thrombosis of leg", **kw), kinds=("vte",))


def diabetes(**kw):
    kw.setdefault("codes", ("http://hl7.org/fhir/sid/icd-10-cm|E11.9",))
    return dataclasses.replace(condition("Type 2 diabetes mellitus", **kw), kinds=("diabetes",))


def test_nothing_without_an_ivig_draft_on_an_order_hook():
    risky = dict(birth_date=date(1940, 1, 1), creatinine=())
    assert rules(order(hook="patient-view", **risky)) == {}
    assert rules(order(ivig_uses=(), **risky)) == {}
    assert set(rules(order(**risky))) == {"SAFE-01", "SAFE-02", "SAFE-03"}


# --- SAFE-01 ------------------------------------------------------------------------------------


@pytest.mark.parametrize("days,fires", [(29, False), (30, False), (31, True)])
def test_safe_01_creatinine_within_30_days(days, fires):
    rec = order(creatinine=(creatinine("0.8", days, ref_high="1.1"),))
    result = rules(rec)
    assert ("SAFE-01" in result) is fires
    if fires:
        advice = result["SAFE-01"]
        (suggestion,) = advice.suggestions
        assert (suggestion.kind, suggestion.loinc) == ("order-lab", "2160-0")
        assert advice.values["last_renal"] == "last creatinine 0.8 mg/dL on 2025-05-31"
        assert advice.facts[0].note == "31 days ago"


def test_safe_01_a_recent_egfr_is_enough():
    rec = order(creatinine=(creatinine("0.8", 200),), egfr=(egfr("90", 30),))
    assert "SAFE-01" not in rules(rec)


def test_safe_01_window_is_the_setting():
    rec = order(creatinine=(creatinine("0.8", 45, ref_high="1.1"),))
    assert "SAFE-01" in rules(rec)
    assert "SAFE-01" not in rules(rec, ClinicalSettings(renal_recent_days=60))


def test_safe_01_none_on_file_and_unusable_result_explained():
    rec = order(
        creatinine=(),
        unusable=(unusable("creatinine", "unit 'mmol/L' not recognised", 3),),
    )
    advice = rules(rec)["SAFE-01"]
    assert advice.values["last_renal"] == "none on file"
    assert any("unit 'mmol/L' not recognised" in c for c in advice.caveats)


# --- SAFE-02 ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value,comparator,fires",
    [
        ("59.9", None, True),
        ("60", None, False),
        ("60.1", None, False),
        ("60", "<", True),  # "<60" is under 60
        ("59", ">", False),  # ">59" may be 90
    ],
)
def test_safe_02_egfr_below_60(value, comparator, fires):
    rec = order(egfr=(egfr(value, comparator=comparator),))
    result = rules(rec)
    assert ("SAFE-02" in result) is fires
    if fires:
        assert result["SAFE-02"].values["risks"] == f"eGFR {comparator or ''}{value}"


def test_safe_02_uses_the_latest_egfr_and_the_threshold_setting():
    rec = order(egfr=(egfr("40", 100), egfr("70", 5)))
    assert "SAFE-02" not in rules(rec)
    rec = order(egfr=(egfr("50", 5),))
    assert "SAFE-02" in rules(rec)
    assert "SAFE-02" not in rules(rec, ClinicalSettings(egfr_threshold=Decimal("45")))


@pytest.mark.parametrize(
    "value,ref_high,gender,fires",
    [
        ("1.31", "1.3", "male", True),
        ("1.3", "1.3", "male", False),
        ("1.2", "1.1", "male", True),  # the lab's own ULN wins over the sex default
        ("1.31", None, "male", True),  # default 1.3 mg/dL for men
        ("1.3", None, "male", False),
        ("1.11", None, "female", True),  # default 1.1 mg/dL for women and other
        ("1.1", None, "female", False),
        ("1.11", None, "other", True),
        ("1.11", None, "unknown", True),  # rules.md r2: other and unknown sex use the female ULN
        ("1.11", None, None, True),
        ("1.1", None, "unknown", False),
    ],
)
def test_safe_02_creatinine_above_uln(value, ref_high, gender, fires):
    rec = order(gender=gender, creatinine=(creatinine(value, 5, ref_high=ref_high),))
    result = rules(rec)
    assert ("SAFE-02" in result) is fires
    if fires:
        advice = result["SAFE-02"]
        assert advice.values["risks"] == f"creatinine {value} mg/dL"
        assumed = any("assumed creatinine ULN" in c for c in advice.caveats)
        assert assumed is (ref_high is None)


def test_safe_02_converted_creatinine_says_so():
    # 133 µmol/L = 1.5045... mg/dL
    value = Decimal(133) / Decimal("88.4")
    c = creatinine(value, 5, ref_high="1.1", original="133 umol/L", converted=True)
    advice = rules(order(creatinine=(c,)))["SAFE-02"]
    assert advice.facts[0].note.startswith("converted from 133 umol/L")
    assert any("converted from 133 umol/L" in c for c in advice.caveats)


@pytest.mark.parametrize("birth,fires", [(AGE_65, True), (AGE_64, False)])
def test_safe_02_and_03_age_65(birth, fires):
    result = rules(order(birth_date=birth))
    assert ("SAFE-02" in result) is fires
    assert ("SAFE-03" in result) is fires
    if fires:
        assert result["SAFE-02"].values["risks"] == "age 65"


@pytest.mark.parametrize(
    "status,fires",
    [
        ("active", True), ("recurrence", True), ("relapse", True), (None, True),
        ("inactive", False), ("remission", False), ("resolved", False),
    ],
)
def test_safe_02_diabetes_active_only(status, fires):
    # rules.md r2 "Conditions": active = clinicalStatus active, recurrence, relapse or none
    result = rules(order(conditions=(diabetes(clinical_status=status),)))
    assert ("SAFE-02" in result) is fires
    if fires:
        assert result["SAFE-02"].values["risks"] == "diabetes"
    assert "SAFE-02" not in rules(order(conditions=(diabetes(verification_status="refuted"),)))


def test_safe_02_lists_every_risk():
    rec = order(
        birth_date=date(1950, 1, 1),
        gender="male",
        egfr=(egfr("45"),),
        creatinine=(creatinine("1.6", 5),),
        conditions=(diabetes(),),
    )
    advice = rules(rec)["SAFE-02"]
    assert advice.values["risks"] == "eGFR 45, creatinine 1.6 mg/dL, age 75, diabetes"
    assert len(advice.facts) == 4


# --- SAFE-03 ------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["active", "resolved", "inactive", None])
def test_safe_03_venous_thromboembolism_active_or_resolved(status):
    advice = rules(order(conditions=(vte(clinical_status=status),)))["SAFE-03"]
    assert advice.values["risks"] == "venous thromboembolism"
    assert advice.indicator == "warning"


def test_safe_03_not_for_a_refuted_thrombosis_or_another_condition():
    assert "SAFE-03" not in rules(order(conditions=(vte(verification_status="refuted"),)))
    assert "SAFE-03" not in rules(order(conditions=(diabetes(),)))


@pytest.mark.parametrize("intent,fires", [("order", True), ("plan", False), ("proposal", False)])
def test_safe_03_estrogen_must_be_an_order(intent, fires):
    # rules.md r2 "Order intent": a planned or proposed estrogen is not active medication
    rec = order(estrogen_uses=(use(ESTRADIOL, "active", intent=intent),))
    assert ("SAFE-03" in rules(rec)) is fires


@pytest.mark.parametrize(
    "status,drafted,fires",
    [
        ("active", False, True),
        ("on-hold", False, True),
        ("draft", True, True),
        ("stopped", False, False),
        ("completed", False, False),
        ("cancelled", False, False),
    ],
)
def test_safe_03_active_estrogen(status, drafted, fires):
    rec = order(estrogen_uses=(use(ESTRADIOL, status, drafted=drafted),))
    result = rules(rec)
    assert ("SAFE-03" in result) is fires
    if fires:
        assert result["SAFE-03"].values["risks"] == "estrogen therapy"
        assert result["SAFE-03"].facts[0].value == "estradiol 1 MG Oral Tablet"


def test_renal_and_thrombosis_risk_functions_are_what_dose_01_reads():
    rec = order(birth_date=AGE_64, egfr=(egfr("59"),))
    assert [f.reason for f in safety.renal_risks(rec, TODAY, CLINICAL)] == ["eGFR 59"]
    assert safety.thrombosis_risks(rec, TODAY) == ()


# --- Conditions read from R4 JSON (rules.md r2 "Conditions", risk-condition text) ---------------


def condition_json(text: str, clinical: str | None = "active", verification: str | None = None,
                   code: tuple[str, str] | None = None) -> dict[str, object]:
    concept: dict[str, object] = {"text": text}
    if code is not None:
        concept["coding"] = [{"system": code[0], "code": code[1]}]
    resource: dict[str, object] = {
        "resourceType": "Condition", "id": f"c-{abs(hash((text, clinical, verification)))}",
        "subject": {"reference": "Patient/p1"}, "code": concept,
    }
    if clinical is not None:
        resource["clinicalStatus"] = {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
            "code": clinical}]}
    if verification is not None:
        resource["verificationStatus"] = {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
            "code": verification}]}
    return resource


def risks_of(*conditions: dict[str, object]) -> dict[str, str]:
    patient = {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1970-01-01"}
    data = FhirData(resources=(patient, *conditions), drafts=(), selections=())
    built = build_record(data, {"hook": "order-sign", "context": {"patientId": "p1"}}, Settings())
    rec = dataclasses.replace(
        built, ivig_uses=(ivig_draft(),), creatinine=(creatinine("0.8", 5, ref_high="1.1"),)
    )
    return {r: a.values["risks"] for r, a in rules(rec).items() if r in ("SAFE-02", "SAFE-03")}


@pytest.mark.parametrize("verification", ["refuted", "entered-in-error", " Refuted ", "REFUTED"])
def test_refuted_or_entered_in_error_conditions_are_ignored(verification):
    # rules.md r2: ignored everywhere, read trimmed and in any case
    dvt = condition_json("Deep vein thrombosis", verification=verification,
                         code=("http://hl7.org/fhir/sid/icd-10-cm", "I82.401"))
    sugar = condition_json("Type 2 diabetes", verification=verification)
    assert risks_of(dvt, sugar) == {}


@pytest.mark.parametrize("verification", ["confirmed", "provisional", "differential", None])
def test_other_verification_statuses_count(verification):
    dvt = condition_json("DVT", clinical="resolved", verification=verification)
    sugar = condition_json("Diabetic nephropathy", clinical="Recurrence", verification=verification)
    assert risks_of(dvt, sugar) == {"SAFE-02": "diabetes", "SAFE-03": "venous thromboembolism"}


@pytest.mark.parametrize(
    "text,risks",
    [
        ("Prediabetes", {}),
        ("Pre-diabetes", {}),
        ("Diabetes insipidus", {}),
        ("Diabetic retinopathy", {"SAFE-02": "diabetes"}),
        ("history of PE", {"SAFE-03": "venous thromboembolism"}),
        ("Arterial thromboembolism", {}),
        ("pulmonary embolism 2019", {"SAFE-03": "venous thromboembolism"}),
        ("dvt ruled out", {}),  # upper case only
    ],
)
def test_risk_conditions_by_text(text, risks):
    assert risks_of(condition_json(text)) == risks
