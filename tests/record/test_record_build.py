"""record.build_record over hand-made FHIR data: patient, labs, medication references, drafts,
uses, ordered doses, IVIG given, conditions (rules.md Definitions)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from cds_service.errors import Unprocessable
from cds_service.fhir.data import FhirData
from cds_service.record.build import build_record, ordered_dose
from cds_service.record.dosing import dose_grams
from cds_service.record.model import Medication, OrderedDose, PatientRecord
from cds_service.settings import Settings

RX = "http://www.nlm.nih.gov/research/umls/rxnorm"
NDC = "http://hl7.org/fhir/sid/ndc"
ATC = "http://www.whocc.no/atc"
UCUM = "http://unitsofmeasure.org"
LOINC = "http://loinc.org"

ATORVASTATIN = {"coding": [{"system": RX, "code": "617310"}], "text": "atorvastatin 20 MG"}
GAMUNEX = {"coding": [{"system": NDC, "code": "13533-800"}], "text": "Gamunex-C 10%"}
OCTAGAM_5 = {"coding": [{"system": NDC, "code": "68982-840"}], "text": "Octagam 5%"}
ESTRADIOL = {"coding": [{"system": ATC, "code": "G03CA03"}], "text": "estradiol"}
METFORMIN = {"coding": [{"system": RX, "code": "860975"}], "text": "metformin 500 MG"}
PATIENT = {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1960-09-30"}


def g(value: float | int, code: str = "g") -> dict[str, Any]:
    return {"value": value, "unit": code, "system": UCUM, "code": code}


def request(rid: str, medication: dict[str, Any] | None = None, status: str = "active",
            **extra: Any) -> dict[str, Any]:
    r: dict[str, Any] = {"resourceType": "MedicationRequest", "id": rid, "status": status,
                         "intent": "order", "subject": {"reference": "Patient/p1"}}
    if medication is not None:
        r["medicationCodeableConcept"] = medication
    r.update(extra)
    return r


def administration(rid: str, when: str, dose: dict[str, Any] | None = None,
                   status: str = "completed", medication: dict[str, Any] = GAMUNEX,
                   **extra: Any) -> dict[str, Any]:
    r: dict[str, Any] = {"resourceType": "MedicationAdministration", "id": rid, "status": status,
                         "medicationCodeableConcept": medication, "effectiveDateTime": when,
                         "subject": {"reference": "Patient/p1"}}
    if dose is not None:
        r["dosage"] = {"dose": dose}
    r.update(extra)
    return r


def ck(rid: str, when: str, value: float, high: float | None = None,
       status: str = "final") -> dict[str, Any]:
    r: dict[str, Any] = {"resourceType": "Observation", "id": rid, "status": status,
                         "code": {"coding": [{"system": LOINC, "code": "2157-6"}]},
                         "effectiveDateTime": when, "valueQuantity": g(value, "U/L")}
    if high is not None:
        r["referenceRange"] = [{"high": g(high, "U/L")}]
    return r


def build(resources: list[dict[str, Any]] | None = None,
          drafts: list[dict[str, Any]] | None = None,
          selections: tuple[str, ...] = (), hook: str = "patient-view",
          medications: dict[str, dict[str, Any]] | None = None,
          skipped: dict[str, int] | None = None) -> PatientRecord:
    data = FhirData(
        resources=tuple([PATIENT, *(resources or [])]),
        drafts=tuple(drafts or []),
        selections=selections,
        medications=medications or {},
        skipped=skipped or {},
    )
    body = {"hook": hook, "hookInstance": "x", "context": {"patientId": "p1", "userId": "u"}}
    return build_record(data, body, Settings())


# --- patient and labs --------------------------------------------------------------------------


def test_patient_from_context_and_resource() -> None:
    record = build()
    assert (record.patient_id, record.gender, record.birth_date, record.hook) == (
        "p1", "female", date(1960, 9, 30), "patient-view")
    assert record.age_on(date(2025, 7, 1)) == 64


def test_patient_of_another_id_is_refused() -> None:
    """Another patient's demographics would silently change the ULN and age rules: refuse."""
    data = FhirData(resources=({"resourceType": "Patient", "id": "other", "gender": "male"},),
                    drafts=(), selections=())
    with pytest.raises(Unprocessable, match=r"other than context.patientId \(1 Patient\)"):
        build_record(data, {"hook": "patient-view", "context": {"patientId": "p1"}}, Settings())


