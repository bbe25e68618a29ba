"""rules.md Definitions "Usable observation", "Value", "Units", "CK ULN", one Observation each."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from cds_service.record.model import CkValue, LabValue, UnusableResult
from cds_service.record.statin import hmgcr_result_positive
from cds_service.record.units import factor_for, normalise_unit, quantity_unit
from cds_service.record.values import parse_datetime, read_observation
from cds_service.settings import ClinicalSettings

CLINICAL = ClinicalSettings()
UCUM = "http://unitsofmeasure.org"


def quantity(value: Any, code: str | None = None, unit: str | None = None,
             system: str | None = UCUM, comparator: str | None = None) -> dict[str, Any]:
    q: dict[str, Any] = {"value": value}
    if code is not None:
        q["code"] = code
    if unit is not None:
        q["unit"] = unit
    if system is not None:
        q["system"] = system
    if comparator is not None:
        q["comparator"] = comparator
    return q


def obs(value: dict[str, Any] | str | None = None, *, status: str = "final",
        when: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": "Observation", "id": "o1", "status": status}
    resource.update(when if when is not None else {"effectiveDateTime": "2025-06-20"})
    if isinstance(value, dict):
        resource["valueQuantity"] = value
    elif isinstance(value, str):
        resource["valueString"] = value
    resource.update(extra)
    return resource


def read(resource: dict[str, Any], kind: str, gender: str | None = "male",
         clinical: ClinicalSettings = CLINICAL) -> LabValue | UnusableResult | None:
    return read_observation(resource, kind, gender, clinical)


def lab(resource: dict[str, Any], kind: str, **kw: Any) -> LabValue:
    result = read(resource, kind, **kw)
    assert isinstance(result, LabValue), result
    return result


def unusable(resource: dict[str, Any], kind: str) -> UnusableResult:
    result = read(resource, kind)
    assert isinstance(result, UnusableResult), result
    return result


# --- every conversion factor -----------------------------------------------------------------

FACTOR_CASES = [
    # kind, unit as UCUM code, value, expected in the rule's unit, converted
    ("ck", "U/L", "5200", "5200", False),
    ("ck", "[IU]/L", "5200", "5200", False),
    ("ck", "IU/L", "5200", "5200", False),
    ("ck", "ukat/L", "5", "300", True),
    ("ck", "\u00b5kat/L", "5", "300", True),  # micro sign
    ("ck", "\u03bckat/L", "5", "300", True),  # Greek mu
    ("ck", "nkat/L", "1000", "60", True),
    ("iga", "mg/dL", "7", "7", False),
    ("iga", "g/L", "0.07", "7", True),
    ("iga", "mg/L", "70", "7", True),
    ("weight", "kg", "80", "80", False),
    ("weight", "[lb_av]", "150", "68.0388555", True),
    ("weight", "g", "70500", "70.5", True),
    ("height", "cm", "175", "175", False),
    ("height", "[in_i]", "70", "177.8", True),
    ("height", "m", "1.75", "175", True),
    ("creatinine", "mg/dL", "0.9", "0.9", False),
    ("creatinine", "umol/L", "88.4", "1", True),
    ("creatinine", "\u00b5mol/L", "100", "1.13122", True),  # ÷88.4, 6 significant digits
    ("egfr", "mL/min/{1.73_m2}", "55", "55", False),
]


@pytest.mark.parametrize(("kind", "unit", "value", "expected", "converted"), FACTOR_CASES)
def test_every_factor_converts_exactly_to_the_rule_unit(
    kind: str, unit: str, value: str, expected: str, converted: bool
) -> None:
    result = lab(obs(quantity(Decimal(value), code=unit)), kind)
    assert result.value == Decimal(expected)
    assert result.converted is converted
    assert result.original == f"{value} {unit}"


@pytest.mark.parametrize(
    ("kind", "text", "value", "expected"),
    [
        ("weight", "lb", "200", "90.718474"),
        ("weight", "lbs", "200", "90.718474"),
        ("height", "in", "60", "152.4"),
        ("egfr", "mL/min/1.73m2", "72", "72"),
        ("ck", " u/l ", "96", "96"),  # trimmed, case-insensitive
        ("iga", "G/L", "0.5", "50"),
    ],
)
def test_unit_texts_without_ucum_system(kind: str, text: str, value: str, expected: str) -> None:
    result = lab(obs(quantity(Decimal(value), unit=text, system=None)), kind)
    assert result.value == Decimal(expected)


def test_float_json_values_convert_exactly() -> None:
    # 0.07 as a JSON float is not exactly 0.07 in binary; the record must still say 7 mg/dL.
    result = lab(obs(quantity(0.07, code="g/L")), "iga")
    assert result.value == Decimal(7)
    assert result.meets_below(Decimal(7), inclusive=True)
    assert not result.meets_below(Decimal(7))


def test_ucum_code_wins_over_unit_text() -> None:
    result = lab(obs(quantity(0.5, code="g/L", unit="grams per litre")), "iga")
    assert result.value == Decimal(50)


def test_non_ucum_system_reads_the_unit_text_not_the_code() -> None:
    q = quantity(150, code="LBR", unit="lbs", system="http://example.org/local-units")
    assert lab(obs(q), "weight").value == Decimal("68.0388555")


def test_quantity_unit_choice() -> None:
    # rules.md "Units": the unit is valueQuantity.code when system is UCUM, else .unit; the
    # other field is never read in its place (a missing unit makes the result unusable).
    assert quantity_unit({"system": UCUM, "code": "g/L", "unit": "x"}) == "g/L"
    assert quantity_unit({"system": UCUM, "unit": "g/L"}) is None
    assert quantity_unit({"unit": " mg/dL ", "code": "ignored"}) == "mg/dL"
    assert quantity_unit({"code": "mg/dL"}) is None
    assert quantity_unit({}) is None
    assert normalise_unit(" \u00b5mol/L") == "umol/l"


def test_ucum_quantity_without_code_is_not_usable() -> None:
    # rules.md "Units": UCUM system → the unit is the code; none here, so no unit at all.
    result = unusable(obs(quantity(0.07, unit="g/L")), "iga")
    assert result.reason == "unit 'g/L' not recognised (UCUM quantity without a code)"


def test_non_ucum_quantity_without_unit_text_is_not_usable() -> None:
    # rules.md "Units": no UCUM system → the unit is .unit; the code is not read in its place.
    result = unusable(obs(quantity(5200, code="U/L", system="http://example.org/units")), "ck")
    assert result.reason == "unit 'U/L' not recognised (code without unit text, system not UCUM)"


def test_reference_range_bound_with_an_unreadable_unit_is_dropped_not_given_the_value_unit() -> (
    None
):
    # 0.4 g/L written as UCUM without a code: not "the value's unit" (mg/dL), which would make a
    # lower limit of 0.4 mg/dL; the bound is dropped.
    resource = obs(quantity(40, code="mg/dL"), referenceRange=[
        {"low": {"value": 0.4, "system": UCUM, "unit": "g/L"}, "high": {"value": 356}}])
    result = lab(resource, "iga")
    assert result.ref_low is None
    assert result.ref_high == Decimal(356)


def test_unknown_unit_is_not_usable_and_says_which() -> None:
    result = unusable(obs(quantity(5, code="mmol/L")), "ck")
    assert result.reason == "unit 'mmol/L' not recognised"
    assert result.kind == "ck" and result.resource_id == "o1"
    assert result.time == datetime(2025, 6, 20, tzinfo=UTC)


def test_missing_unit_is_not_usable() -> None:
    result = unusable(obs(quantity(5, system=None)), "iga")
    assert result.reason == "unit (none) not recognised"


def test_unit_of_another_kind_is_not_recognised() -> None:
    # g/L is an IgA unit, not a CK one; weight in cm makes no sense.
    assert unusable(obs(quantity(5, code="g/L")), "ck").reason == "unit 'g/L' not recognised"
    assert factor_for("weight", "cm") is None
    assert factor_for("ck", None) is None


# --- anti-HMGCR: arbitrary units, no conversion, interpretation kept ----------------------------


@pytest.mark.parametrize(
    ("code", "unit_system"),
    [
        ("[arb'U]", UCUM), ("[arb'U]/mL", UCUM), ("{U}", UCUM), ("{CU}", UCUM),
        ("{Units}", UCUM), ("U", UCUM), ("U/mL", UCUM),
        ("U", None), ("CU", None), ("Units", None), ("U/mL", None),
    ],
)
def test_hmgcr_arbitrary_units_are_taken_as_written(code: str, unit_system: str | None) -> None:
    if unit_system:
        q = quantity(85, code=code, system=UCUM)
    else:
        q = quantity(85, unit=code, system=None)
    result = lab(obs(q), "hmgcr")
    assert result.value == Decimal(85)
    assert result.converted is False
    assert result.unit == code


def test_hmgcr_unit_label_prefers_the_lab_text() -> None:
    q = quantity(150, code="[arb'U]", unit="U")
    interpretation = [{"coding": [{
        "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
        "code": "POS"}]}]
    result = lab(obs(q, interpretation=interpretation), "hmgcr")
    assert result.display() == "150 U"
    assert result.interpretation == ("POS",)


def test_hmgcr_other_unit_is_not_recognised() -> None:
    assert unusable(obs(quantity(85, code="ng/mL")), "hmgcr").reason == (
        "unit 'ng/mL' not recognised"
    )


def test_hmgcr_positive_without_a_number_is_kept_for_its_interpretation() -> None:
    interpretation = [{"coding": [{"code": "POS"}]}]
    result = lab(obs("Positive", interpretation=interpretation), "hmgcr")
    assert result.qualitative is True
    assert result.interpretation == ("POS",)
    assert result.display() == "Positive"
    assert not result.meets_above(Decimal(20), inclusive=True)


def test_hmgcr_positive_flag_counts_whatever_the_unit() -> None:
    # rules.md "Anti-HMGCR positive": an interpretation POS/H/HH/A counts "whatever the value";
    # a number in a unit of no listed kind is kept, by its flag, not dropped as unusable.
    interpretation = [{"coding": [{"code": "POS"}]}]
    result = lab(obs(quantity(35, code="AU/mL"), interpretation=interpretation), "hmgcr")
    assert result.qualitative is True
    assert result.interpretation == ("POS",)
    assert result.display() == "35 AU/mL"
    assert not result.meets_above(Decimal(20), inclusive=True)  # the number itself is not read
    assert hmgcr_result_positive(result)
    # A negative flag does not lift the unit rule: that result stays unusable.
    negative = [{"coding": [{"code": "N"}]}]
    assert unusable(obs(quantity(5, code="AU/mL"), interpretation=negative), "hmgcr").reason == (
        "unit 'AU/mL' not recognised"
    )


def test_hmgcr_text_saying_neither_is_unusable() -> None:
    assert unusable(obs("Equivocal"), "hmgcr").reason == "value 'Equivocal' not recognised"
    # a text saying both is no finding either
    assert unusable(obs("positive or negative?"), "hmgcr").reason.startswith("value '")


def test_interpretation_of_other_systems_is_not_taken() -> None:
    interpretation = [{"coding": [{"system": "http://example.org/flags", "code": "POS"}]}]
    result = lab(obs(quantity(5, code="U"), interpretation=interpretation), "hmgcr")
    assert result.interpretation == ()


# --- comparators and valueString ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "normalised"),
    [("<", "<"), ("<=", "<="), (">", ">"), (">=", ">="), ("\u2264", "<="), ("\u2265", ">=")],
)
def test_quantity_comparators(written: str, normalised: str) -> None:
    result = lab(obs(quantity(5, code="mg/dL", comparator=written)), "iga")
    assert result.comparator == normalised
    assert result.value == Decimal(5)
    assert result.original == f"{normalised}5 mg/dL"


def test_unknown_comparator_is_not_usable() -> None:
    assert unusable(obs(quantity(5, code="mg/dL", comparator="~")), "iga").reason == (
        "comparator '~' not recognised"
    )


@pytest.mark.parametrize(
    ("text", "value", "comparator", "converted"),
    [
        ("<5", "5", "<", False),  # no unit: the rule's unit (mg/dL)
        ("< 5", "5", "<", False),
        ("<=5", "5", "<=", False),
        ("\u2264 0.05 g/L", "5", "<=", True),
        ("\u22650.05 g/L", "5", ">=", True),
        (">= 7 mg/dL", "7", ">=", False),
        ("> 350", "350", ">", False),
        ("0.05 g/L", "5", None, True),
        ("40", "40", None, False),
        ("70mg/L", "7", None, True),
        (".5 g/L", "50", None, True),
    ],
)
def test_value_string_forms(text: str, value: str, comparator: str | None, converted: bool) -> None:
    result = lab(obs(text), "iga")
    assert result.value == Decimal(value)
    assert result.comparator == comparator
    assert result.converted is converted
    assert result.unit == "mg/dL"
    assert result.original == text.strip()


@pytest.mark.parametrize("text", ["0,07 g/L", "1,200", "positive", "=5", "-3", "<", ""])
def test_value_strings_that_are_not_numbers(text: str) -> None:
    result = unusable(obs(text), "iga")
    assert "not recognised" in result.reason


def test_value_string_with_unknown_unit() -> None:
    assert unusable(obs("<5 mmol/L"), "iga").reason == "unit 'mmol/L' not recognised"


def test_no_value_at_all() -> None:
    assert unusable(obs(None), "ck").reason == "no numeric value"
    coded = obs(None, valueCodeableConcept={"text": "see comment"})
    assert unusable(coded, "ck").reason == "no numeric value"
    assert unusable(obs(quantity(None, code="U/L")), "ck").reason == "no numeric value"


def test_upper_bound_value_meets_below_as_rules_md_says() -> None:
    below_five = lab(obs("<5"), "iga")
    assert below_five.meets_below(Decimal(7))  # "<5" is under 7
    assert below_five.meets_below(Decimal(5))  # "<5" meets x < 5 (its number ≤ T)
    assert not below_five.meets_above(Decimal(1))  # an upper bound never meets "x > T"


# --- statuses ----------------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["final", "amended", "corrected", "preliminary"])
def test_usable_statuses(status: str) -> None:
    result = lab(obs(quantity(100, code="U/L"), status=status), "ck")
    assert result.status == status
    assert result.preliminary is (status == "preliminary")


@pytest.mark.parametrize("status", ["registered", "cancelled", "entered-in-error", "unknown", ""])
def test_other_statuses_are_ignored_entirely(status: str) -> None:
    assert read(obs(quantity(100, code="U/L"), status=status), "ck") is None
    # ignored even when the value is unreadable: not an "unusable" note either
    assert read(obs(quantity(100, code="bogus"), status=status), "ck") is None


def test_missing_status_is_ignored() -> None:
    resource = obs(quantity(100, code="U/L"))
    del resource["status"]
    assert read(resource, "ck") is None


# --- time --------------------------------------------------------------------------------------


def test_time_is_effective_date_time_first() -> None:
    resource = obs(quantity(1, code="U/L"), when={
        "effectiveDateTime": "2025-06-20T08:30:00Z",
        "effectivePeriod": {"start": "2025-01-01"},
        "issued": "2025-06-21T00:00:00Z",
    })
    assert lab(resource, "ck").time == datetime(2025, 6, 20, 8, 30, tzinfo=UTC)


def test_time_falls_back_to_effective_period_start() -> None:
    resource = obs(quantity(1, code="U/L"), when={
        "effectivePeriod": {"start": "2025-05-02T10:00:00+02:00", "end": "2025-05-03"},
        "issued": "2025-06-21T00:00:00Z",
    })
    assert lab(resource, "ck").time == datetime(2025, 5, 2, 8, 0, tzinfo=UTC)


def test_time_falls_back_to_issued() -> None:
    resource = obs(quantity(1, code="U/L"), when={"issued": "2025-06-21T13:45:10.123+00:00"})
    assert lab(resource, "ck").time == datetime(2025, 6, 21, 13, 45, 10, 123000, tzinfo=UTC)


def test_effective_instant_is_the_effective_time() -> None:
    resource = obs(quantity(1, code="U/L"), when={
        "effectiveInstant": "2025-06-20T08:30:00.000Z", "issued": "2025-06-21T00:00:00Z"})
    assert lab(resource, "ck").time == datetime(2025, 6, 20, 8, 30, tzinfo=UTC)


def test_date_only_is_midnight_utc() -> None:
    result = lab(obs(quantity(1, code="U/L")), "ck")
    assert result.time == datetime(2025, 6, 20, tzinfo=UTC)
    assert result.time.tzinfo is UTC


def test_no_time_is_unusable() -> None:
    result = unusable(obs(quantity(1, code="U/L"), when={}), "ck")
    assert result.reason == "no effective time"
    assert result.time is None


def test_unreadable_time_falls_through_to_the_next() -> None:
    resource = obs(quantity(1, code="U/L"), when={
        "effectiveDateTime": "2025-13-40", "issued": "2025-06-21T00:00:00Z"})
    assert lab(resource, "ck").time == datetime(2025, 6, 21, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025", datetime(2025, 1, 1, tzinfo=UTC)),
        ("2025-06", datetime(2025, 6, 1, tzinfo=UTC)),
        ("2025-06-20T23:30:00-05:00", datetime(2025, 6, 21, 4, 30, tzinfo=UTC)),
        ("2025-06-20T10:00", datetime(2025, 6, 20, 10, 0, tzinfo=UTC)),
        ("garbage", None),
        ("2025-02-30", None),
    ],
)
def test_parse_datetime(text: str, expected: datetime | None) -> None:
    assert parse_datetime(text) == expected


# --- reference ranges and the CK ULN -------------------------------------------------------------


def test_reference_range_converts_with_its_own_unit() -> None:
    resource = obs(quantity(40, code="mg/dL"), referenceRange=[{
        "low": quantity(0.61, code="g/L"), "high": quantity(3560, code="mg/L")}])
    result = lab(resource, "iga")
    assert result.ref_low == Decimal(61)
    assert result.ref_high == Decimal(356)


def test_reference_range_without_unit_takes_the_value_unit() -> None:
    resource = obs(quantity(0.4, code="g/L"), referenceRange=[{
        "low": {"value": 0.61}, "high": {"value": 3.56}}])
    result = lab(resource, "iga")
    assert result.value == Decimal(40)
    assert (result.ref_low, result.ref_high) == (Decimal(61), Decimal(356))


def test_reference_range_bound_with_unknown_unit_is_dropped() -> None:
    resource = obs(quantity(40, code="mg/dL"), referenceRange=[{
        "low": quantity(61, code="mg/dL"), "high": quantity(3, code="mmol/L")}])
    result = lab(resource, "iga")
    assert (result.ref_low, result.ref_high) == (Decimal(61), None)


def test_reference_range_prefers_normal_and_unrestricted() -> None:
    resource = obs(quantity(40, code="mg/dL"), referenceRange=[
        {"type": {"coding": [{"code": "treatment"}]}, "low": quantity(1, code="mg/dL")},
        {"appliesTo": [{"text": "children"}], "low": quantity(20, code="mg/dL")},
        {"type": {"coding": [{"code": "normal"}]}, "low": quantity(61, code="mg/dL")},
    ])
    assert lab(resource, "iga").ref_low == Decimal(61)


def test_ck_uln_is_the_results_own_range_high_converted() -> None:
    resource = obs(
        quantity(5, code="ukat/L"), referenceRange=[{"high": quantity(3, code="ukat/L")}]
    )
    result = lab(resource, "ck")
    assert isinstance(result, CkValue)
    assert result.value == Decimal(300)
    assert result.uln == Decimal(180)
    assert result.uln_assumed is False
    assert result.times_uln == Decimal(300) / Decimal(180)


@pytest.mark.parametrize(
    ("gender", "uln"),
    [("male", "308"), ("female", "192"), ("other", "192"), ("unknown", "192"), (None, "192")],
)
def test_ck_uln_assumed_by_sex_without_range(gender: str | None, uln: str) -> None:
    result = lab(obs(quantity(5200, code="U/L")), "ck", gender=gender)
    assert isinstance(result, CkValue)
    assert result.uln == Decimal(uln)
    assert result.uln_assumed is True
    assert result.ref_high is None


def test_ck_uln_defaults_come_from_settings() -> None:
    clinical = ClinicalSettings(ck_uln_female=Decimal("200"), ck_uln_other=Decimal("250"))
    female = lab(obs(quantity(1000, code="U/L")), "ck", gender="female", clinical=clinical)
    other = lab(obs(quantity(1000, code="U/L")), "ck", gender=None, clinical=clinical)
    assert isinstance(female, CkValue) and isinstance(other, CkValue)
    assert (female.uln, other.uln) == (Decimal(200), Decimal(250))


def test_ck_range_high_of_zero_is_not_a_uln() -> None:
    resource = obs(quantity(100, code="U/L"), referenceRange=[{"high": quantity(0, code="U/L")}])
    result = lab(resource, "ck", gender="male")
    assert isinstance(result, CkValue)
    assert (result.uln, result.uln_assumed) == (Decimal(308), True)


def test_ck_range_high_in_unknown_unit_falls_back_to_assumed() -> None:
    resource = obs(quantity(100, code="U/L"), referenceRange=[{"high": quantity(3, code="mmol/L")}])
    result = lab(resource, "ck", gender="female")
    assert isinstance(result, CkValue)
    assert (result.uln, result.uln_assumed) == (Decimal(192), True)
