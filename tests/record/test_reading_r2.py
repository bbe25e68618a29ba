"""rules.md revision 2, the record's reading of observations, values, units and statin orders:
"Reading a resource" (codes trimmed, any case), "Usable observation" (effectiveInstant, no value,
future dates, duplicates, anti-HMGCR without a number), "Day of a time" (the date as written,
every dateTime the grammar allows), "Units" (whitespace, ²), "Order intent" and "Active statin"
(on-hold statements). Pure functions: one Observation, or a small record built from resources.
"""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from cds_service.fhir.data import FhirData
from cds_service.record.build import build_record
from cds_service.record.model import LabValue, PatientRecord, UnusableResult
from cds_service.record.series import latest
from cds_service.record.statin import (
    active_statins,
    hmgcr_positive,
    hmgcr_result_on_file,
    hmgcr_result_positive,
    statin_courses,
    statin_stop_date,
)
from cds_service.record.units import factor_for, normalise_unit
from cds_service.record.values import parse_date, parse_datetime, read_code, read_observation
from cds_service.settings import ClinicalSettings, Settings

CLINICAL = ClinicalSettings()
UCUM = "http://unitsofmeasure.org"
TODAY = date(2025, 7, 1)
CK_CODE = {"coding": [{"system": "http://loinc.org", "code": "2157-6"}]}
HMGCR_CODE = {"coding": [{"system": "http://loinc.org", "code": "93493-5"}]}
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"


def observation(
    rid: str = "o1",
    *,
    code: dict[str, Any] = CK_CODE,
    value: float | None = 600,
    unit: str = "U/L",
    when: str | None = "2025-06-20",
    **extra: Any,
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": rid,
        "status": "final",
        "code": code,
        "subject": {"reference": "Patient/p1"},
    }
    if when is not None:
        resource["effectiveDateTime"] = when
    if value is not None:
        resource["valueQuantity"] = {"value": value, "unit": unit, "system": UCUM, "code": unit}
    resource.update(extra)
    return resource


def read(resource: dict[str, Any], kind: str = "ck") -> LabValue | UnusableResult | None:
    return read_observation(resource, kind, "male", CLINICAL)


def usable(resource: dict[str, Any], kind: str = "ck") -> LabValue:
    result = read(resource, kind)
    assert isinstance(result, LabValue), result
    return result


def not_usable(resource: dict[str, Any], kind: str = "ck") -> UnusableResult:
    result = read(resource, kind)
    assert isinstance(result, UnusableResult), result
    return result


def patient(gender: str = "male") -> dict[str, Any]:
    return {"resourceType": "Patient", "id": "p1", "gender": gender, "birthDate": "1960-01-01"}


def build(
    *resources: dict[str, Any],
    drafts: tuple[dict[str, Any], ...] = (),
    hook: str = "patient-view",
    today: date = TODAY,
) -> PatientRecord:
    data = FhirData(resources=(patient(), *resources), drafts=drafts, selections=())
    body = {"hook": hook, "hookInstance": "t", "context": {"patientId": "p1"}}
    return build_record(data, body, Settings(), today=today)


def statin_use(
    resource_type: str, rid: str, status: str, rxnorm: str, display: str, **extra: Any
) -> dict[str, Any]:
    return {
        "resourceType": resource_type,
        "id": rid,
        "status": status,
        "subject": {"reference": "Patient/p1"},
        "medicationCodeableConcept": {
            "coding": [{"system": RXNORM, "code": rxnorm, "display": display}]
        },
        **extra,
    }


def statin_request(
    rid: str = "mr1", status: str = "active", intent: str | None = "order", **extra: Any
) -> dict[str, Any]:
    if intent is not None:
        extra["intent"] = intent
    extra.setdefault("authoredOn", "2024-01-10")
    return statin_use("MedicationRequest", rid, status, "617310", "atorvastatin 20 MG", **extra)


def statin_statement(rid: str = "ms1", status: str = "active", **extra: Any) -> dict[str, Any]:
    return statin_use("MedicationStatement", rid, status, "198211", "simvastatin 40 MG", **extra)


# --- Reading a resource: codes trimmed, any case ---------------------------------------------


@pytest.mark.parametrize("status", ["FINAL", " final ", "Amended", "PRELIMINARY\n"])
def test_observation_status_read_trimmed_any_case(status: str) -> None:
    assert usable(observation(status=status)).status == status.strip().lower()