@pytest.mark.parametrize(
    "reference",
    ["Patient/other", "https://ehr.example/fhir/Patient/other",
     "https://ehr.example/fhir/Patient/other/_history/2"],
)
def test_observation_of_another_patient_is_refused_without_naming_either(reference: str) -> None:
    observation = {**ck("c1", "2025-06-20", 9000, 308), "subject": {"reference": reference}}
    data = FhirData(resources=(observation,), drafts=(), selections=())
    with pytest.raises(Unprocessable) as refused:
        build_record(data, {"hook": "patient-view", "context": {"patientId": "p1"}}, Settings())
    assert "1 Observation" in refused.value.message
    assert "other" not in refused.value.message.replace("other than", "")
    assert "p1" not in refused.value.message


@pytest.mark.parametrize("reference", ["Patient/p1", "urn:uuid:7f3c", "https://x/fhir/Patient/p1"])
def test_observation_of_this_patient_or_unresolvable_reference_is_kept(reference: str) -> None:
    observation = {**ck("c1", "2025-06-20", 9000, 308), "subject": {"reference": reference}}
    data = FhirData(resources=(observation,), drafts=(), selections=())
    record = build_record(data, {"hook": "patient-view", "context": {"patientId": "p1"}},
                          Settings())
    assert [c.resource_id for c in record.ck] == ["c1"]


def test_labs_sorted_oldest_to_newest_with_unusable_and_ignored() -> None:
    record = build([
        ck("c3", "2025-06-20", 900, 308),
        ck("c1", "2025-01-05", 5000),
        ck("c2", "2025-03-01T10:00:00Z", 2000, 308, status="preliminary"),
        ck("c4", "2025-06-25", 100000, status="entered-in-error"),
        {**ck("c5", "2025-06-26", 5), "valueQuantity": g(5, "mmol/L")},
        {"resourceType": "Observation", "id": "w1", "status": "final",
         "code": {"coding": [{"system": LOINC, "code": "29463-7"}]},
         "effectiveDateTime": "2025-06-01", "valueQuantity": {"value": 150, "unit": "lbs"}},
        {"resourceType": "Observation", "id": "x", "status": "final",
         "code": {"coding": [{"system": LOINC, "code": "2093-3"}]},
         "effectiveDateTime": "2025-06-01", "valueQuantity": g(200, "mg/dL")},
    ])
    assert [c.resource_id for c in record.ck] == ["c1", "c2", "c3"]
    assert record.ck[0].uln_assumed and record.ck[0].uln == Decimal(192)  # female default
    assert not record.ck[2].uln_assumed and record.ck[2].uln == Decimal(308)
    assert record.ck[1].preliminary
    assert [(u.resource_id, u.reason) for u in record.unusable] == [
        ("c5", "unit 'mmol/L' not recognised")]
    assert record.weight[0].value == Decimal("68.0388555")
    assert record.iga == () and record.egfr == ()


def test_duplicate_resources_are_read_once() -> None:
    record = build([ck("c1", "2025-06-20", 900, 308), ck("c1", "2025-06-20", 900, 308)])
    assert len(record.ck) == 1


# --- medications of orders ---------------------------------------------------------------------


