"""rules.md Definitions: IVIG given, course start, last IVIG, 6-month course, ongoing, stopped."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from cds_service.fhir.data import FhirData
from cds_service.record.build import build_record
from cds_service.record.ivig import drafted_ivig, grams_given_between, ivig_status
from cds_service.record.model import IvigGiven, Medication, MedicationUse, PatientRecord
from cds_service.settings import Settings

TODAY = date(2025, 11, 13)
IVIG = Medication(display="Gamunex-C", is_ivig=True)


def given(
    days_ago: int, grams: str | None = "40", kind: str = "MedicationAdministration"
) -> IvigGiven:
    day = TODAY - timedelta(days=days_ago)
    return IvigGiven(
        time=datetime(day.year, day.month, day.day, 9, tzinfo=UTC),
        grams=Decimal(grams) if grams is not None else None,
        resource_type=kind,
        resource_id=f"g{days_ago}",
        status="completed",
    )


def order(status: str, drafted: bool = False, subcutaneous: bool = False) -> MedicationUse:
    return MedicationUse(
        resource_type="MedicationRequest",
        resource_id=f"mr-{status}",
        status=status,
        intent="order",
        medication=IVIG,
        authored_on=TODAY - timedelta(days=400),
        end_date=None,
        drafted=drafted,
        subcutaneous=subcutaneous,
    )


def record(
    given_list: tuple[IvigGiven, ...] = (), uses: tuple[MedicationUse, ...] = ()
) -> PatientRecord:
    return PatientRecord(
        patient_id="p1",
        gender="female",
        birth_date=date(1960, 1, 1),
        hook="patient-view",
        ivig_given=tuple(sorted(given_list, key=lambda g: g.time)),
        ivig_uses=uses,
    )


def test_never_given_is_neither_ongoing_nor_stopped() -> None:
    status = ivig_status(record(), TODAY)
    assert not status.ever_given and not status.ongoing and not status.stopped
    assert status.course_start is None and status.last_given is None
    assert status.course_days is None and status.stop_date is None
    assert not status.course_six_months


def test_course_start_and_last_are_first_and_latest_given() -> None:
    status = ivig_status(record((given(10), given(300), given(100))), TODAY)
    assert status.course_start == TODAY - timedelta(days=300)
    assert status.last_given is not None and status.last_given.resource_id == "g10"
    assert status.course_days == 300
    assert status.days_since_last == 10


@pytest.mark.parametrize(("days_ago", "ongoing"), [(55, True), (56, True), (57, False)])
def test_last_ivig_within_56_days_is_ongoing(days_ago: int, ongoing: bool) -> None:
    status = ivig_status(record((given(days_ago),)), TODAY)
    assert status.ongoing is ongoing
    assert status.stopped is (not ongoing)
    assert status.stop_date == (None if ongoing else TODAY - timedelta(days=days_ago))


@pytest.mark.parametrize(
    ("use", "ongoing"),
    [
        (order("active"), True),
        (order("on-hold"), True),
        (order("draft", drafted=True), True),
        (order("stopped"), False),
        (order("completed"), False),
        (order("cancelled"), False),
        (order("active", subcutaneous=True), False),  # SC product: not IVIG
    ],
)
def test_open_or_drafted_order_keeps_course_ongoing(use: MedicationUse, ongoing: bool) -> None:
    status = ivig_status(record((given(200),), (use,)), TODAY)
    assert status.ongoing is ongoing
    assert status.stopped is (not ongoing)


def test_open_order_without_any_dose_given_is_ongoing_not_stopped() -> None:
    status = ivig_status(record((), (order("active"),)), TODAY)
    assert status.ongoing and not status.stopped and not status.ever_given


@pytest.mark.parametrize(("days", "six_months"), [(181, False), (182, True), (183, True)])
def test_course_six_months_is_182_days(days: int, six_months: bool) -> None:
    status = ivig_status(record((given(days), given(5))), TODAY)
    assert status.course_six_months is six_months


def test_medication_request_only_counts_as_given() -> None:
    status = ivig_status(record((given(90, kind="MedicationRequest"),)), TODAY)
    assert status.ever_given and status.stopped
    assert status.last_given is not None
    assert status.last_given.resource_type == "MedicationRequest"


def test_grams_given_between_is_inclusive_and_skips_unknown_amounts() -> None:
    rec = record(
        (given(28, "30"), given(27, "20"), given(0, "10"), given(29, "99"), given(5, None))
    )
    assert grams_given_between(rec, TODAY - timedelta(days=28), TODAY) == Decimal("60")
    assert grams_given_between(rec, TODAY - timedelta(days=27), TODAY - timedelta(days=1)) == 20
    assert grams_given_between(rec, TODAY + timedelta(days=1), TODAY + timedelta(days=9)) == 0


# --- read from R4 JSON: status codes and order intent (rules.md r2) ------------------------------

GAMUNEX_R4 = {"coding": [{"system": "http://hl7.org/fhir/sid/ndc", "code": "13533-800"}]}


def built(*resources: dict[str, Any]) -> PatientRecord:
    patient = {"resourceType": "Patient", "id": "p1", "gender": "female"}
    data = FhirData(resources=(patient, *resources), drafts=(), selections=())
    return build_record(data, {"hook": "patient-view", "context": {"patientId": "p1"}}, Settings())


def ivig_request(status: str = "active", intent: str | None = "order") -> dict[str, Any]:
    r: dict[str, Any] = {
        "resourceType": "MedicationRequest", "id": "mr1", "status": status,
        "subject": {"reference": "Patient/p1"}, "medicationCodeableConcept": GAMUNEX_R4,
        "authoredOn": "2025-10-01",
        "dosageInstruction": [{"doseAndRate": [{"doseQuantity": {
            "value": 30, "system": "http://unitsofmeasure.org", "code": "g"}}]}],
    }
    if intent is not None:
        r["intent"] = intent
    return r


@pytest.mark.parametrize(
    ("intent", "counts"),
    [
        ("order", True), ("original-order", True), ("reflex-order", True),
        ("filler-order", True), ("instance-order", True), (None, True), (" Order ", True),
        ("proposal", False), ("plan", False), ("directive", False), ("option", False),
    ],
)
def test_only_an_order_intent_gives_ivig_or_keeps_a_course_ongoing(
    intent: str | None, counts: bool
) -> None:
    # rules.md r2 "Order intent": a plan or proposal was never given and is no open course.
    rec = built(ivig_request("active", intent))
    assert [g.resource_id for g in rec.ivig_given] == (["mr1"] if counts else [])
    assert ivig_status(rec, TODAY).ongoing is counts


@pytest.mark.parametrize("status", ["Completed", " IN-PROGRESS ", "stopped"])
def test_administration_status_read_trimmed_and_in_any_case(status: str) -> None:
    admin = {
        "resourceType": "MedicationAdministration", "id": "a1", "status": status,
        "medicationCodeableConcept": GAMUNEX_R4, "effectiveDateTime": "2025-11-01",
        "subject": {"reference": "Patient/p1"},
    }
    rec = built(admin)
    assert [g.resource_id for g in rec.ivig_given] == ["a1"]
    assert ivig_status(rec, TODAY).days_since_last == 12


@pytest.mark.parametrize(
    ("selection", "drafted"),
    [
        ("MedicationRequest/ivig-1", True),
        # Mutation-run gap: a versioned reference still selects its draft
        ("MedicationRequest/ivig-1/_history/2", True),
        ("https://ehr.example/fhir/MedicationRequest/ivig-1/_history/17", True),
        (" MedicationRequest/ivig-1/ ", True),
        ("MedicationRequest/ivig-2/_history/1", False),
        ("Medication/ivig-1", False),
    ],
)
def test_order_select_selection_picks_the_drafted_ivig(selection: str, drafted: bool) -> None:
    draft = {**ivig_request("draft"), "id": "ivig-1"}
    other = {**ivig_request("draft"), "id": "ivig-3"}
    data = FhirData(
        resources=({"resourceType": "Patient", "id": "p1"},),
        drafts=(draft, other),
        selections=(selection,),
    )
    body = {"hook": "order-select", "context": {"patientId": "p1"}}
    rec = build_record(data, body, Settings())
    assert [u.resource_id for u in drafted_ivig(rec)] == (["ivig-1"] if drafted else [])


@pytest.mark.parametrize(
    ("written", "day"),
    [
        ("2025-10-16T23:30:00-05:00", date(2025, 10, 16)),  # 2025-10-17 in UTC
        ("2025-10-16T00:30:00+09:00", date(2025, 10, 16)),  # 2025-10-15 in UTC
        ("2025-10-16", date(2025, 10, 16)),
    ],
)
def test_the_day_of_an_infusion_is_the_date_as_written(written: str, day: date) -> None:
    # rules.md r2 "Day of a time": the offset is not converted; the 28-day window of DOSE-03 and
    # every IVIG day count read this day.
    admin = {
        "resourceType": "MedicationAdministration", "id": "a1", "status": "completed",
        "medicationCodeableConcept": GAMUNEX_R4, "effectiveDateTime": written,
        "subject": {"reference": "Patient/p1"},
        "dosage": {"dose": {"value": 40, "system": "http://unitsofmeasure.org", "code": "g"}},
    }
    rec = built(admin)
    (infusion,) = rec.ivig_given
    assert infusion.day == day
    assert grams_given_between(rec, day, day) == 40
    assert grams_given_between(rec, day + timedelta(days=1), TODAY) == 0
    assert grams_given_between(rec, day - timedelta(days=5), day - timedelta(days=1)) == 0
    assert ivig_status(rec, TODAY).days_since_last == (TODAY - day).days