@pytest.mark.parametrize("status", ["CANCELLED", " Entered-In-Error ", 7, None, {"code": "final"}])
def test_other_or_unreadable_statuses_are_still_ignored(status: object) -> None:
    assert read(observation(status=status)) is None


def test_read_code() -> None:
    assert read_code("  On-Hold ") == "on-hold"
    assert read_code("") is None and read_code(3) is None and read_code(None) is None


def test_unit_code_and_system_read_any_case() -> None:
    resource = observation(valueQuantity={"value": 5, "system": " HTTP://unitsofmeasure.org/ ",
                                          "code": "UKAT/L"})
    assert usable(resource).value == 300


def test_reference_range_type_read_any_case() -> None:
    ranges = [
        {"type": {"coding": [{"code": "TREATMENT"}]}, "high": {"value": 1000, "code": "U/L",
                                                           "system": UCUM}},
        {"type": {"coding": [{"code": " Normal "}]}, "high": {"value": 200, "code": "U/L",
                                                          "system": UCUM}},
    ]
    result = usable(observation(referenceRange=ranges))
    assert result.ref_high == 200


def test_interpretation_codes_read_any_case() -> None:
    resource = observation(code=HMGCR_CODE, value=None, valueString="see report",
                           interpretation=[{"coding": [{"code": " pos "}]}])
    result = usable(resource, "hmgcr")
    assert result.interpretation == ("POS",)
    assert hmgcr_result_positive(result)


def test_flawed_elements_no_rule_reads_do_not_hide_the_result() -> None:
    resource = observation(
        fooBar=1, note="checked twice", performer="Dr Who", interpretation={"text": "high"}
    )
    assert usable(resource).value == 600


# --- Usable observation: time, no value, future, duplicates ---------------------------------


def test_effective_instant_comes_after_effective_date_time_before_period() -> None:
    resource = observation(
        when=None,
        effectiveInstant="2025-06-18T10:00:00Z",
        effectivePeriod={"start": "2025-06-01"},
        issued="2025-06-25T00:00:00Z",
    )
    assert usable(resource).day == date(2025, 6, 18)
    resource["effectiveDateTime"] = "2025-06-19"
    assert usable(resource).day == date(2025, 6, 19)


@pytest.mark.parametrize(
    "value_members",
    [
        {"valueQuantity": {"unit": "U/L", "system": UCUM, "code": "U/L"}},  # no number
        {"valueQuantity": {"value": "high", "system": UCUM, "code": "U/L"}},
        {"valueString": "hemolysed"},
        {},
    ],
)
def test_result_without_a_number_is_not_usable(value_members: dict[str, Any]) -> None:
    resource = observation(value=None, **value_members)
    assert not_usable(resource).reason in ("no numeric value", "value 'hemolysed' not recognised")


def test_data_absent_reason_makes_a_result_not_usable_even_with_a_value() -> None:
    reason = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/data-absent-reason",
                          "code": "error"}]}
    assert not_usable(observation(dataAbsentReason=reason)).reason == "no value (dataAbsentReason)"
    assert usable(observation(dataAbsentReason={})).value == 600


def test_result_dated_after_today_is_not_usable_and_said() -> None:
    record = build(observation("past", value=600, when="2025-06-20"),
                   observation("future", value=5000, when="2025-07-02"))
    assert [v.resource_id for v in record.ck] == ["past"]
    (future,) = record.unusable
    assert (future.resource_id, future.reason) == ("future", "dated after today")


def test_today_itself_is_usable_and_the_date_is_the_written_one() -> None:
    # 2025-07-01T23:30-05:00 is 2025-07-02 in UTC: its day is still today (the date as written).
    record = build(observation("late", when="2025-07-01T23:30:00-05:00"))
    assert [v.day for v in record.ck] == [TODAY]
    # 2025-07-02T01:00+09:00 is 2025-07-01 in UTC, but written on the 2nd: after today.
    record = build(observation("tokyo", when="2025-07-02T01:00:00+09:00"))
    assert record.ck == () and record.unusable[0].reason == "dated after today"


def test_build_record_today_defaults_to_settings_today() -> None:
    data = FhirData(resources=(patient(), observation(when="2025-07-02")), drafts=(), selections=())
    body = {"hook": "patient-view", "context": {"patientId": "p1"}}
    assert build_record(data, body, Settings(today=date(2025, 7, 1))).ck == ()
    assert len(build_record(data, body, Settings(today=date(2025, 7, 2))).ck) == 1