def test_statin_ivig_estrogen_uses_and_others_dropped() -> None:
    record = build([
        request("s1", ATORVASTATIN, status="stopped"),
        request("i1", GAMUNEX),
        {"resourceType": "MedicationStatement", "id": "e1", "status": "active",
         "medicationCodeableConcept": ESTRADIOL, "effectivePeriod": {"start": "2024-01-01"}},
        request("m1", METFORMIN),
    ])
    assert [u.resource_id for u in record.statin_uses] == ["s1"]
    assert [u.resource_id for u in record.ivig_uses] == ["i1"]
    assert [(u.resource_id, u.resource_type, u.intent, u.authored_on)
            for u in record.estrogen_uses] == [
        ("e1", "MedicationStatement", None, date(2024, 1, 1))]
    assert record.statin_uses[0].raw["id"] == "s1"


def test_products_differing_in_any_element_classification_reads_are_classified_apart() -> None:
    # One call classifies each product once (_MedicationResolver keeps each verdict per call):
    # orders that differ in only one element classification reads (text, a coding's system,
    # code or display) must not share a verdict.
    unknown = {"system": RX, "code": "999999"}
    vitamin = "vitamin D 1000 IU"
    record = build([
        request("a", {"coding": [unknown], "text": "atorvastatin 10 mg"}),
        request("b", {"coding": [unknown], "text": vitamin}),
        request("c", {"coding": [{**unknown, "display": "Gamunex-C 10%"}], "text": vitamin}),
        request("d", {"coding": [unknown, {"system": ATC, "code": "G03CA03"}], "text": vitamin}),
        request("e", {"coding": [{"system": NDC, "code": "13533-800"}], "text": vitamin}),
        request("f", {"coding": [unknown], "text": "atorvastatin 10 mg", "id": "x"}),
    ])
    assert [u.resource_id for u in record.statin_uses] == ["a", "f"]
    assert [(u.resource_id, u.medication.matched_by_name) for u in record.ivig_uses] == [
        ("c", True), ("e", False)]
    assert [u.resource_id for u in record.estrogen_uses] == ["d"]


def test_end_date_is_the_latest_of_the_three_ends() -> None:
    record = build([
        request("s1", ATORVASTATIN, status="stopped",
                dispenseRequest={"validityPeriod": {"start": "2025-01-01", "end": "2025-03-01"}},
                dosageInstruction=[
                    {"timing": {"repeat": {"boundsPeriod": {"end": "2025-04-15"}}}}
                ]),
        request("s2", ATORVASTATIN, status="completed",
                dispenseRequest={"validityPeriod": {"end": "2025-05-01T12:00:00Z"}}),
        {"resourceType": "MedicationStatement", "id": "s3", "status": "stopped",
         "medicationCodeableConcept": ATORVASTATIN,
         "effectivePeriod": {"start": "2024-01-01", "end": "2025-02-01"},
         "dosage": [{"timing": {"repeat": {"boundsPeriod": {"end": "2025-02-10"}}}}]},
        request("s4", ATORVASTATIN, status="stopped"),
    ])
    # rules.md names dosageInstruction (a MedicationRequest's) and, for a MedicationStatement,
    # effectivePeriod.end only: the statement's dosage bounds (2025-02-10) are not an end.
    assert {u.resource_id: u.end_date for u in record.statin_uses} == {
        "s1": date(2025, 4, 15), "s2": date(2025, 5, 1), "s3": date(2025, 2, 1), "s4": None}


def test_contained_medication_reference() -> None:
    statin = request("s1", status="active",
                     medicationReference={"reference": "#med"},
                     contained=[{"resourceType": "Medication", "id": "med",
                                 "code": {"coding": [{"system": RX, "code": "83367"}]}}])
    assert [u.resource_id for u in build([statin]).statin_uses] == ["s1"]


def test_relative_reference_from_the_medications_map() -> None:
    statin = request("s1", medicationReference={"reference": "Medication/m1"})
    meds = {"Medication/m1": {"resourceType": "Medication", "id": "m1", "code": ATORVASTATIN}}
    assert [u.resource_id for u in build([statin], medications=meds).statin_uses] == ["s1"]


