"""IGA-01…03: serum IgA before IVIG (rules.md), boundaries at 7 mg/dL, the lower limit, age 4."""

from __future__ import annotations

import dataclasses
from datetime import date
from decimal import Decimal

import pytest

from cds_service.advice import iga
from cds_service.fhir.data import FhirData
from cds_service.record.build import build_record
from cds_service.record.model import Medication, OrderedDose, PatientRecord
from cds_service.settings import ClinicalSettings, Settings
from tests.advice.builders import GAMUNEX, TODAY, lab, record, unusable, use
from tests.advice.cards import filled

CLINICAL = ClinicalSettings()


def ivig_draft(med: Medication = GAMUNEX, **kw):
    kw.setdefault("resource_id", "mr-ivig")
    return use(
        med,
        "draft",
        drafted=True,
        authored=0,
        dose=OrderedDose(Decimal(35), "g", 2, "35 g daily for 2 days"),
        **kw,
    )


def order(*iga_values, hook: str = "order-select", **kw) -> PatientRecord:
    kw.setdefault("ivig_uses", (ivig_draft(),))
    return record(hook=hook, iga=tuple(iga_values), **kw)


def rules(rec: PatientRecord, hook: str | None = None) -> dict[str, object]:
    return {a.rule_id: a for a in iga.evaluate(rec, TODAY, CLINICAL, hook or rec.hook)}


def iga_value(value: str, comparator: str | None = None, day: int = 20, **kw):
    return lab("iga", value, day, comparator=comparator, **kw)


# --- IGA-01 -------------------------------------------------------------------------------------


@pytest.mark.parametrize("hook", ["order-select", "order-sign"])
def test_iga_01_no_iga_on_file_with_ivig_drafted(hook):
    advice = rules(order(hook=hook))["IGA-01"]
    assert advice.indicator == "warning"
    (suggestion,) = advice.suggestions
    assert (suggestion.kind, suggestion.loinc) == ("order-lab", "2458-8")
    assert advice.values["product"] == "Gamunex-C 10%"


def test_iga_01_silent_when_any_usable_iga_is_on_file_however_old():
    assert "IGA-01" not in rules(order(iga_value("150", day=3000)))


def test_iga_01_needs_an_ivig_draft_on_an_order_hook():
    assert rules(order(hook="patient-view")) == {}
    assert rules(order(ivig_uses=())) == {}
    # an IVIG order that is active, not drafted, does not make an order hook about IVIG
    assert rules(order(ivig_uses=(use(GAMUNEX, "active"),))) == {}
    # a product ordered for subcutaneous use is not IVIG
    assert rules(order(ivig_uses=(ivig_draft(subcutaneous=True),))) == {}


def test_iga_01_says_why_an_unusable_result_did_not_count():
    rec = order(unusable=(unusable("iga", "unit 'mg%' not recognised", 10),))
    advice = rules(rec)["IGA-01"]
    assert any("unit 'mg%' not recognised" in c for c in advice.caveats)


def test_iga_01_says_when_ivig_was_recognised_by_name_only():
    by_name = dataclasses.replace(GAMUNEX, matched_by_name=True)
    advice = rules(order(ivig_uses=(ivig_draft(med=by_name),)))["IGA-01"]
    assert f"IVIG matched by name: {by_name.display}" in advice.caveats


# --- IGA-02 -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value,comparator,fires",
    [
        ("6.99", None, True),
        ("7", None, False),
        ("7.01", None, False),
        ("7", "<", True),  # "<7": at or under 7, counts
        ("5", "<", True),
        ("7", "<=", False),  # "<=7" may be exactly 7: not decided
        ("6.9", "<=", True),
        ("7.5", "<", False),
        ("3", ">", False),  # a lower bound never meets "x < 7"
    ],
)
def test_iga_02_deficiency_boundary_at_7_mg_dl(value, comparator, fires):
    result = rules(order(iga_value(value, comparator)))
    assert ("IGA-02" in result) is fires
    if fires:
        assert result["IGA-02"].indicator == "critical"
        assert result["IGA-02"].values["iga"] == f"{comparator or ''}{value} mg/dL"


def test_iga_02_exactly_7_mg_dl_converted_from_g_per_l_is_not_deficient():
    v = iga_value("7", original="0.07 g/L", converted=True)
    result = rules(order(v))
    assert "IGA-02" not in result and "IGA-03" in result
    assert result["IGA-03"].facts[0].note.startswith("converted from 0.07 g/L")


@pytest.mark.parametrize(
    "birth,fires",
    [
        (date(2021, 7, 1), False),  # 4 today
        (date(2020, 7, 2), False),  # 4, turns 5 tomorrow
        (date(2020, 7, 1), True),  # 5 today
    ],
)
def test_iga_02_age_over_4(birth, fires):
    assert ("IGA-02" in rules(order(iga_value("3"), birth_date=birth))) is fires


def test_iga_02_unknown_age_fails_safe_and_says_so():
    advice = rules(order(iga_value("3"), birth_date=None))["IGA-02"]
    assert any("Age not on record" in c for c in advice.caveats)


def test_iga_02_uses_the_latest_iga_only():
    assert "IGA-02" not in rules(order(iga_value("3", day=200), iga_value("80", day=10)))
    assert "IGA-02" in rules(order(iga_value("80", day=200), iga_value("3", day=10)))


def test_iga_02_preliminary_result_is_used_and_marked():
    advice = rules(order(iga_value("4", status="preliminary")))["IGA-02"]
    assert advice.facts[0].note == "preliminary"
    assert any("preliminary" in c for c in advice.caveats)


