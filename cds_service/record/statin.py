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

# rules.md "Active statin": a MedicationRequest or (r2) a MedicationStatement active or on-hold
# (ACTIVE_ORDER_STATUSES): a statin paused is still the patient's statin.
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

    A result dated after today is not usable at all (rules.md r2; the record leaves it out), so
    only days up to today are recent.
    """
    return 0 <= days_between(day, today) <= clinical.recent_days


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
    """Statins the patient is on: a non-draft MedicationRequest with an order intent (or none),
    or a MedicationStatement, active or on-hold (rules.md "Active statin" and "Order intent",
    r2; drafts excluded: ``drafted_statins``)."""
    return tuple(
        u
        for u in _statins(record)
        if not u.drafted and u.is_order and u.status in ACTIVE_ORDER_STATUSES
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
    """rules.md "Statin course": a statin request (order intents only, r2) or statement stopped
    or completed."""
    return tuple(
        u
        for u in _statins(record)
        if not u.drafted and u.is_order and u.status in COURSE_STATUSES
    )


def statin_stop_date(record: PatientRecord) -> date | None:
    """rules.md "Statin stop date": the latest end over the statin courses.

    None (unknown) when a statin is active (``active_statins``: order intents only, statements
    included), or when no course has an end date. A drafted statin does not count: STAT-06 asks
    about that very draft.
    """
    if active_statins(record):
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
    """rules.md "Anti-HMGCR positive" for one result: a positive flag whatever the value, a
    result without a number that says positive (r2), or a number >= 20 (bound-aware)."""
    if HMGCR_POSITIVE_INTERPRETATIONS.intersection(value.interpretation):
        return True
    if value.qualitative:  # no number: only its finding can say positive
        return value.finding == "positive"
    return value.meets_above(HMGCR_POSITIVE_CUTOFF, inclusive=True)


def hmgcr_condition(condition: ConditionFact) -> bool:
    """A Condition whose wording names anti-HMGCR / necrotizing myopathy (any code), whatever
    its clinicalStatus (rules.md r2: a resolved statin-associated IMNM still forbids statin
    re-exposure for life). A refuted or entered-in-error one is no diagnosis (rules.md
    "Conditions", r2; the record already leaves those out)."""
    if condition.void:
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
    """Any usable anti-HMGCR result, positive or negative (HMG-01/02: "no usable result"); a
    result without a number that says negative is on file (rules.md r2)."""
    return bool(usable(record.hmgcr))