def test_relative_reference_to_a_gathered_medication_resource() -> None:
    statin = request("s1", medicationReference={"reference": "Medication/m1"})
    medication = {"resourceType": "Medication", "id": "m1", "code": ATORVASTATIN}
    assert [u.resource_id for u in build([medication, statin]).statin_uses] == ["s1"]


@pytest.mark.parametrize(
    "reference",
    ["urn:uuid:0b7e5b56-2b3c-4a5d-8e6f-7a8b9c0d1e2f", "https://ehr.example.org/fhir/Medication/9"],
)
def test_full_url_reference(reference: str) -> None:
    draft = request("d1", status="draft", medicationReference={"reference": reference})
    meds = {reference: {"resourceType": "Medication", "id": "9", "code": GAMUNEX}}
    record = build(drafts=[draft], hook="order-sign", medications=meds)
    assert [(u.resource_id, u.drafted) for u in record.ivig_uses] == [("d1", True)]
    assert record.unidentified_drafts == ()


def test_unresolvable_drafted_medication_is_unidentified() -> None:
    draft = request("d1", status="draft",
                    medicationReference={"reference": "Medication/gone", "display": "atorvastatin"})
    record = build(drafts=[draft], hook="order-sign")
    assert record.unidentified_drafts == ("atorvastatin",)
    assert record.statin_uses == () and record.ivig_uses == ()


def test_unresolvable_reference_without_display_shows_the_reference() -> None:
    draft = request("d1", status="draft", medicationReference={"reference": "#missing"})
    assert build(drafts=[draft], hook="order-sign").unidentified_drafts == ("#missing",)


def test_unresolvable_history_medication_is_left_out() -> None:
    old = request("s1", status="stopped", medicationReference={"reference": "Medication/gone"})
    record = build([old])
    assert record.statin_uses == () and record.unidentified_drafts == ()


# --- drafted ----------------------------------------------------------------------------------


def _two_drafts() -> list[dict[str, Any]]:
    return [request("d1", ATORVASTATIN, status="draft"), request("d2", GAMUNEX, status="draft")]


def test_order_select_drafts_only_the_selections() -> None:
    record = build(drafts=_two_drafts(), hook="order-select",
                   selections=("MedicationRequest/d2",))
    assert [(u.resource_id, u.drafted) for u in record.statin_uses] == [("d1", False)]
    assert [(u.resource_id, u.drafted) for u in record.ivig_uses] == [("d2", True)]
    assert record.drafted_statins == ()
    assert [u.resource_id for u in record.drafted_ivig] == ["d2"]


def test_order_select_without_selections_drafts_all() -> None:
    record = build(drafts=_two_drafts(), hook="order-select")
    assert [u.resource_id for u in record.drafted_statins] == ["d1"]
    assert [u.resource_id for u in record.drafted_ivig] == ["d2"]


def test_order_select_selection_as_absolute_reference() -> None:
    record = build(drafts=_two_drafts(), hook="order-select",
                   selections=("https://ehr.example.org/fhir/MedicationRequest/d1",))
    assert [u.resource_id for u in record.drafted_statins] == ["d1"]
    assert record.drafted_ivig == ()


def test_order_sign_drafts_every_medication_request() -> None:
    record = build(drafts=_two_drafts(), hook="order-sign", selections=("MedicationRequest/d1",))
    assert [u.resource_id for u in record.drafted_statins] == ["d1"]
    assert [u.resource_id for u in record.drafted_ivig] == ["d2"]


def test_patient_view_drafts_nothing() -> None:
    record = build(drafts=_two_drafts(), hook="patient-view")
    assert record.drafted_statins == () and record.drafted_ivig == ()


def test_unselected_unresolvable_draft_is_not_reported() -> None:
    drafts = [request("d1", status="draft", medicationReference={"reference": "Medication/x"}),
              request("d2", GAMUNEX, status="draft")]
    record = build(drafts=drafts, hook="order-select", selections=("MedicationRequest/d2",))
    assert record.unidentified_drafts == ()


