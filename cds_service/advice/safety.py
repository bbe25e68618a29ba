"""Renal function and thrombosis risk before IVIG (rules.md SAFE-01, SAFE-02, SAFE-03).

IVIG carries boxed warnings for renal dysfunction / acute renal failure and for thrombosis
[OCTA, PRIV, GAMC]: renal function is checked before the infusion [OCTEM], and patients at risk
get the minimum practicable dose and rate with hydration. The two risk tests are also read by
DOSE-01, which caps the maximum infusion rate for patients at risk.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from cds_service.advice.common import ORDER_HOOKS, card_caveats, ivig_order_hook, lab_fact
from cds_service.advice.model import Advice, Fact, Suggestion
from cds_service.advice.registry import rule
from cds_service.record.ivig import drafted_ivig
from cds_service.record.model import (
    ACTIVE_ORDER_STATUSES,
    ConditionFact,
    LabValue,
    PatientRecord,
    format_number,
)
from cds_service.record.series import days_between, latest, within_last
from cds_service.settings import ClinicalSettings

CREATININE_LOINC = "2160-0"  # Creatinine [Mass/volume] in Serum or Plasma
# rules.md SAFE-02: creatinine upper limit when the lab gives no referenceRange.high (mg/dL).
CREATININE_ULN_MALE = Decimal("1.3")
CREATININE_ULN_FEMALE_OTHER = Decimal("1.1")
# rules.md SAFE-02/03: age ≥ 65 is a renal and a thrombosis risk factor (boxed warnings: advanced
# age) [OCTA, PRIV].
RISK_AGE_YEARS = 65

RENAL_KINDS = ("creatinine", "egfr")

# Condition kinds the record recognises (fhir_mappings ValueSets diabetes and
# venous-thromboembolism, rules.md "Renal and thrombosis risk codes").
DIABETES = "diabetes"
VENOUS_THROMBOEMBOLISM = "vte"


@dataclass(frozen=True)
class RiskFinding:
    """One reason a patient is at risk: a short phrase for the summary and the fact behind it."""

    reason: str  # short, for the summary: "eGFR 45", "creatinine 1.6 mg/dL", "age 67", "diabetes"
    fact: Fact
    value: LabValue | None = None  # the result that made it, for the card's caveats


def evaluate(
    record: PatientRecord, today: date, clinical: ClinicalSettings, hook: str
) -> list[Advice]:
    if not ivig_order_hook(record, hook):
        return []
    advices = (
        safe_01_renal_function_unknown(record, today, clinical),
        safe_02_renal_risk(record, today, clinical),
        safe_03_thrombosis_risk(record, today),
    )
    return [a for a in advices if a is not None]


def creatinine_uln(value: LabValue, gender: str | None) -> tuple[Decimal, bool]:
    """The creatinine upper limit: the lab's own, else the sex default (assumed=True)."""
    if value.ref_high is not None:
        return value.ref_high, False
    return (CREATININE_ULN_MALE if gender == "male" else CREATININE_ULN_FEMALE_OTHER), True


def _condition_fact(condition: ConditionFact, label: str) -> Fact:
    status = condition.clinical_status or "status not recorded"
    return Fact(
        label,
        condition.text or "coded condition",
        condition.day,
        note=status,
    )


def _age_finding(record: PatientRecord, today: date) -> RiskFinding | None:
    age = record.age_on(today)
    if age is None or age < RISK_AGE_YEARS:
        return None
    return RiskFinding(f"age {age}", Fact("Age", f"{age} years"))


def renal_risks(
    record: PatientRecord, today: date, clinical: ClinicalSettings
) -> tuple[RiskFinding, ...]:
    """The SAFE-02 conditions that hold: low eGFR, raised creatinine, age ≥ 65, diabetes."""
    findings: list[RiskFinding] = []
    egfr = latest(record.egfr)
    if egfr is not None and egfr.meets_below(clinical.egfr_threshold):
        findings.append(
            RiskFinding(
                f"eGFR {egfr.number_text()}",
                lab_fact(egfr, extra=f"below {format_number(clinical.egfr_threshold)}"),
                egfr,
            )
        )
    creatinine = latest(record.creatinine)
    if creatinine is not None:
        uln, assumed = creatinine_uln(creatinine, record.gender)
        if creatinine.meets_above(uln):
            note = f"above {'assumed ' if assumed else ''}ULN {format_number(uln)} mg/dL"
            findings.append(
                RiskFinding(
                    f"creatinine {creatinine.display()}",
                    lab_fact(creatinine, extra=note),
                    creatinine,
                )
            )
    age = _age_finding(record, today)
    if age is not None:
        findings.append(age)
    for condition in record.conditions:
        # A Condition recorded in error or ruled out is no risk factor.
        if condition.active and not condition.void and DIABETES in condition.kinds:
            findings.append(RiskFinding("diabetes", _condition_fact(condition, "Diabetes")))
            break
    return tuple(findings)


