"""The rules.md revision-2 points of the IVIG area through the HTTP interface.

Each test builds a small record as an EHR holds it (R4 JSON), calls every service of the hook
with the prefetch its own templates give (``tests.test_conformance.call_every_service``, which
also checks CDS Hooks conformance and the card basics) and reads the cards: what a clinician
sees, not only what the advice functions return.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest

from tests.test_conformance import call_every_service

TODAY = date(2025, 7, 1)
PATIENT = "ivig-r2-1"
UCUM = "http://unitsofmeasure.org"
LOINC = "http://loinc.org"
ICD = "http://hl7.org/fhir/sid/icd-10-cm"
NDC = "http://hl7.org/fhir/sid/ndc"
PRIVIGEN = {"coding": [{"system": NDC, "code": "44206-0439"}], "text": "Privigen 10%"}


def day(days_ago: int) -> str:
    return (TODAY - timedelta(days=days_ago)).isoformat()


def quantity(value: float, code: str) -> dict[str, Any]:
    return {"value": value, "unit": code, "system": UCUM, "code": code}


def observation(oid: str, loinc: str, days_ago: int, value: float, unit: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation", "id": oid, "status": "final",
        "code": {"coding": [{"system": LOINC, "code": loinc}]},
        "subject": {"reference": f"Patient/{PATIENT}"}, "effectiveDateTime": day(days_ago),
        "valueQuantity": quantity(value, unit),
    }


def patient(gender: str | None = "female", birth: str = "1970-01-01") -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": "Patient", "id": PATIENT, "birthDate": birth}
    if gender is not None:
        resource["gender"] = gender
    return resource


def usual(kg: float = 60, cm: float = 165, iga: float | None = 200,
          creatinine: float | None = 0.8) -> list[dict[str, Any]]:
    """Weight and height 10 days old, a normal IgA, a recent creatinine with its range."""
    found = [
        observation("weight", "29463-7", 10, kg, "kg"),
        observation("height", "8302-2", 10, cm, "cm"),
    ]
    if iga is not None:
        found.append(observation("iga", "2458-8", 20, iga, "mg/dL"))
    if creatinine is not None:
        crea = observation("crea", "2160-0", 5, creatinine, "mg/dL")
        crea["referenceRange"] = [{"high": quantity(1.1, "mg/dL")}]
        found.append(crea)
    return found


def ivig_draft(rid: str = "ivig-1", grams: float | None = 30, days: int = 2,
               medication: dict[str, Any] = PRIVIGEN, **members: Any) -> dict[str, Any]:
    dosage: dict[str, Any] = {"timing": {"repeat": {"count": days, "frequency": 1, "period": 1,
                                                    "periodUnit": "d"}}}
    if grams is not None:
        dosage["doseAndRate"] = [{"doseQuantity": quantity(grams, "g")}]
    return {
        "resourceType": "MedicationRequest", "id": rid, "status": "draft", "intent": "order",
        "subject": {"reference": f"Patient/{PATIENT}"}, "authoredOn": TODAY.isoformat(),
        "medicationCodeableConcept": medication, "dosageInstruction": [dosage], **members,
    }


def given(aid: str, days_ago: int, grams: float) -> dict[str, Any]:
    return {
        "resourceType": "MedicationAdministration", "id": aid, "status": "completed",
        "subject": {"reference": f"Patient/{PATIENT}"}, "medicationCodeableConcept": PRIVIGEN,
        "effectiveDateTime": day(days_ago), "dosage": {"dose": quantity(grams, "g")},
    }


def condition(cid: str, text: str, *, code: str | None = None, system: str = ICD,
              clinical: str = "active", verification: str | None = None) -> dict[str, Any]:
    concept: dict[str, Any] = {"text": text}
    if code is not None:
        concept["coding"] = [{"system": system, "code": code}]
    resource: dict[str, Any] = {
        "resourceType": "Condition", "id": cid, "subject": {"reference": f"Patient/{PATIENT}"},
        "code": concept,
        "clinicalStatus": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
            "code": clinical}]},
    }
    if verification is not None:
        resource["verificationStatus"] = {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
            "code": verification}]}
    return resource


def call(make_app: Any, settings: Any, resources: list[dict[str, Any]],
         drafts: list[dict[str, Any]], hook: str = "order-sign",
         selections: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """The cards of every service of ``hook``, by rule id."""
    context: dict[str, Any] = {"userId": "Practitioner/example", "patientId": PATIENT}
    if hook != "patient-view":
        context["draftOrders"] = {"resourceType": "Bundle", "type": "collection",
                                  "entry": [{"resource": d} for d in drafts]}
    if selections is not None:
        context["selections"] = selections
    scenario = {
        "hook": hook,
        "today": TODAY.isoformat(),
        "context": context,
        "record": {"resourceType": "Bundle", "type": "collection",
                   "entry": [{"resource": r} for r in resources]},
    }
    cards = call_every_service(make_app, settings, scenario)
    by_rule = {card["source"]["topic"]["code"]: card for card in cards}
    assert len(by_rule) == len(cards), "one card per rule per call"
    return by_rule


def actions(card: dict[str, Any]) -> list[tuple[str, str, float | None, int | None]]:
    """(type, resource id, dose in g per day, days) of every action of every suggestion."""
    found = []
    for suggestion in card.get("suggestions", []):
        for action in suggestion["actions"]:
            if action["type"] == "delete":
                found.append(("delete", action["resourceId"], None, None))
                continue
            resource = action["resource"]
            dosage = resource["dosageInstruction"][0]
            dose = dosage["doseAndRate"][0]["doseQuantity"]["value"]
            days = dosage["timing"]["repeat"]["count"]
            found.append((action["type"], f"MedicationRequest/{resource['id']}", dose, days))
    return found


# --- DOSE-02 / DOSE-03 ---------------------------------------------------------------------------


def test_two_ivig_drafts_add_up_and_share_the_2_g_per_kg_allowance(make_app, settings):
    # Man 165 cm, 64 kg: IBW 61.4 kg. 70 + 70 = 140 g > 2.2 × 61.4 = 135.1 g; each alone is
    # under it. Suggest 2 g/kg = 122.8 g, shared: 30.7 g/day × 2 days on each draft.
    drafts = [ivig_draft("ivig-a", 35, 2), ivig_draft("ivig-b", 35, 2)]
    cards = call(make_app, settings, [patient("male"), *usual(64, 165)], drafts)
    dose03 = cards["DOSE-03"]
    assert "DOSE-02" not in cards
    assert dose03["summary"].startswith("IVIG 140 g in 28 days")
    assert "maximum of 2 g/kg" in dose03["summary"] and "(122.8 g for 61.4 kg)" in dose03["summary"]
    assert "2.2" not in dose03["summary"]
    assert actions(dose03) == [
        ("update", "MedicationRequest/ivig-a", 30.7, 2),
        ("update", "MedicationRequest/ivig-b", 30.7, 2),
    ]
    # one draft alone is no DOSE-03
    assert "DOSE-03" not in call(make_app, settings, [patient("male"), *usual(64, 165)],
                                 drafts[:1])


def test_dose_02_and_dose_03_set_the_draft_to_the_same_dose(make_app, settings):
    # The first-IVIG example: woman 165 cm, 120 kg, IBW 56.9 kg; 120 g × 2 days =
    # 2 g/kg × actual. DOSE-02 (2 g/kg × 56.9 = 113.8 g) and DOSE-03 (240 g > 125.2 g; allowance
    # 2 g/kg − 0 g) both suggest 56.9 g/day × 2 days: never two doses for one draft.
    cards = call(make_app, settings, [patient("female"), *usual(120, 165)],
                 [ivig_draft("ivig-1", 120, 2)])
    assert actions(cards["DOSE-02"]) == actions(cards["DOSE-03"]) == [
        ("update", "MedicationRequest/ivig-1", 56.9, 2)
    ]
    assert "125.2" not in cards["DOSE-03"]["summary"]
    assert "113.8 g" in cards["DOSE-03"]["summary"]


def test_total_shown_is_given_plus_ordered(make_app, settings):
    # woman 165 cm 60 kg: IBW 56.9 kg; 40 g given 10 days ago + 30 g × 3 days = 130 g > 125.2 g;
    # allowance 113.8 − 40 = 73.8 g over 3 days → 24.6 g/day
    cards = call(make_app, settings, [patient(), *usual(), given("a1", 10, 40)],
                 [ivig_draft("ivig-1", 30, 3)])
    card = cards["DOSE-03"]
    assert card["summary"].startswith("IVIG 130 g in 28 days")
    assert "73.8 g remain" in card["summary"]
    assert actions(card) == [("update", "MedicationRequest/ivig-1", 24.6, 3)]


def test_order_without_a_dose_when_g28_alone_is_over_the_limit(make_app, settings):
    # The case: 120 g given in the last 28 days, limit 2.2 × 52.4 = 115.3 g (woman
    # 160 cm), a new order with no dose: DOSE-03, and deleting the draft is suggested.
    resources = [patient(), *usual(60, 160), given("a1", 8, 60), given("a2", 7, 60)]
    cards = call(make_app, settings, resources, [ivig_draft("ivig-1", grams=None)])
    card = cards["DOSE-03"]
    assert card["summary"].startswith("IVIG 120 g in 28 days")
    assert "0 g remain" in card["summary"]
    assert actions(card) == [("delete", "MedicationRequest/ivig-1", None, None)]


@pytest.mark.parametrize(
    ("days_ago", "time", "fires"),
    [
        (27, "", True),
        (28, "", False),
        # rules.md r2 "Day of a time": 2025-06-03 as written (2025-06-04 in UTC) is 28 days ago
        (28, "T23:30:00-05:00", False),
        (27, "T00:30:00+09:00", True),  # 2025-06-03 in UTC, 2025-06-04 as written
    ],
)
def test_an_infusion_exactly_28_days_ago_is_the_previous_cycle(make_app, settings, days_ago,
                                                               time, fires):
    # woman 160 cm: IBW 52.4 kg, limit 115.3 g; 60 g given + 60 g ordered = 120 g
    infusion = given("a1", days_ago, 60)
    infusion["effectiveDateTime"] += time
    resources = [patient(), *usual(60, 160), infusion]
    cards = call(make_app, settings, resources, [ivig_draft("ivig-1", 30, 2)])
    assert ("DOSE-03" in cards) is fires


# --- DOSE-01 ------------------------------------------------------------------------------------


@pytest.mark.parametrize("gender", ["other", "unknown", None])
def test_dose_01_says_the_sex_was_assumed(make_app, settings, gender):
    # rules.md r2: other/unknown sex → Devine 45.5 kg base (165 cm: 56.9 kg), and the card says so
    cards = call(make_app, settings, [patient(gender), *usual()], [ivig_draft()])
    card = cards["DOSE-01"]
    assert "56.9 kg" in card["summary"]
    assert "female Devine formula used" in card["detail"]
    male = call(make_app, settings, [patient("male"), *usual()], [ivig_draft()])["DOSE-01"]
    assert "female Devine formula used" not in male["detail"]


@pytest.mark.parametrize(
    "risk",
    [
        condition("vte", "Deep vein thrombosis", code="I82.401", clinical="resolved"),
        {"resourceType": "MedicationRequest", "id": "estradiol", "status": "active",
         "intent": "order", "subject": {"reference": f"Patient/{PATIENT}"},
         "medicationCodeableConcept": {"coding": [{"system": "http://www.whocc.no/atc",
                                                   "code": "G03CA03"}], "text": "estradiol"}},
    ],
    ids=["vte", "estrogen"],
)
def test_dose_01_caps_the_rate_for_a_thrombosis_risk_alone(make_app, settings, risk):
    # 55 years, creatinine normal, no eGFR: only the thrombosis risk; 0.03 × 60 kg × 60 = 108
    cards = call(make_app, settings, [patient(), *usual(), risk], [ivig_draft()])
    assert "SAFE-03" in cards and "SAFE-02" not in cards
    assert "at most 108 mL/h" in cards["DOSE-01"]["detail"]
    plain = call(make_app, settings, [patient(), *usual()], [ivig_draft()])
    assert "at most 144 mL/h" in plain["DOSE-01"]["detail"]


# --- IgA ----------------------------------------------------------------------------------------


def test_iga_of_exactly_zero_gives_iga_02_not_iga_01(make_app, settings):
    cards = call(make_app, settings, [patient(), *usual(iga=0)], [ivig_draft()])
    assert "IGA-01" not in cards
    assert cards["IGA-02"]["indicator"] == "critical"
    assert "0 mg/dL" in cards["IGA-02"]["summary"]


@pytest.mark.parametrize(("birth", "fires"), [("2021-07-01", False), ("2020-07-01", True)])
def test_iga_03_needs_age_over_4(make_app, settings, birth, fires):
    # 4 years today → no IGA-03; 5 today → IGA-03 (IgA 40 mg/dL, 7 ≤ 40 < 61)
    cards = call(make_app, settings, [patient(birth=birth), *usual(18, 110, iga=40)],
                 [ivig_draft(grams=10, days=1)])
    assert ("IGA-03" in cards) is fires


# --- SAFE-02 / SAFE-03: Conditions and creatinine ----------------------------------------------


def test_refuted_dvt_is_no_thrombosis_risk(make_app, settings):
    refuted = condition("dvt", "Deep vein thrombosis", code="I82.401", verification="refuted")
    cards = call(make_app, settings, [patient(), *usual(), refuted], [ivig_draft()])
    assert "SAFE-03" not in cards
    confirmed = condition("dvt", "Deep vein thrombosis", code="I82.401",
                          verification="confirmed")
    cards = call(make_app, settings, [patient(), *usual(), confirmed], [ivig_draft()])
    assert "venous thromboembolism" in cards["SAFE-03"]["summary"]


@pytest.mark.parametrize(
    ("resource", "rule"),
    [
        (condition("c1", "history of DVT"), "SAFE-03"),
        (condition("c1", "Old PE"), "SAFE-03"),
        (condition("c1", "Arterial thromboembolism, left leg"), None),
        (condition("c1", "Prediabetes"), None),
        (condition("c1", "Diabetes insipidus"), None),
        (condition("c1", "Diabetic nephropathy"), "SAFE-02"),
        # a dotless ICD-10-CM code and a system URL with a trailing "/" still match
        (condition("c1", "problem list entry", code="I824"), "SAFE-03"),
        (condition("c1", "problem list entry", code="I82.4", system=ICD + "/"), "SAFE-03"),
        (condition("c1", "problem list entry", code="E119"), "SAFE-02"),
    ],
)
def test_risk_conditions_by_text_and_code(make_app, settings, resource, rule):
    cards = call(make_app, settings, [patient(), *usual(), resource], [ivig_draft()])
    assert {r for r in ("SAFE-02", "SAFE-03") if r in cards} == ({rule} if rule else set())


@pytest.mark.parametrize(("gender", "fires"), [("unknown", True), ("other", True), ("male", False)])
def test_creatinine_uln_for_other_or_unknown_sex_is_the_female_one(make_app, settings, gender,
                                                                   fires):
    crea = observation("crea", "2160-0", 5, 1.2, "mg/dL")  # no reference range: 1.1 / 1.3
    cards = call(make_app, settings, [patient(gender), *usual(creatinine=None), crea],
                 [ivig_draft()])
    assert ("SAFE-02" in cards) is fires
    if fires:
        assert "creatinine 1.2 mg/dL" in cards["SAFE-02"]["summary"]


# --- IVIG recognised: NDC, subcutaneous, selections ---------------------------------------------


@pytest.mark.parametrize("code", ["44206-439", "44206-0439-01", "044206-00439-001", "44206043901"])
def test_ivig_by_ndc_whatever_its_leading_zeros(make_app, settings, code):
    draft = ivig_draft(medication={"coding": [{"system": NDC, "code": code}]})
    cards = call(make_app, settings, [patient(), *usual(iga=None)], [draft])
    assert "IGA-01" in cards and "DOSE-01" in cards


@pytest.mark.parametrize(
    ("dosage", "ivig"),
    [
        ({"route": {"text": "SC"}}, False),
        ({"text": "10 g subcut weekly"}, False),
        ({"route": {"coding": [{"system": "http://snomed.info/sct", "code": "34206005"}]}}, False),
        # rules.md "IVIG" as written: a route display or "subcutaneously" is not the exclusion
        ({"route": {"coding": [{"system": "http://example.org/route", "code": "R9",
                                "display": "Subcutaneous"}]}}, True),
        ({"route": {"text": "IV"}}, True),
    ],
)
def test_subcutaneous_exclusion_as_written(make_app, settings, dosage, ivig):
    draft = ivig_draft()
    draft["dosageInstruction"][0].update(dosage)
    cards = call(make_app, settings, [patient(), *usual(iga=None)], [draft])
    assert ("IGA-01" in cards) is ivig


# --- IVIG course: order intent ------------------------------------------------------------------


@pytest.mark.parametrize(("intent", "stopped"), [("order", False), ("plan", True),
                                                 ("proposal", True)])
def test_a_planned_ivig_request_does_not_keep_the_course_ongoing(make_app, settings, intent,
                                                                 stopped):
    # rules.md r2 "Order intent": last IVIG 100 days ago, no CK since; an active IVIG request
    # keeps the course ongoing only as an order. Stopped: CK monitoring is overdue (CONT-02).
    request = {**ivig_draft("ivig-plan"), "status": "active", "intent": intent,
               "authoredOn": day(400)}
    resources = [patient(), given("a0", 130, 40), given("a1", 100, 40), request]
    cards = call(make_app, settings, resources, [], hook="patient-view")
    assert ("CONT-02" in cards) is stopped


@pytest.mark.parametrize(
    ("selection", "selected"),
    [
        ("MedicationRequest/ivig-1/_history/2", True),  # an EHR naming one version of the draft
        ("MedicationRequest/ivig-1", True),
        ("MedicationRequest/ivig-2/_history/1", False),  # another order: the IVIG is not selected
    ],
)
def test_a_selection_of_one_version_selects_its_draft(make_app, settings, selection, selected):
    """rules.md "Drafted": order-select's selections name the draft; a versioned reference
    (``/_history/N``) is accepted by the request schema and selects the same draft."""
    draft = ivig_draft()
    other = {**ivig_draft(rid="ivig-2"), "medicationCodeableConcept": {"text": "paracetamol"}}
    cards = call(make_app, settings, [patient(), *usual(iga=None)], [draft, other],
                 hook="order-select", selections=[selection])
    assert ("IGA-01" in cards) is selected