def test_a_draft_also_found_by_search_is_one_use() -> None:
    draft = request("d1", ATORVASTATIN, status="draft")
    record = build([draft], drafts=[draft], hook="order-sign")
    assert [(u.resource_id, u.drafted) for u in record.statin_uses] == [("d1", True)]


# --- subcutaneous ------------------------------------------------------------------------------


def test_subcutaneous_immune_globulin_is_not_ivig() -> None:
    sc_code = request("i1", GAMUNEX, dosageInstruction=[{"route": {"coding": [
        {"system": "http://snomed.info/sct", "code": "34206005"}]}}])
    sc_text = request("i2", GAMUNEX, dosageInstruction=[{"text": "10 g SC weekly"}])
    iv = request("i3", GAMUNEX, dosageInstruction=[{"route": {"text": "IV"}}])
    record = build([sc_code, sc_text, iv])
    assert [u.resource_id for u in record.ivig_uses] == ["i3"]
    assert record.ivig_uses[0].subcutaneous is False


def test_subcutaneous_drafted_immune_globulin_is_not_ivig() -> None:
    draft = request("d1", GAMUNEX, status="draft", dosageInstruction=[{"route": {"text": "SQ"}}])
    record = build(drafts=[draft], hook="order-sign")
    assert record.drafted_ivig == () and record.unidentified_drafts == ()


# --- ordered dose ------------------------------------------------------------------------------


def _dosage(dose: dict[str, Any], repeat: dict[str, Any] | None = None,
            text: str | None = None) -> dict[str, Any]:
    d: dict[str, Any] = {"doseAndRate": [{"doseQuantity": dose}]}
    if repeat is not None:
        d["timing"] = {"repeat": repeat}
    if text is not None:
        d["text"] = text
    return d


@pytest.mark.parametrize(
    ("dose", "repeat", "amount", "unit", "days"),
    [
        (g(35), {"count": 2, "frequency": 1, "period": 1, "periodUnit": "d"}, "35", "g", 2),
        (g(35000, "mg"), None, "35000", "mg", 1),
        (g(350, "mL"), {"boundsDuration": {"value": 5, "system": UCUM, "code": "d"}},
         "350", "mL", 5),
        (g(1, "g/kg"), {"boundsDuration": {"value": 1, "unit": "wk"}}, "1", "g/kg", 7),
        (g(400, "mg/kg"), {"count": 5}, "0.4", "g/kg", 5),
        ({"value": 20, "unit": "grams"}, {"boundsDuration": {"value": 48, "code": "h"}},
         "20", "g", 1),
    ],
)
def test_ordered_dose(dose: dict[str, Any], repeat: dict[str, Any] | None, amount: str,
                      unit: str, days: int) -> None:
    parsed = ordered_dose(_dosage(dose, repeat))
    assert parsed is not None
    assert (parsed.amount, parsed.unit, parsed.days) == (Decimal(amount), unit, days)


def test_ordered_dose_original_text() -> None:
    written = ordered_dose(_dosage(g(40), {"count": 2}, text="40 g daily x2"))
    assert written is not None and written.original == "40 g daily x2"
    built = ordered_dose(_dosage(g(40), {"count": 2}))
    assert built is not None and built.original == "40 g daily for 2 days"


@pytest.mark.parametrize(
    "dosage",
    [_dosage(g(5, "tablet")), _dosage({"value": 5}), _dosage(g(-1)), {"text": "35 g"}, {}],
)
def test_no_ordered_dose(dosage: dict[str, Any]) -> None:
    assert ordered_dose(dosage) is None


def test_drafted_ivig_carries_its_dose() -> None:
    draft = request("d1", GAMUNEX, status="draft",
                    dosageInstruction=[_dosage(g(35), {"count": 2})])
    use = build(drafts=[draft], hook="order-sign").drafted_ivig[0]
    assert use.dose == OrderedDose(Decimal(35), "g", 2, "35 g daily for 2 days")
    assert use.medication.concentration_g_per_ml == Decimal("0.1")


