"""Choosing values from a series and counting days: the rules.md Definitions every area shares
("Usable observation", "Latest", "just before it", windows "in the last N days").

The record holds each kind's values oldest → newest (by time, then resource id). The status is
checked again here because choosing the wrong "latest" value would change every rule that reads
it. Two values at the same time: the one later in the record's order is the latest, for every
kind and every rule alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import TypeVar

from cds_service.record.model import USABLE_STATUSES, LabValue

V = TypeVar("V", bound=LabValue)


def usable(values: Sequence[V]) -> tuple[V, ...]:
    """The usable values (rules.md "Usable observation"), oldest → newest."""
    return tuple(sorted((v for v in values if v.status in USABLE_STATUSES), key=lambda v: v.time))


def latest(values: Sequence[V]) -> V | None:
    """rules.md "Latest": the usable value with the greatest time."""
    series = usable(values)
    return series[-1] if series else None


def just_before(values: Sequence[V], value: LabValue) -> V | None:
    """The usable value immediately before ``value`` in time (rules.md "just before it")."""
    earlier = [v for v in usable(values) if v.time < value.time]
    return earlier[-1] if earlier else None


def days_between(earlier: date, later: date) -> int:
    """Calendar days from ``earlier`` to ``later`` (negative when ``later`` is before)."""
    return (later - earlier).days


def within_last(day: date, today: date, days: int) -> bool:
    """``day`` is in the last ``days`` days, day ``days`` included; a day after today counts too
    (a lab or EHR clock ahead of ours: the newest data the patient has)."""
    return days_between(day, today) <= days
