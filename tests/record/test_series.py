"""rules.md "Usable observation", "Latest", "just before it" and day windows: ``record.series``,
the one reading every area uses (CK, creatinine, eGFR, IgA, weight, height)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from cds_service.record.dosing import latest_height, latest_weight
from cds_service.record.series import days_between, just_before, latest, usable, within_last
from cds_service.settings import ClinicalSettings
from tests.advice import builders as b

TODAY = b.TODAY
CLINICAL = ClinicalSettings()


def test_latest_ignores_unusable_statuses_even_if_newer() -> None:
    older = b.ck(500, 10)
    newer_cancelled = b.ck(9000, 1, status="cancelled")
    assert latest((older, newer_cancelled)) == older
    assert latest(()) is None


def test_latest_counts_preliminary() -> None:
    prelim = b.ck(900, 1, status="preliminary")
    assert latest((b.ck(500, 10), prelim)) == prelim


def test_latest_uses_time_not_tuple_order() -> None:
    a, c = b.ck(500, 10), b.ck(700, 2)
    assert latest((c, a)) == c


@pytest.mark.parametrize("kind", ["ck", "creatinine", "egfr", "iga", "weight", "height"])
def test_same_time_the_later_in_record_order_is_the_latest_for_every_kind(kind: str) -> None:
    # The record orders equal times by resource id; every rule must pick the same one.
    first = b.lab(kind, "10", 3, resource_id="a")
    second = b.lab(kind, "20", 3, resource_id="b")
    assert latest((first, second)) is second


def test_weight_and_height_use_the_shared_latest() -> None:
    weights = (b.lab("weight", 80, 3, resource_id="a"), b.lab("weight", 81, 3, resource_id="b"))
    heights = (b.lab("height", 170, 99, resource_id="a"), b.lab("height", 171, 99, resource_id="b"))
    record = b.record(weight=weights, height=heights)
    assert latest_weight(record, TODAY, CLINICAL) is weights[1]
    assert latest_height(record) is heights[1]


def test_usable_drops_other_statuses_and_sorts_by_time() -> None:
    registered = b.ck(100, 1, status="registered")
    old, new = b.ck(200, 9), b.ck(300, 2)
    assert usable((new, registered, old)) == (old, new)


def test_just_before_skips_unusable_and_same_time_values() -> None:
    before = b.creatinine("0.9", 10)
    cancelled = b.creatinine("5.0", 5, status="cancelled")
    value = b.creatinine("1.6", 1)
    same_time = b.creatinine("1.7", 1, resource_id="other")
    assert just_before((before, cancelled, value, same_time), value) is before
    assert just_before((value,), value) is None


def test_days_between_counts_calendar_days_either_way() -> None:
    assert days_between(TODAY - timedelta(days=30), TODAY) == 30
    assert days_between(TODAY, TODAY - timedelta(days=2)) == -2


@pytest.mark.parametrize(("days_ago", "within"), [(-40, True), (0, True), (90, True), (91, False)])
def test_within_last_includes_day_n_and_future_days(days_ago: int, within: bool) -> None:
    assert within_last(TODAY - timedelta(days=days_ago), TODAY, 90) is within