def test_dose_grams() -> None:
    ten = Medication("Gamunex-C", is_ivig=True, concentration_g_per_ml=Decimal("0.1"))
    unknown = Medication("IVIG", is_ivig=True)
    assert dose_grams(OrderedDose(Decimal(35), "g", 2, ""), ten) == Decimal(35)
    assert dose_grams(OrderedDose(Decimal(35000), "mg", 1, ""), ten) == Decimal(35)
    assert dose_grams(OrderedDose(Decimal(350), "mL", 1, ""), ten) == Decimal(35)
    assert dose_grams(OrderedDose(Decimal(350), "mL", 1, ""), unknown) is None
    assert dose_grams(OrderedDose(Decimal(1), "g/kg", 1, ""), ten) is None
    assert dose_grams(None, ten) is None


# --- IVIG given --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "counts"),
    [("completed", True), ("in-progress", True), ("stopped", True), ("not-done", False),
     ("entered-in-error", False), ("unknown", False), ("on-hold", False)],
)
def test_ivig_given_administration_statuses(status: str, counts: bool) -> None:
    record = build([administration("a1", "2025-06-02", g(35), status=status)])
    assert (len(record.ivig_given) == 1) is counts


def test_ivig_given_time_and_grams() -> None:
    record = build([
        administration("a3", "2025-06-03T09:30:00+02:00", g(350, "mL")),
        administration("a1", "2025-06-01", g(35)),
        administration("a2", None, g(30000, "mg"),  # type: ignore[arg-type]
                       effectivePeriod={"start": "2025-06-02T08:00:00Z"}),
        administration("a4", "2025-06-04", g(200, "mL"), medication=OCTAGAM_5),
        administration("a5", "2025-06-05", g(1, "g/kg")),
        administration("a6", "2025-06-06", None),
        administration("x1", "2025-06-07", g(20), medication=METFORMIN),
        administration("a7", "2025-06-08", g(10)),
    ])
    given = {g_.resource_id: g_ for g_ in record.ivig_given}
    assert given["a3"].time == datetime(2025, 6, 3, 7, 30, tzinfo=UTC)
    assert given["a2"].time == datetime(2025, 6, 2, 8, 0, tzinfo=UTC)
    assert (given["a1"].grams, given["a2"].grams, given["a3"].grams) == (
        Decimal(35), Decimal(30), Decimal(35))
    assert given["a4"].grams == Decimal(10)  # 200 mL of a 5% product
    assert given["a5"].grams is None and given["a6"].grams is None
    assert "x1" not in given
    order = [g_.resource_id for g_ in record.ivig_given]
    assert order == ["a1", "a2", "a3", "a4", "a5", "a6", "a7"]


def test_subcutaneous_administration_is_not_ivig_given() -> None:
    sc = administration("sc", "2025-06-08", g(10))
    sc["dosage"]["route"] = {"text": "subcutaneous"}
    assert build([sc]).ivig_given == ()


def test_ivig_request_counts_when_no_administration_on_or_after_it() -> None:
    order = request("r1", GAMUNEX, status="active", authoredOn="2025-05-01",
                    dosageInstruction=[_dosage(g(30), {"count": 2})])
    before = administration("a0", "2025-04-30", g(30))
    record = build([order, before])
    assert [(x.resource_type, x.resource_id, x.day, x.grams) for x in record.ivig_given] == [
        ("MedicationAdministration", "a0", date(2025, 4, 30), Decimal(30)),
        ("MedicationRequest", "r1", date(2025, 5, 1), Decimal(60)),
    ]


@pytest.mark.parametrize("day", ["2025-05-01", "2025-05-20"])
def test_ivig_request_does_not_count_with_an_administration_on_or_after_it(day: str) -> None:
    order = request("r1", GAMUNEX, status="completed", authoredOn="2025-05-01",
                    dosageInstruction=[_dosage(g(30), {"count": 2})])
    record = build([order, administration("a1", day, g(30))])
    assert [x.resource_id for x in record.ivig_given] == ["a1"]