def test_duplicates_same_code_instant_value_unit_count_once() -> None:
    record = build(observation("a", when="2025-06-20T08:00:00Z"),
                   observation("b", when="2025-06-20T10:00:00+02:00"))  # the same instant
    assert [v.resource_id for v in record.ck] == ["a"]


@pytest.mark.parametrize(
    "other",
    [
        {"when": "2025-06-20T08:01:00Z"},  # another instant
        {"value": 601},  # another value
        {"unit": "IU/L"},  # another unit (the same amount)
        {"status": "amended", "value": 602},
    ],
)
def test_results_differing_in_code_instant_value_or_unit_are_two(other: dict[str, Any]) -> None:
    first = observation("a", when="2025-06-20T08:00:00Z")
    kwargs: dict[str, Any] = {"when": "2025-06-20T08:00:00Z", **other}
    second = observation("b", **kwargs)
    assert read(second) is not None
    assert len(build(first, second).ck) == 2


def test_duplicate_sharing_one_coding_is_one_and_the_final_copy_is_kept() -> None:
    extra_code = {"coding": [*CK_CODE["coding"], {"system": "urn:local", "code": "CK"}]}
    record = build(observation("a", status="preliminary"), observation("b", code=extra_code))
    assert [(v.resource_id, v.status) for v in record.ck] == [("b", "final")]


@pytest.mark.parametrize(
    ("second_codes", "count"),
    [
        (["3141-9"], 2),  # another weight code, none shared: two results
        (["3141-9", "29463-7"], 1),  # one coding shared: one result
    ],
)
def test_same_instant_value_and_unit_are_one_only_with_a_shared_coding(
    second_codes: list[str], count: int
) -> None:
    def weight(rid: str, codes: list[str]) -> dict[str, Any]:
        code = {"coding": [{"system": "http://loinc.org", "code": c} for c in codes]}
        return observation(rid, code=code, value=80, unit="kg", when="2025-06-20T08:00:00Z")

    record = build(weight("a", ["29463-7"]), weight("b", second_codes))
    assert len(record.weight) == count


def test_latest_compares_instants_with_their_offsets() -> None:
    # 09:00-05:00 (14:00 UTC) is later than 12:00Z though its clock reads earlier.
    record = build(observation("utc", value=500, when="2025-06-20T12:00:00Z"),
                   observation("ny", value=900, when="2025-06-20T09:00:00-05:00"))
    found = latest(record.ck)
    assert found is not None and found.resource_id == "ny"


@pytest.mark.parametrize(("written", "day"), [("2025", date(2025, 1, 1)),
                                              ("2025-06", date(2025, 6, 1))])
def test_partial_dates_are_their_first_day(written: str, day: date) -> None:
    assert usable(observation(when=written)).day == day


# --- Day of a time: as written, every value the grammar allows ---------------------------------


@pytest.mark.parametrize(
    ("text", "day"),
    [
        ("2025-06-20T23:30:00-05:00", date(2025, 6, 20)),
        ("2025-06-21T00:30:00+14:00", date(2025, 6, 21)),
        ("9999-12-31T23:59:59-00:01", date(9999, 12, 31)),
        ("0001-01-01T00:00:00+00:01", date(1, 1, 1)),
        ("9999-12-31T23:59:59.999999999+14:00", date(9999, 12, 31)),
        ("2016-12-31T23:59:60Z", date(2016, 12, 31)),  # a leap second
        ("0001", date(1, 1, 1)),
    ],
)
def test_every_datetime_the_grammar_allows_parses_to_its_written_day(text: str, day: date) -> None:
    moment = parse_datetime(text)
    assert moment is not None and moment.date() == day
    assert parse_date(text) == day


def test_offset_kept_and_instants_compare() -> None:
    moment = parse_datetime("2025-06-20T23:30:00-05:00")
    assert moment is not None
    assert moment.utcoffset() == timedelta(hours=-5)
    assert moment == datetime(2025, 6, 21, 4, 30, tzinfo=UTC)
    edge = parse_datetime("9999-12-31T23:59:59-00:01")
    assert edge is not None and edge > datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
    assert edge.tzinfo == timezone(timedelta(minutes=-1))


@pytest.mark.parametrize("text", ["0000-01-01", "2025-02-30", "2025-06-20T24:00:00Z",
                                  "2025-06-20T10:00:61Z", "2025-06-20T10:00:00+24:00"])
