"""Derived statin quantities (rules.md "Definitions"): recent CK, active statin, statin stop date,
anti-HMGCR positive, the CK just before another.

Pure functions of the ``PatientRecord`` (and ``today`` where a window counts days). "Usable",
"latest" and "just before" are ``record.series``'s, the same for every area.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from cds_service.record.model import (
    ACTIVE_ORDER_STATUSES,
    CkValue,
    ConditionFact,
    LabValue,
    MedicationUse,
    PatientRecord,
)
from cds_service.record.series import days_between, just_before, latest, usable, within_last
from cds_service.record.values import HMGCR_POSITIVE_INTERPRETATIONS
from cds_service.settings import ClinicalSettings

# rules.md "Active statin": a request counts when active or on-hold (ACTIVE_ORDER_STATUSES), a
# MedicationStatement only when active.
ACTIVE_STATEMENT_STATUSES = frozenset({"active"})
# rules.md "Statin course": stopped or completed (cancelled, entered-in-error, draft and unknown
# are not courses).
COURSE_STATUSES = frozenset({"stopped", "completed"})

# rules.md "Anti-HMGCR positive": a number >= 20 in the lab's arbitrary unit [LABHMG: ARUP
# 0-19 Units negative; Mayo < 20.0 CU or U/mL].
HMGCR_POSITIVE_CUTOFF = Decimal("20")
# rules.md "Anti-HMGCR positive": Condition text that names the disease (case-insensitive). The
# record also classifies conditions with fhir_mappings/ValueSet-hmgcr-myopathy.json (kind
# HMGCR_CONDITION_KIND) with the same wording; either counts.
HMGCR_CONDITION_WORDS = ("hmgcr", "necrotizing myopathy", "necrotising myopathy")
HMGCR_CONDITION_KIND = "hmgcr-myopathy"


# --- values -------------------------------------------------------------------------------


def ck_just_before(record: PatientRecord, value: LabValue) -> CkValue | None:
    return just_before(record.ck, value)


def is_recent(day: date, today: date, clinical: ClinicalSettings) -> bool:
    """rules.md "Recent": within ``recent_days`` of today, day 30 included.

    A result dated a day or two after ``today`` (a lab clock ahead of ours) is also "within 30
    days of today"; it is the newest value the patient has, so it must not be ignored.
    """
    return abs(days_between(day, today)) <= clinical.recent_days


def recent_ck(record: PatientRecord, today: date, clinical: ClinicalSettings) -> CkValue | None:
    """rules.md "Recent CK": the latest usable CK, when it is recent (else None)."""
    value = latest(record.ck)
    if value is None or not is_recent(value.day, today, clinical):
        return None
    return value


def at_least_above(later: LabValue, earlier: LabValue, margin: Decimal = Decimal(0)) -> bool:
    """Is ``later >= earlier + margin`` certain, given both values' bounds (rules.md "Value")?

    ``earlier`` must have an upper bound (exact, "<" or "<="): a lower bound (">V") could be
    anything above V, so no rise over it can be shown.
    """
    if earlier.comparator in (">", ">="):
        return False
    return later.meets_above(earlier.value + margin, inclusive=True)


def creatinine_rise(
    record: PatientRecord, today: date, clinical: ClinicalSettings, rise_mg_dl: Decimal
) -> tuple[LabValue, LabValue] | None:
    """(previous, latest) when the latest creatinine is recent and at least ``rise_mg_dl`` above
    the usable creatinine just before it (rules.md STAT-02: two values needed)."""
    newest = latest(record.creatinine)
    if newest is None or not is_recent(newest.day, today, clinical):
        return None
    previous = just_before(record.creatinine, newest)
    if previous is None or not at_least_above(newest, previous, rise_mg_dl):
        return None
    return previous, newest


# --- statin exposure ----------------------------------------------------------------------


def _statins(record: PatientRecord) -> tuple[MedicationUse, ...]:
    # The record keeps statin uses only, but a use is checked again: a non-statin here would
    # put a wrong drug on a "stop the statin" card.
    return tuple(u for u in record.statin_uses if u.medication.is_statin)


def active_statins(record: PatientRecord) -> tuple[MedicationUse, ...]:
    """Statins the patient is on: a non-draft MedicationRequest active or on-hold, or a
    MedicationStatement active (rules.md "Active statin", drafts excluded)."""
    return tuple(
        u
        for u in _statins(record)
        if not u.drafted
        and (
            (u.resource_type == "MedicationRequest" and u.status in ACTIVE_ORDER_STATUSES)
            or (u.resource_type == "MedicationStatement" and u.status in ACTIVE_STATEMENT_STATUSES)
        )
    )


def drafted_statins(record: PatientRecord) -> tuple[MedicationUse, ...]:
    """The statin MedicationRequests drafted in this hook (rules.md "Drafted")."""
    return tuple(u for u in _statins(record) if u.drafted)


def statin_active(record: PatientRecord) -> bool:
    return bool(active_statins(record))


def statin_active_or_drafted(record: PatientRecord) -> bool:
    """rules.md "Active statin" in full: active, on-hold, or drafted."""
    return statin_active(record) or bool(drafted_statins(record))


def statin_courses(record: PatientRecord) -> tuple[MedicationUse, ...]:
    """rules.md "Statin course": a statin request or statement stopped or completed."""
    return tuple(u for u in _statins(record) if not u.drafted and u.status in COURSE_STATUSES)


def statin_stop_date(record: PatientRecord) -> date | None:
    """rules.md "Statin stop date": the latest end over the statin courses.

    None (unknown) when any statin request or statement is still active or on-hold, or when no
    course has an end date. A drafted statin does not count: STAT-06 asks about that very draft.
    """
    # Any statin request or statement still active or on-hold: the patient is on a statin.
    if any(u.status in ACTIVE_ORDER_STATUSES for u in _statins(record) if not u.drafted):
        return None
    ends = [u.end_date for u in statin_courses(record) if u.end_date is not None]
    return max(ends) if ends else None


def stopped_course(record: PatientRecord) -> MedicationUse | None:
    """The course whose end is the statin stop date (for the card), if there is one."""
    stop = statin_stop_date(record)
    if stop is None:
        return None
    return next(u for u in statin_courses(record) if u.end_date == stop)


# --- anti-HMGCR ---------------------------------------------------------------------------


def hmgcr_result_positive(value: LabValue) -> bool:
    """rules.md "Anti-HMGCR positive" for one result: >= 20 (bound-aware) or a positive flag."""
    if HMGCR_POSITIVE_INTERPRETATIONS.intersection(value.interpretation):
        return True
    if value.qualitative:  # no number: only its interpretation can say positive
        return False
    return value.meets_above(HMGCR_POSITIVE_CUTOFF, inclusive=True)


def hmgcr_condition(condition: ConditionFact) -> bool:
    """An active Condition whose wording names anti-HMGCR / necrotizing myopathy (any code)."""
    if not condition.active or condition.void:
        return False
    if HMGCR_CONDITION_KIND in condition.kinds:
        return True
    text = condition.text.lower()
    return any(word in text for word in HMGCR_CONDITION_WORDS)


def hmgcr_positive(
    record: PatientRecord, today: date, within_days: int | None = None
) -> LabValue | ConditionFact | None:
    """The evidence that the patient is anti-HMGCR positive (rules.md Definitions), or None.

    With ``within_days`` only evidence dated within that many days of today counts (day N
    included); a Condition with neither onset nor recorded date counts as within. The latest
    positive result is preferred to a Condition: it has a value to show.
    """

    def within(day: date | None) -> bool:
        return within_days is None or day is None or within_last(day, today, within_days)

    results = [v for v in usable(record.hmgcr) if hmgcr_result_positive(v) and within(v.day)]
    if results:
        return results[-1]
    conditions = [c for c in record.conditions if hmgcr_condition(c) and within(c.day)]
    if conditions:
        return max(conditions, key=lambda c: c.day or date.max)
    return None


def hmgcr_result_on_file(record: PatientRecord) -> bool:
    """Any usable anti-HMGCR result, positive or negative (HMG-01/02: "no usable result")."""
    return bool(usable(record.hmgcr))
