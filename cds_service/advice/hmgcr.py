"""Anti-HMGCR: test after statin withdrawal, early flag, untreated positive result
(rules.md HMG-01…HMG-03).

HMG-01/02 look for CK that stays raised after the statin was stopped: toxic statin myopathy
settles within weeks of withdrawal, statin-associated autoimmune (anti-HMGCR) myopathy does not
[ACC13 Table 5-C, ACP, FLOYD, JFP]. The withdrawal windows are (setting)s in ``ClinicalSettings``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from cds_service.advice.common import (
    ONLY_PATIENT_VIEW,
    VIEW_AND_SELECT,
    card_caveats,
    ck_fact,
    ck_values,
    count_text,
    fired,
)
from cds_service.advice.model import Advice, Suggestion
from cds_service.advice.registry import answers, rule
from cds_service.advice.statin_facts import (
    evidence_fact,
    evidence_values,
    statin_fact,
    statin_names,
)
from cds_service.record.model import CkValue, LabValue, MedicationUse, PatientRecord
from cds_service.record.series import days_between, latest
from cds_service.record.statin import (
    at_least_above,
    ck_just_before,
    hmgcr_positive,
    hmgcr_result_on_file,
    statin_active_or_drafted,
    statin_stop_date,
    stopped_course,
)
from cds_service.settings import ClinicalSettings

# HMG-02: CK after the stop above 10×ULN is atypical for self-limited toxic myopathy (JFP:
# anti-HMGCR myositis CK typically > 10,000 U/L; the ×ULN form is a DESIGN choice).
EARLY_FLAG_MULTIPLE = 10
ULN_MULTIPLE = 1
# HMG-03: a positive anti-HMGCR counts when dated within 180 days (rules.md HMG-03; DESIGN window).
HMGCR_RECENT_DAYS = 180

LOINC_HMGCR = "93493-5"  # HMGCR Antibody, IgG [LABHMG: ARUP 2013101]


def evaluate(
    record: PatientRecord, today: date, clinical: ClinicalSettings, hook: str
) -> list[Advice]:
    """HMG-01…03 for this record on ``today`` in ``hook``."""
    # HMG-01 and HMG-02 read the same withdrawal (statin stopped, CK still raised after it): it
    # is worked out once and handed to both.
    withdrawal = raised_ck_after_withdrawal(record, today)
    after_withdrawal = (test_after_withdrawal, early_flag_after_withdrawal)
    found = [
        rule(record, clinical, withdrawal) for rule in after_withdrawal if answers(rule, hook)
    ]
    return [a for a in found if a is not None] + fired(
        (untreated_hmgcr_myopathy,), record, today, clinical, hook
    )


@dataclass(frozen=True)
class Withdrawal:
    """The statin stopped and the CK after it (the part HMG-01 and HMG-02 share)."""

    stop: date
    days_since_stop: int
    ck: CkValue  # the latest usable CK, dated after the stop and above the ULN
    course: MedicationUse | None


def raised_ck_after_withdrawal(record: PatientRecord, today: date) -> Withdrawal | None:
    """No statin active or drafted, a known stop date, the latest usable CK dated after the stop
    and > ULN, and no usable anti-HMGCR result on file (rules.md HMG-01, timing aside)."""
    if statin_active_or_drafted(record):
        return None
    stop = statin_stop_date(record)
    if stop is None:
        return None
    ck = latest(record.ck)
    if ck is None or ck.day <= stop or not ck.above_uln_multiple(ULN_MULTIPLE):
        return None
    if hmgcr_result_on_file(record):
        return None
    return Withdrawal(stop, days_between(stop, today), ck, stopped_course(record))


def _withdrawal_advice(
    rule_id: str,
    record: PatientRecord,
    clinical: ClinicalSettings,
    found: Withdrawal,
    previous: CkValue | None = None,
    trend: str = "",
    trend_detail: str = "",
) -> Advice:
    course = (found.course,) if found.course is not None else ()
    cks = (found.ck,) + ((previous,) if previous is not None else ())
    return Advice(
        rule_id=rule_id,
        indicator="warning",
        values={
            **ck_values(found.ck),
            "stop_date": found.stop.isoformat(),
            "days_since_stop": count_text(found.days_since_stop),
            "stopped_statin": statin_names(course) or "the statin",
            "trend": trend,
            "trend_detail": trend_detail,
            "withdrawal_days": str(clinical.hmg_withdrawal_days),
        },
        facts=(
            ck_fact(found.ck, "Latest CK"),
            *((ck_fact(previous, "CK before it"),) if previous is not None else ()),
            *(statin_fact(u) for u in course),
        ),
        caveats=card_caveats(record, used=cks, medications=course, unusable_kinds=("ck", "hmgcr")),
        suggestions=(Suggestion("order-lab", loinc=LOINC_HMGCR, recommended=True),),
        ck_trend=True,
    )


# --- HMG-01 ---------------------------------------------------------------------------------


@rule("HMG-01", hooks=VIEW_AND_SELECT)
def test_after_withdrawal(
    record: PatientRecord, clinical: ClinicalSettings, found: Withdrawal | None
) -> Advice | None:
    """HMG-01 (patient-view, order-select): stopped >= 56 days ago (setting) and the latest CK
    after the stop still > ULN, no anti-HMGCR result → test anti-HMGCR."""
    if found is None or found.days_since_stop < clinical.hmg_withdrawal_days:
        return None
    return _withdrawal_advice("HMG-01", record, clinical, found)


# --- HMG-02 ---------------------------------------------------------------------------------


@rule("HMG-02", hooks=VIEW_AND_SELECT)
def early_flag_after_withdrawal(
    record: PatientRecord, clinical: ClinicalSettings, found: Withdrawal | None
) -> Advice | None:
    """HMG-02 (patient-view, order-select): as HMG-01 but stopped 28–55 days ago (settings), and
    the latest CK after the stop > 10×ULN or not lower than the usable CK just before it."""
    if found is None:
        return None
    if not clinical.hmg_early_days <= found.days_since_stop < clinical.hmg_withdrawal_days:
        return None
    previous = ck_just_before(record, found.ck)
    if found.ck.above_uln_multiple(EARLY_FLAG_MULTIPLE):
        trend = f"above {EARLY_FLAG_MULTIPLE}×ULN"
        detail = f"it is above {EARLY_FLAG_MULTIPLE}×ULN"
        previous = None  # not used for the decision: not shown as if it were
    elif previous is not None and at_least_above(found.ck, previous):
        trend = "not falling"
        detail = (
            f"it is not lower than the CK before it ({previous.display()}, "
            f"{previous.day.isoformat()})"
        )
    else:
        return None
    return _withdrawal_advice("HMG-02", record, clinical, found, previous, trend, detail)


# --- HMG-03 ---------------------------------------------------------------------------------


@rule("HMG-03", hooks=ONLY_PATIENT_VIEW)
def untreated_hmgcr_myopathy(
    record: PatientRecord, today: date, clinical: ClinicalSettings, hook: str
) -> Advice | None:
    """HMG-03 (patient-view): anti-HMGCR positive within 180 days and no IVIG given yet."""
    evidence = hmgcr_positive(record, today, within_days=HMGCR_RECENT_DAYS)
    if evidence is None or record.ivig_given:
        return None
    labs = (evidence,) if isinstance(evidence, LabValue) else ()
    return Advice(
        rule_id="HMG-03",
        indicator="critical",
        values={**evidence_values(evidence), "window_days": str(HMGCR_RECENT_DAYS)},
        facts=(evidence_fact(evidence),),
        caveats=card_caveats(record, used=labs, unusable_kinds=("hmgcr",)),
    )