def test_values_outside_the_grammar_are_none(text: str) -> None:
    assert parse_datetime(text) is None


def test_edge_datetimes_in_observations_and_orders_build() -> None:
    record = build(
        observation("first", when="0001-01-01T00:00:00+00:01"),
        observation("last", when="9999-12-31T23:59:59-00:01"),
        statin_request(status="stopped", authoredOn="0001-01-01T00:00:00+00:01",
                       dispenseRequest={"validityPeriod": {"end": "9999-12-31T23:59:59-00:01"}}),
    )
    assert [v.resource_id for v in record.ck] == ["first"]
    assert [u.reason for u in record.unusable] == ["dated after today"]
    (course,) = record.statin_uses
    assert course.authored_on == date(1, 1, 1) and course.end_date == date(9999, 12, 31)


# --- Units: whitespace, ², micro ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "normalised"),
    [
        ("mL/min/1.73 m²", "ml/min/1.73m2"),
        (" mL / min / 1.73\tm2 ", "ml/min/1.73m2"),
        ("\u00b5mol / L", "umol/l"),
        ("\u03bckat/L", "ukat/l"),
        ("U / L", "u/l"),
    ],
)
def test_normalise_unit(written: str, normalised: str) -> None:
    assert normalise_unit(written) == normalised


def test_egfr_unit_text_with_space_and_superscript_is_recognised() -> None:
    for text in ("mL/min/1.73 m2", "mL/min/1.73 m²", "ml/min/1.73m^2"):
        factor = factor_for("egfr", text)
        assert (factor is not None) is (text != "ml/min/1.73m^2"), text
    egfr_code = {"coding": [{"system": "http://loinc.org", "code": "98979-8"}]}
    resource = observation(code=egfr_code, valueQuantity={"value": 48, "unit": "mL/min/1.73 m²"})
    result = usable(resource, "egfr")
    assert result.value == 48 and result.unit == "mL/min/1.73m2"


def test_unknown_unit_not_usable_with_its_name() -> None:
    result = not_usable(observation(unit="mmol/h"))
    assert result.reason == "unit 'mmol/h' not recognised"


def test_long_value_string_is_read_in_linear_time() -> None:
    # A value string with a long run of inner blanks once took minutes (regex backtracking).
    text = "500 U/" + " " * 100_000 + "L"
    started = time.perf_counter()
    result = usable(observation(value=None, valueString=text))
    assert time.perf_counter() - started < 2
    assert result.value == 500  # "U/  …  L" is U/L once its blanks are removed


def test_conversion_is_decimal() -> None:
    iga = {"coding": [{"system": "http://loinc.org", "code": "2458-8"}]}
    result = usable(observation(code=iga, valueQuantity={"value": 0.07, "system": UCUM,
                                                          "code": "g/L"}), "iga")
    assert result.value == Decimal(7) and str(result.value) in ("7.00", "7")


# --- Anti-HMGCR with no number -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("members", "finding"),
    [
        ({"interpretation": [{"coding": [{"code": "POS"}]}]}, "positive"),
        ({"interpretation": [{"coding": [{"code": "HH"}]}]}, "positive"),
        ({"interpretation": [{"coding": [{"code": "A"}]}]}, "positive"),
        ({"interpretation": [{"coding": [{"code": "NEG"}]}]}, "negative"),
        ({"interpretation": [{"coding": [{"code": "N"}]}]}, "negative"),
        ({"interpretation": [{"coding": [{"code": "L"}]}]}, "negative"),
        ({"valueString": "POSITIVE (>200 U)"}, "positive"),
        ({"valueString": "Negative"}, "negative"),
        ({"valueCodeableConcept": {"text": "Weakly positive"}}, "positive"),
        ({"valueCodeableConcept": {"coding": [{"system": "http://snomed.info/sct",
                                               "code": "260385009"}]}}, "negative"),
        ({"valueCodeableConcept": {"coding": [{"display": "Negative"}]}}, "negative"),
    ],
)
def test_hmgcr_without_a_number_is_usable_with_a_finding(
    members: dict[str, Any], finding: str
) -> None:
    result = usable(observation(code=HMGCR_CODE, value=None, **members), "hmgcr")
    assert (result.qualitative, result.finding) == (True, finding)
    assert hmgcr_result_positive(result) is (finding == "positive")


