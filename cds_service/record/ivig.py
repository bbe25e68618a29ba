"""Derived IVIG quantities (rules.md "Definitions": IVIG given, course start, last IVIG, course
≥ 6 months, IVIG ongoing, IVIG stopped).

``PatientRecord.ivig_given`` is already the rules.md "IVIG given" list (administrations, and
completed/active requests not covered by a later administration; never a draft), sorted by time.
Everything here is derived from it and from ``ivig_uses``; pure functions of (record, today).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from cds_service.record.model import ACTIVE_ORDER_STATUSES, IvigGiven, MedicationUse, PatientRecord
from cds_service.record.series import days_between, within_last

# rules.md "IVIG ongoing": the last IVIG ≤ 56 days ago still counts as an ongoing course (DESIGN:
# two 4-weekly maintenance cycles [ONT, OCTA q4w]; SEED1 monitors "every 4-8 weeks").
ONGOING_WINDOW_DAYS = 56
# rules.md "course ≥ 6 months" = course start ≥ 182 days before today (SEED1 "6-12 months";
# PRIV/GAMG "beyond 6 months").
COURSE_SIX_MONTHS_DAYS = 182


@dataclass(frozen=True)
class IvigStatus:
    """Where the patient stands on IVIG today (rules.md Definitions)."""

    course_start: date | None  # first IVIG given
    last_given: IvigGiven | None  # latest IVIG given
    course_days: int | None  # days from course start to today
    days_since_last: int | None  # days from the last IVIG to today
    # Why the course counts as ongoing, in words for the card ("active IVIG order", ...); empty
    # when it is not ongoing.
    ongoing_because: tuple[str, ...]

    @property
    def ongoing(self) -> bool:
        """rules.md "IVIG ongoing": an active/on-hold IVIG request, an IVIG drafted, or the last
        IVIG ≤ 56 days ago."""
        return bool(self.ongoing_because)

    @property
    def ever_given(self) -> bool:
        return self.last_given is not None

    @property
    def stopped(self) -> bool:
        """rules.md "IVIG stopped": given at least once and not ongoing."""
        return self.ever_given and not self.ongoing

    @property
    def stop_date(self) -> date | None:
        """The last IVIG day when stopped, else None."""
        return self.last_given.day if self.stopped and self.last_given else None

    @property
    def course_six_months(self) -> bool:
        """rules.md "course ≥ 6 months": course start ≥ 182 days before today."""
        return self.course_days is not None and self.course_days >= COURSE_SIX_MONTHS_DAYS


def _is_ivig_order(use: MedicationUse) -> bool:
    # A product ordered for subcutaneous use is not IVIG (rules.md "IVIG"); the record should
    # already exclude it, checked again because a wrong "ongoing" changes several rules.
    return use.medication.is_ivig and not use.subcutaneous


def drafted_ivig(record: PatientRecord) -> tuple[MedicationUse, ...]:
    """The IVIG orders drafted in this hook call (rules.md "Drafted", "IVIG": not subcutaneous)."""
    return tuple(u for u in record.drafted_ivig if _is_ivig_order(u))


def ivig_status(record: PatientRecord, today: date) -> IvigStatus:
    given = record.ivig_given
    first = min(given, key=lambda g: g.time) if given else None
    last = max(given, key=lambda g: g.time) if given else None

    open_request = any(
        _is_ivig_order(u)
        and u.resource_type == "MedicationRequest"
        and not u.drafted
        and u.is_order  # rules.md r2 "Order intent": a plan or proposal is not a course
        and u.status in ACTIVE_ORDER_STATUSES
        for u in record.ivig_uses
    )
    recent = last is not None and within_last(last.day, today, ONGOING_WINDOW_DAYS)
    because = tuple(
        reason
        for reason, holds in (
            ("active or on-hold IVIG order", open_request),
            ("IVIG order drafted", bool(drafted_ivig(record))),
            (f"last IVIG ≤ {ONGOING_WINDOW_DAYS} days ago", recent),
        )
        if holds
    )
    return IvigStatus(
        course_start=first.day if first else None,
        last_given=last,
        course_days=days_between(first.day, today) if first else None,
        days_since_last=days_between(last.day, today) if last else None,
        ongoing_because=because,
    )


def ivig_given_between(record: PatientRecord, start: date, end: date) -> tuple[IvigGiven, ...]:
    """The IVIG doses given on days start..end (both included)."""
    return tuple(g for g in record.ivig_given if start <= g.day <= end)


def grams_given_between(record: PatientRecord, start: date, end: date) -> Decimal:
    """Sum of the known grams of IVIG given on days start..end (both included).

    A dose given without a known amount adds nothing (DOSE-03's G28 is then a lower bound; the
    dosing card says which doses had no amount via ``doses_without_grams_between``).
    """
    return sum(
        (g.grams for g in ivig_given_between(record, start, end) if g.grams is not None),
        Decimal(0),
    )


def doses_without_grams_between(
    record: PatientRecord, start: date, end: date
) -> tuple[IvigGiven, ...]:
    """The IVIG doses given on days start..end whose amount is unknown."""
    return tuple(g for g in ivig_given_between(record, start, end) if g.grams is None)
