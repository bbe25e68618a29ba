"""rules.md Definitions for the statin rules: recent CK, active statin, statin stop date,
anti-HMGCR positive, the value just before another, the creatinine rise."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from decimal import Decimal

import pytest

from cds_service.fhir.terminology import condition_kinds
from cds_service.record.statin import (
    active_statins,
    at_least_above,
    ck_just_before,
    creatinine_rise,
    hmgcr_positive,
    hmgcr_result_on_file,
    is_recent,
    recent_ck,
    statin_active,
    statin_active_or_drafted,
    statin_courses,
    statin_stop_date,
    stopped_course,
)
from cds_service.settings import ClinicalSettings
from tests.advice import builders as b

TODAY = b.TODAY
CLINICAL = ClinicalSettings()


# --- recent ------------------------------------------------------------------------


@pytest.mark.parametrize(("days_ago", "recent"), [(0, True), (29, True), (30, True), (31, False)])
def test_recent_window_includes_day_30(days_ago: int, recent: bool) -> None:
    record = b.record(ck=(b.ck(5000, days_ago),))
    assert (recent_ck(record, TODAY, CLINICAL) is not None) is recent
    assert is_recent(b.day_of(days_ago), TODAY, CLINICAL) is recent


def test_recent_window_is_a_setting() -> None:
    record = b.record(ck=(b.ck(5000, 40),))
    assert recent_ck(record, TODAY, CLINICAL) is None
    assert recent_ck(record, TODAY, replace(CLINICAL, recent_days=45)) is not None


def test_recent_ck_is_the_latest_only() -> None:
    # An old high CK behind a newer, non-recent one never becomes "recent".
    record = b.record(ck=(b.ck(9000, 40), b.ck(300, 35)))
    assert recent_ck(record, TODAY, CLINICAL) is None
    record = b.record(ck=(b.ck(9000, 5), b.ck(300, 2)))
    found = recent_ck(record, TODAY, CLINICAL)
    assert found is not None and found.value == Decimal(300)


def test_a_day_after_today_is_not_recent() -> None:
    # rules.md r2: a future date is a data error (the record leaves such results out; should one
    # reach here it is not "recent" either).
    record = b.record(ck=(b.ck(5000, b.day_of(-1)),))
    assert recent_ck(record, TODAY, CLINICAL) is None
    record = b.record(ck=(b.ck(5000, 0),))
    assert recent_ck(record, TODAY, CLINICAL) is not None


def test_ck_just_before() -> None:
    first, second, third = b.ck(100, 30), b.ck(200, 20), b.ck(300, 10)
    cancelled = b.ck(999, 15, status="entered-in-error")
    record = b.record(ck=(first, second, cancelled, third))
    assert ck_just_before(record, third) == second
    assert ck_just_before(record, first) is None


# --- bounds ---------------------------------------------------------------------------------


def test_at_least_above_exact_values() -> None:
    prev = b.creatinine("1.0", 10)
    assert at_least_above(b.creatinine("1.5", 1), prev, Decimal("0.5"))
    assert not at_least_above(b.creatinine("1.49", 1), prev, Decimal("0.5"))


def test_at_least_above_with_bounds() -> None:
    # "<1.0" then 1.5: the rise is more than 0.5 whatever the first value was.
    assert at_least_above(
        b.creatinine("1.5", 1), b.creatinine("1.0", 10, comparator="<"), Decimal("0.5")
    )
    # ">1.0" then 1.6: the first could have been 1.2, so no rise of 0.5 is shown.
    assert not at_least_above(
        b.creatinine("1.6", 1), b.creatinine("1.0", 10, comparator=">"), Decimal("0.5")
    )
    # "<2.0" now cannot show a rise over 1.0 before.
    assert not at_least_above(
        b.creatinine("2.0", 1, comparator="<"), b.creatinine("1.0", 10), Decimal("0.5")
    )
    # ">1.5" now is a rise of more than 0.5 over 1.0.
    assert at_least_above(
        b.creatinine("1.5", 1, comparator=">"), b.creatinine("1.0", 10), Decimal("0.5")
    )


# --- creatinine rise ------------------------------------------------------------------------


@pytest.mark.parametrize(("latest_value", "rises"), [("1.4", False), ("1.5", True), ("1.6", True)])
def test_creatinine_rise_threshold_is_inclusive(latest_value: str, rises: bool) -> None:
    record = b.record(creatinine=(b.creatinine("1.0", 20), b.creatinine(latest_value, 2)))
    found = creatinine_rise(record, TODAY, CLINICAL, Decimal("0.5"))
    assert (found is not None) is rises


def test_creatinine_rise_needs_two_values() -> None:
    record = b.record(creatinine=(b.creatinine("3.0", 2),))
    assert creatinine_rise(record, TODAY, CLINICAL, Decimal("0.5")) is None


@pytest.mark.parametrize(("days_ago", "counts"), [(30, True), (31, False)])
def test_creatinine_rise_needs_recent_latest(days_ago: int, counts: bool) -> None:
    record = b.record(creatinine=(b.creatinine("1.0", 60), b.creatinine("2.0", days_ago)))
    assert (creatinine_rise(record, TODAY, CLINICAL, Decimal("0.5")) is not None) is counts


def test_creatinine_rise_compares_with_the_value_just_before() -> None:
    # 1.0 → 1.8 → 2.0: the latest is only 0.2 above the one just before it.
    record = b.record(
        creatinine=(b.creatinine("1.0", 20), b.creatinine("1.8", 10), b.creatinine("2.0", 2))
    )
    assert creatinine_rise(record, TODAY, CLINICAL, Decimal("0.5")) is None


# --- statin exposure ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("resource_type", "status", "active"),
    [
        ("MedicationRequest", "active", True),
        ("MedicationRequest", "on-hold", True),
        ("MedicationRequest", "stopped", False),
        ("MedicationRequest", "completed", False),
        ("MedicationRequest", "cancelled", False),
        ("MedicationRequest", "draft", False),
        ("MedicationStatement", "active", True),
        ("MedicationStatement", "on-hold", True),  # r2: a paused statin is still active
        ("MedicationStatement", "completed", False),
        ("MedicationStatement", "stopped", False),
    ],
)
def test_statin_active_statuses(resource_type: str, status: str, active: bool) -> None:
    record = b.record(statin_uses=(b.statin(status, resource_type=resource_type),))
    assert statin_active(record) is active
    assert statin_active_or_drafted(record) is active


def test_draft_is_active_or_drafted_but_not_active() -> None:
    record = b.record(hook="order-select", statin_uses=(b.drafted_statin(),))
    assert not statin_active(record)
    assert statin_active_or_drafted(record)
    assert active_statins(record) == ()


def test_non_statin_use_is_never_a_statin() -> None:
    aspirin = b.medication("aspirin 81 MG")
    record = b.record(statin_uses=(b.use(aspirin, "active"),))
    assert not statin_active(record)


def test_statin_courses_statuses() -> None:
    uses = tuple(
        b.statin(s, resource_id=s, end=40)
        for s in ("stopped", "completed", "cancelled", "entered-in-error", "unknown")
    )
    record = b.record(statin_uses=uses)
    assert {u.status for u in statin_courses(record)} == {"stopped", "completed"}


def test_stop_date_is_latest_end_over_courses() -> None:
    record = b.record(
        statin_uses=(
            b.statin("stopped", resource_id="a", end=200),
            b.statin("completed", resource_id="b", end=60, resource_type="MedicationStatement"),
            b.statin("cancelled", resource_id="c", end=10),  # not a course
        )
    )
    assert statin_stop_date(record) == b.day_of(60)
    course = stopped_course(record)
    assert course is not None and course.resource_id == "b"


@pytest.mark.parametrize(
    ("resource_type", "status"),
    [
        ("MedicationRequest", "active"),
        ("MedicationRequest", "on-hold"),
        ("MedicationStatement", "active"),
        ("MedicationStatement", "on-hold"),
    ],
)
def test_no_stop_date_while_a_statin_is_active_or_on_hold(resource_type: str, status: str) -> None:
    record = b.record(
        statin_uses=(
            b.statin("stopped", resource_id="old", end=100),
            b.statin(status, resource_id="now", resource_type=resource_type),
        )
    )
    assert statin_stop_date(record) is None


def test_drafted_statin_does_not_hide_the_stop_date() -> None:
    record = b.record(
        hook="order-sign",
        statin_uses=(b.statin("stopped", end=30), b.drafted_statin()),
    )
    assert statin_stop_date(record) == b.day_of(30)


def test_no_stop_date_without_an_end() -> None:
    record = b.record(statin_uses=(b.statin("stopped", end=None),))
    assert statin_stop_date(record) is None
    assert stopped_course(record) is None


# --- anti-HMGCR -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "comparator", "positive"),
    [
        ("19.9", None, False),
        ("20", None, True),
        ("85", None, True),
        ("20", "<", False),
        ("19", ">", False),
        ("20", ">", True),
        ("20", ">=", True),
        ("25", "<=", False),
    ],
)
def test_hmgcr_cutoff_20_bound_aware(value: str, comparator: str | None, positive: bool) -> None:
    record = b.record(hmgcr=(b.hmgcr(value, 10, comparator=comparator),))
    assert (hmgcr_positive(record, TODAY) is not None) is positive


@pytest.mark.parametrize("flag", ["POS", "H", "HH", "A"])
def test_hmgcr_positive_interpretation_whatever_the_value(flag: str) -> None:
    record = b.record(hmgcr=(b.hmgcr("3", 10, interpretation=(flag,)),))
    assert hmgcr_positive(record, TODAY) is not None


def test_hmgcr_qualitative_result() -> None:
    positive = replace(
        b.hmgcr(0, 10, original="Positive", interpretation=("POS",)), qualitative=True
    )
    negative = replace(
        b.hmgcr(0, 10, original="Negative", interpretation=("NEG",)), qualitative=True
    )
    assert hmgcr_positive(b.record(hmgcr=(positive,)), TODAY) == positive
    assert hmgcr_positive(b.record(hmgcr=(negative,)), TODAY) is None
    assert hmgcr_result_on_file(b.record(hmgcr=(negative,)))


def test_hmgcr_unusable_status_is_not_evidence() -> None:
    record = b.record(hmgcr=(b.hmgcr(85, 10, status="entered-in-error"),))
    assert hmgcr_positive(record, TODAY) is None
    assert not hmgcr_result_on_file(record)


def test_hmgcr_any_positive_result_counts_and_latest_is_returned() -> None:
    old, new = b.hmgcr(40, 300), b.hmgcr(60, 20)
    record = b.record(hmgcr=(old, b.hmgcr(5, 100), new))
    assert hmgcr_positive(record, TODAY) == new


@pytest.mark.parametrize(
    "text",
    [
        "Anti-HMGCR myopathy",
        "Immune-mediated necrotizing myopathy",
        "IMMUNE-MEDIATED NECROTISING MYOPATHY",
        "hmgcr antibody positive",
    ],
)
def test_hmgcr_condition_text(text: str) -> None:
    record = b.record(conditions=(b.condition(text),))
    assert hmgcr_positive(record, TODAY) is not None


def test_hmgcr_condition_code_alone_is_not_enough() -> None:
    record = b.record(conditions=(b.condition("Other inflammatory and immune myopathies"),))
    assert hmgcr_positive(record, TODAY) is None


def test_hmgcr_condition_text_must_name_necrotizing_myopathy() -> None:
    # rules.md "Anti-HMGCR positive": contains "HMGCR" or "necrotizing"/"necrotising myopathy".
    text = "Necrotizing fasciitis; steroid myopathy"
    fasciitis = replace(b.condition(text), kinds=condition_kinds({"text": text}))
    assert hmgcr_positive(b.record(conditions=(fasciitis,)), TODAY) is None


def test_hmgcr_condition_by_terminology_kind() -> None:
    cond = replace(b.condition("Necrotizing autoimmune myopathy"), kinds=("hmgcr-myopathy",))
    assert hmgcr_positive(b.record(conditions=(cond,)), TODAY) == cond


@pytest.mark.parametrize(
    ("clinical_status", "verification", "counts"),
    [
        ("active", "confirmed", True),
        ("relapse", None, True),
        (None, None, True),
        # r2: any clinicalStatus counts (a past statin-associated IMNM forbids statins for life)
        ("resolved", "confirmed", True),
        ("inactive", "confirmed", True),
        ("remission", "provisional", True),
        ("active", "entered-in-error", False),
        ("active", "refuted", False),
        ("resolved", "refuted", False),
    ],
)
def test_hmgcr_condition_any_clinical_status_but_not_void(
    clinical_status: str | None, verification: str | None, counts: bool
) -> None:
    cond = b.condition(
        "Anti-HMGCR myopathy", clinical_status=clinical_status, verification_status=verification
    )
    assert (hmgcr_positive(b.record(conditions=(cond,)), TODAY) is not None) is counts


@pytest.mark.parametrize(("days_ago", "within"), [(179, True), (180, True), (181, False)])
def test_hmgcr_time_limit_on_results(days_ago: int, within: bool) -> None:
    record = b.record(hmgcr=(b.hmgcr(85, days_ago),))
    assert (hmgcr_positive(record, TODAY, within_days=180) is not None) is within
    assert hmgcr_positive(record, TODAY) is not None  # no limit unless a rule says one


def test_hmgcr_condition_date_onset_then_recorded_then_within() -> None:
    onset_old = b.condition("Anti-HMGCR myopathy", onset=400, recorded=10)
    recorded_new = b.condition("Anti-HMGCR myopathy", recorded=10)
    undated = b.condition("Anti-HMGCR myopathy")
    assert hmgcr_positive(b.record(conditions=(onset_old,)), TODAY, within_days=180) is None
    assert hmgcr_positive(b.record(conditions=(recorded_new,)), TODAY, within_days=180) is not None
    assert hmgcr_positive(b.record(conditions=(undated,)), TODAY, within_days=180) is not None


def test_result_preferred_to_condition() -> None:
    result = b.hmgcr(85, 20)
    record = b.record(hmgcr=(result,), conditions=(b.condition("Anti-HMGCR myopathy"),))
    assert hmgcr_positive(record, TODAY) == result


def test_negative_result_is_on_file_but_not_positive() -> None:
    record = b.record(hmgcr=(b.hmgcr(4, 20),))
    assert hmgcr_result_on_file(record)
    assert hmgcr_positive(record, TODAY) is None


def test_today_matters_only_for_time_limits() -> None:
    record = b.record(hmgcr=(b.hmgcr(85, date(2020, 1, 1)),))
    assert hmgcr_positive(record, TODAY) is not None
    assert hmgcr_positive(record, TODAY, within_days=180) is None