@pytest.mark.parametrize("status", ["on-hold", "stopped", "cancelled", "draft", "entered-in-error"])
def test_ivig_request_of_other_status_is_not_given(status: str) -> None:
    order = request("r1", GAMUNEX, status=status, authoredOn="2025-05-01",
                    dosageInstruction=[_dosage(g(30))])
    assert build([order]).ivig_given == ()


def test_ivig_draft_is_never_given() -> None:
    draft = request("d1", GAMUNEX, status="active", authoredOn="2025-06-30",
                    dosageInstruction=[_dosage(g(30))])
    record = build(drafts=[draft], hook="order-sign")
    assert record.drafted_ivig and record.ivig_given == ()


def test_ivig_request_without_usable_dose_is_given_without_grams() -> None:
    order = request("r1", GAMUNEX, status="active", authoredOn="2025-05-01",
                    dosageInstruction=[_dosage(g(2, "g/kg"))])
    assert [(x.resource_id, x.grams) for x in build([order]).ivig_given] == [("r1", None)]


# --- conditions and skipped --------------------------------------------------------------------


def test_conditions() -> None:
    record = build([
        {"resourceType": "Condition", "id": "c1",
         "clinicalStatus": {"coding": [{"code": "active"}]},
         "verificationStatus": {"coding": [{"code": "confirmed"}]},
         "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "E11.9",
                              "display": "Type 2 diabetes mellitus"}], "text": "T2DM"},
         "onsetDateTime": "2010-05-01", "recordedDate": "2010-06-01T10:00:00Z"},
        {"resourceType": "Condition", "id": "c2",
         "clinicalStatus": {"coding": [{"code": "resolved"}]},
         "code": {"text": "Pulmonary embolism"}, "onsetPeriod": {"start": "2020-01-01"}},
        {"resourceType": "Condition", "id": "c3",
         "verificationStatus": {"coding": [{"code": "refuted"}]},
         "code": {"text": "Diabetes"}},
    ])
    c1, c2 = record.conditions
    assert (c1.resource_id, c1.clinical_status, c1.verification_status) == (
        "c1", "active", "confirmed")
    assert c1.codes == ("http://hl7.org/fhir/sid/icd-10-cm|E11.9",)
    assert c1.text == "T2DM | Type 2 diabetes mellitus"
    assert (c1.onset, c1.recorded, c1.kinds) == (date(2010, 5, 1), date(2010, 6, 1), ("diabetes",))
    assert c1.active
    assert (c2.kinds, c2.onset, c2.active) == (("vte",), date(2020, 1, 1), False)


def test_skipped_counts_pass_through() -> None:
    record = build(skipped={"Observation": 2, "Condition": 1})
    assert record.skipped == (("Condition", 1), ("Observation", 2))


def test_odd_shapes_do_not_raise() -> None:
    record = build([
        {"resourceType": "Observation", "status": "final", "code": "2157-6"},
        {"resourceType": "Observation", "status": "final",
         "code": {"coding": {"system": LOINC, "code": "2157-6"}},
         "effectiveDateTime": 20250101, "valueQuantity": [1, 2]},
        {"resourceType": "MedicationRequest", "status": "active", "medicationCodeableConcept": "x"},
        {"resourceType": "MedicationAdministration", "status": "completed",
         "medicationCodeableConcept": GAMUNEX, "dosage": "35 g"},
        {"resourceType": "Condition", "code": None, "clinicalStatus": "active"},
        "not a resource",  # type: ignore[list-item]
    ])
    assert record.ck == () and record.statin_uses == () and record.ivig_given == ()
    assert [u.reason for u in record.unusable] == ["no effective time"]
    assert record.conditions[0].clinical_status == "active"