def active_estrogens(record: PatientRecord) -> tuple[str, ...]:
    """Estrogen-containing medications active, on hold or being ordered now (display names);
    a request counts only as an order (rules.md r2 "Order intent": not a plan or proposal)."""
    return tuple(
        dict.fromkeys(
            u.medication.display
            for u in record.estrogen_uses
            if u.medication.is_estrogen
            and u.is_order
            and (u.status in ACTIVE_ORDER_STATUSES or u.drafted)
        )
    )


def thrombosis_risks(record: PatientRecord, today: date) -> tuple[RiskFinding, ...]:
    """The SAFE-03 conditions that hold: age ≥ 65, venous thromboembolism ever, estrogen."""
    findings: list[RiskFinding] = []
    age = _age_finding(record, today)
    if age is not None:
        findings.append(age)
    for condition in record.conditions:
        # Active or resolved: a past thrombosis is a risk factor too.
        if not condition.void and VENOUS_THROMBOEMBOLISM in condition.kinds:
            findings.append(
                RiskFinding("venous thromboembolism", _condition_fact(condition, "Thromboembolism"))
            )
            break
    estrogens = active_estrogens(record)
    if estrogens:
        findings.append(RiskFinding("estrogen therapy", Fact("Estrogen", ", ".join(estrogens))))
    return tuple(findings)


@rule("SAFE-01", hooks=ORDER_HOOKS)
def safe_01_renal_function_unknown(
    record: PatientRecord, today: date, clinical: ClinicalSettings
) -> Advice | None:
    """Neither a creatinine nor an eGFR within the renal window (30 days, day 30 included)."""
    window = clinical.renal_recent_days
    recent = [v for v in (*record.creatinine, *record.egfr) if within_last(v.day, today, window)]
    if recent:
        return None
    last = [v for v in (latest(record.creatinine), latest(record.egfr)) if v is not None]
    facts = tuple(lab_fact(v, extra=f"{days_between(v.day, today)} days ago") for v in last) or (
        Fact("Creatinine / eGFR", "none on file"),
    )
    newest = max(last, key=lambda v: v.time) if last else None
    return Advice(
        rule_id="SAFE-01",
        indicator="warning",
        values={
            "days": str(window),
            "last_renal": (
                f"last {'eGFR' if newest.kind == 'egfr' else 'creatinine'} {newest.display()} "
                f"on {newest.day.isoformat()}"
                if newest
                else "none on file"
            ),
        },
        facts=facts,
        caveats=card_caveats(
            record, medications=drafted_ivig(record), unusable_kinds=RENAL_KINDS
        ),
        suggestions=(Suggestion(kind="order-lab", loinc=CREATININE_LOINC, recommended=True),),
    )


@rule("SAFE-02", hooks=ORDER_HOOKS)
def safe_02_renal_risk(
    record: PatientRecord, today: date, clinical: ClinicalSettings
) -> Advice | None:
    findings = renal_risks(record, today, clinical)
    if not findings:
        return None
    return _risk_advice("SAFE-02", record, findings, kinds=RENAL_KINDS)


@rule("SAFE-03", hooks=ORDER_HOOKS)
def safe_03_thrombosis_risk(record: PatientRecord, today: date) -> Advice | None:
    findings = thrombosis_risks(record, today)
    if not findings:
        return None
    return _risk_advice("SAFE-03", record, findings, kinds=())


def _risk_advice(
    rule_id: str, record: PatientRecord, findings: tuple[RiskFinding, ...], kinds: tuple[str, ...]
) -> Advice:
    caveats = list(
        card_caveats(
            record,
            used=[f.value for f in findings],
            converted=True,
            medications=drafted_ivig(record),
            unusable_kinds=kinds,
        )
    )
    for finding in findings:
        if (
            finding.value is not None
            and finding.value.kind == "creatinine"
            and (finding.value.ref_high is None)
        ):
            uln, _ = creatinine_uln(finding.value, record.gender)
            caveats.append(
                f"No lab reference range: assumed creatinine ULN {format_number(uln)} mg/dL"
            )
    return Advice(
        rule_id=rule_id,
        indicator="warning",
        values={"risks": ", ".join(f.reason for f in findings)},
        facts=tuple(f.fact for f in findings),
        caveats=tuple(caveats),
    )