def test_iga_02_on_patient_view_only_with_ivig_ongoing():
    low = iga_value("4")
    active = use(GAMUNEX, "active", authored=100)
    on_ivig = record(hook="patient-view", iga=(low,), ivig_uses=(active,))
    advice = rules(on_ivig)["IGA-02"]
    assert any(f.label == "IVIG" and "ongoing" in f.value for f in advice.facts)
    stopped = record(hook="patient-view", iga=(low,), ivig_uses=(use(GAMUNEX, "completed"),))
    assert rules(stopped) == {}
    # IGA-01 and IGA-03 are order-hook rules only
    assert set(rules(record(hook="patient-view", ivig_uses=(active,)))) == set()


# --- IGA-03 -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value,ref_low,fires",
    [
        ("6.99", None, False),  # deficiency range: IGA-02
        ("7", None, True),
        ("40", None, True),
        ("60.99", None, True),  # default lower limit 61 mg/dL (LABIGA Mayo)
        ("61", None, False),
        ("61.01", None, False),
        ("80", "85", True),  # the lab's own lower limit wins
        ("85", "85", False),
    ],
)
def test_iga_03_between_7_and_the_lower_limit(value, ref_low, fires):
    result = rules(order(iga_value(value, ref_low=ref_low)))
    assert ("IGA-03" in result) is fires
    if fires:
        advice = result["IGA-03"]
        assert advice.indicator == "info"
        assert advice.values["bound_note"] == ""
        assert advice.values["lower_limit"] == f"{ref_low or 61} mg/dL"
        assumed = any("assumed lower limit" in c for c in advice.caveats)
        assert assumed is (ref_low is None)


@pytest.mark.parametrize(
    "value,comparator,fires",
    [
        ("10", "<", True),  # may be under 7: not excluded
        ("7", "<=", True),  # may be exactly 7 or under
        ("61", "<", True),  # V ≤ lower limit
        ("61", "<=", True),
        ("62", "<", False),  # V > lower limit: may be normal
        ("7", "<", False),  # "<7" meets IGA-02 instead
        ("50", ">", False),  # a lower bound cannot be "below the lower limit"
    ],
)
def test_iga_03_upper_bound_cannot_exclude_deficiency(value, comparator, fires):
    result = rules(order(iga_value(value, comparator)))
    assert ("IGA-03" in result) is fires
    if fires:
        advice = result["IGA-03"]
        assert advice.values["bound_note"] == "; deficiency (< 7 mg/dL) not excluded"
        assert any("not excluded" in c for c in advice.caveats)


def test_iga_03_bound_advice_only_when_the_result_is_a_bound():
    # An exact 40 mg/dL is not "reported only as below a limit": the card must not say it is.
    exact = rules(order(iga_value("40")))["IGA-03"]
    assert "below a limit" not in filled("IGA-03", exact)["reasoning"]
    assert not any("exact value" in c for c in exact.caveats)
    bound = rules(order(iga_value("10", "<")))["IGA-03"]
    assert (
        "IgA reported as <10 mg/dL: deficiency (< 7 mg/dL) not excluded; ask the laboratory "
        "for the exact value or repeat the test"
    ) in bound.caveats


def test_iga_03_only_on_order_hooks_with_ivig_drafted():
    assert rules(order(iga_value("40"), hook="patient-view")) == {}
    assert rules(order(iga_value("40"), ivig_uses=())) == {}


def test_iga_rules_are_exclusive_for_one_value():
    for value in ("3", "7", "40", "200"):
        fired = set(rules(order(iga_value(value))))
        assert len(fired) <= 1, (value, fired)


@pytest.mark.parametrize(
    "birth,fires",
    [
        (date(2021, 7, 1), False),  # 4 today
        (date(2020, 7, 2), False),  # 4, turns 5 tomorrow
        (date(2020, 7, 1), True),  # 5 today
    ],
)
def test_iga_03_needs_age_over_4(birth, fires):
    # rules.md r2: IGA-03 "age > 4" (the adult lower limit does not apply to a small child)
    assert ("IGA-03" in rules(order(iga_value("40"), birth_date=birth))) is fires
    assert ("IGA-03" in rules(order(iga_value("10", "<"), birth_date=birth))) is fires


def test_iga_03_unknown_age_fails_safe_and_says_so():
    advice = rules(order(iga_value("40"), birth_date=None))["IGA-03"]
    assert iga.AGE_NOT_CHECKED in advice.caveats
    assert iga.AGE_NOT_CHECKED not in rules(order(iga_value("40")))["IGA-03"].caveats


def test_iga_of_exactly_zero_is_a_value_in_the_deficiency_range():
    # Mutation-run gap: 0 mg/dL is a result (IgA absent in the serum), not "no IgA on file".
    result = rules(order(iga_value("0")))
    assert set(result) == {"IGA-02"}
    assert result["IGA-02"].values["iga"] == "0 mg/dL"


def test_iga_of_exactly_zero_read_from_an_observation_gives_iga_02_not_iga_01():
    observation = {
        "resourceType": "Observation", "id": "iga-0", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "2458-8"}]},
        "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2025-06-01",
        "valueQuantity": {"value": 0, "unit": "mg/dL", "system": "http://unitsofmeasure.org",
                          "code": "mg/dL"},
    }
    patient = {"resourceType": "Patient", "id": "p1", "gender": "female",
               "birthDate": "1970-01-01"}
    data = FhirData(resources=(patient, observation), drafts=(), selections=())
    built = build_record(data, {"hook": "order-sign", "context": {"patientId": "p1"}}, Settings())
    assert [v.value for v in built.iga] == [Decimal(0)]
    rec = dataclasses.replace(built, ivig_uses=(ivig_draft(),))
    assert set(rules(rec)) == {"IGA-02"}