@pytest.mark.parametrize(
    "members",
    [
        {"interpretation": [{"coding": [{"code": "IND"}]}]},
        {"valueString": "see scanned report"},
        {"valueCodeableConcept": {"text": "positive, then negative on repeat"}},
        {},
    ],
)
def test_hmgcr_without_a_number_or_a_finding_is_not_usable(members: dict[str, Any]) -> None:
    not_usable(observation(code=HMGCR_CODE, value=None, **members), "hmgcr")


def test_negative_hmgcr_without_a_number_is_on_file_but_not_positive() -> None:
    record = build(observation("neg", code=HMGCR_CODE, value=None, valueString="NEGATIVE"))
    assert hmgcr_result_on_file(record)
    assert hmgcr_positive(record, TODAY) is None
    assert not hmgcr_result_on_file(build())


def test_long_positive_value_string_is_kept_whole() -> None:
    text = "POSITIVE (>200 U) " + "confirmed by immunoprecipitation; " * 20
    record = build(observation("long", code=HMGCR_CODE, value=None, valueString=text,
                               status="preliminary"))
    evidence = hmgcr_positive(record, TODAY)
    assert isinstance(evidence, LabValue)
    assert evidence.display() == text.strip() and evidence.preliminary


# --- Order intent, active statin, courses, stop date ------------------------------------------


@pytest.mark.parametrize(
    ("intent", "counts"),
    [
        ("order", True), ("original-order", True), ("reflex-order", True),
        ("filler-order", True), ("instance-order", True), (None, True), (" ORDER ", True),
        ("proposal", False), ("plan", False), ("directive", False), ("option", False),
        ("Plan", False),
    ],
)
def test_only_order_intents_make_an_active_statin(intent: str | None, counts: bool) -> None:
    record = build(statin_request(intent=intent))
    assert bool(active_statins(record)) is counts


def test_plan_intent_course_is_no_course_and_gives_no_stop_date() -> None:
    end = {"validityPeriod": {"end": "2025-03-01"}}
    record = build(statin_request(status="stopped", intent="plan", dispenseRequest=end))
    assert statin_courses(record) == () and statin_stop_date(record) is None
    record = build(statin_request(status="stopped", intent="order", dispenseRequest=end))
    assert statin_stop_date(record) == date(2025, 3, 1)


def test_plan_intent_active_statin_does_not_hide_the_stop_date() -> None:
    end = {"validityPeriod": {"end": "2025-03-01"}}
    record = build(statin_request("old", status="stopped", dispenseRequest=end),
                   statin_request("plan", status="active", intent="plan"))
    assert statin_stop_date(record) == date(2025, 3, 1)


def test_drafts_count_whatever_their_intent() -> None:
    draft = statin_request("d1", status="draft", intent="proposal")
    record = build(drafts=(draft,), hook="order-sign")
    assert [u.resource_id for u in record.drafted_statins] == ["d1"]


@pytest.mark.parametrize(
    ("status", "active"),
    [("active", True), ("on-hold", True), (" ON-HOLD ", True), ("stopped", False),
     ("completed", False), ("intended", False), ("not-taken", False)],
)
def test_statement_active_or_on_hold_is_an_active_statin(status: str, active: bool) -> None:
    record = build(statin_statement(status=status))
    assert bool(active_statins(record)) is active


def test_on_hold_statement_means_no_stop_date() -> None:
    end = {"validityPeriod": {"end": "2025-03-01"}}
    record = build(statin_request("old", status="stopped", dispenseRequest=end),
                   statin_statement(status="on-hold"))
    assert statin_stop_date(record) is None


def test_stopped_statement_is_a_course_with_its_written_end_date() -> None:
    record = build(statin_statement(status="Stopped",
                                    effectivePeriod={"start": "2024-01-01",
                                                     "end": "2025-03-01T23:00:00-08:00"}))
    assert [u.status for u in statin_courses(record)] == ["stopped"]
    assert statin_stop_date(record) == date(2025, 3, 1)  # not 03-02 as in UTC


def test_drafted_statin_is_not_active_and_does_not_hide_the_stop_date() -> None:
    end = {"validityPeriod": {"end": "2025-03-01"}}
    record = build(statin_request("old", status="stopped", dispenseRequest=end),
                   drafts=(statin_request("d1", status="draft"),), hook="order-sign")
    assert active_statins(record) == ()
    assert statin_stop_date(record) == date(2025, 3, 1)
