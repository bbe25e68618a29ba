"""rules.md revision 2, the record's reading, through the HTTP interface: each point changes the
cards an EHR gets (prefetch from the services' own templates, as ``tests.test_conformance``
calls them). The pure-function side is ``test_reading_r2``.
"""

from __future__ import annotations

import json
import uuid
from datetime import date
from typing import Any

import pytest

from cds_service.services import services_for_hook
from tests.test_conformance import call_every_service

TODAY = "2025-07-01"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
CK = {"coding": [{"system": LOINC, "code": "2157-6"}], "text": "CK"}
HMGCR = {"coding": [{"system": LOINC, "code": "93493-5"}], "text": "HMGCR Ab IgG"}
ATORVASTATIN = {"coding": [{"system": RXNORM, "code": "617310",
                            "display": "atorvastatin 20 MG Oral Tablet"}]}
SUMMARY_MAX = 139


def patient() -> dict[str, Any]:
    return {"resourceType": "Patient", "id": "p1", "gender": "male", "birthDate": "1958-02-17"}


def ck(rid: str, value: float, when: str, *, uln: float = 308, **extra: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": rid,
        "status": "final",
        "code": CK,
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": when,
        "valueQuantity": {"value": value, "unit": "U/L", "system": UCUM, "code": "U/L"},
        "referenceRange": [{"high": {"value": uln, "unit": "U/L", "system": UCUM,
                                     "code": "U/L"}}],
    }
    resource.update(extra)
    return resource


def statin(rid: str = "mr1", status: str = "active", **extra: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "id": rid,
        "status": status,
        "intent": "order",
        "subject": {"reference": "Patient/p1"},
        "medicationCodeableConcept": ATORVASTATIN,
        "authoredOn": "2024-01-10",
    }
    resource.update(extra)
    return resource


def statement(status: str) -> dict[str, Any]:
    return {
        "resourceType": "MedicationStatement",
        "id": "ms1",
        "status": status,
        "subject": {"reference": "Patient/p1"},
        "medicationCodeableConcept": ATORVASTATIN,
        "effectivePeriod": {"start": "2019-03-01"},
    }


def scenario(
    *resources: dict[str, Any], hook: str = "patient-view", drafts: tuple[dict[str, Any], ...] = ()
) -> dict[str, Any]:
    context: dict[str, Any] = {"patientId": "p1", "userId": "Practitioner/example"}
    if hook != "patient-view":
        context["draftOrders"] = {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": d} for d in drafts],
        }
    return {
        "title": "test",
        "today": TODAY,
        "hook": hook,
        "context": context,
        "record": {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": r} for r in (patient(), *resources)],
        },
    }


def cards_of(make_app, settings, case: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """topic -> card over every service of the hook (each call answered 200)."""
    return {
        card["source"]["topic"]["code"]: card
        for card in call_every_service(make_app, settings, case)
    }


def statin_draft(rid: str = "draft-1", **extra: Any) -> dict[str, Any]:
    extra.setdefault("authoredOn", TODAY)
    return statin(rid, "draft", **extra)


# --- CK as a lower bound ---------------------------------------------------------------------


def test_lower_bound_exactly_10x_gives_stat01_with_the_comparator(make_app, settings) -> None:
    observation = ck("o1", 3080, "2025-06-28")
    observation["valueQuantity"]["comparator"] = ">="
    cards = cards_of(make_app, settings, scenario(statin(), observation))
    assert "STAT-01" in cards and not {"STAT-02", "STAT-03", "STAT-04"} & set(cards)
    summary = cards["STAT-01"]["summary"]
    # rules.md r2: "the card shows the comparator" ("CK ≥ 3,080 U/L, at least 10.0×ULN")
    assert "3,080" in summary and (">=3,080" in summary or "\u2265 3,080" in summary)


def test_lower_bound_at_the_uln_gives_no_ck_card(make_app, settings) -> None:
    observation = ck("o1", 308, "2025-06-28")
    observation["valueQuantity"]["comparator"] = ">"
    cards = cards_of(make_app, settings, scenario(statin(), observation))
    assert not {"STAT-01", "STAT-02", "STAT-03", "STAT-04"} & set(cards)


# --- Usable observation --------------------------------------------------------------------


def test_future_dated_ck_is_not_the_latest(make_app, settings) -> None:
    case = scenario(statin(), ck("past", 600, "2025-06-20", uln=192),
                    ck("future", 5000, "2025-07-10", uln=192))
    cards = cards_of(make_app, settings, case)
    assert "STAT-04" in cards and "STAT-01" not in cards
    assert "dated after today" in cards["STAT-04"]["detail"]


def test_data_absent_reason_hides_the_value(make_app, settings) -> None:
    absent = ck("o1", 5000, "2025-06-28",
                dataAbsentReason={"coding": [{"code": "error"}], "text": "clotted"})
    cards = cards_of(make_app, settings, scenario(statin(), absent))
    assert "STAT-01" not in cards
    cards = cards_of(make_app, settings, scenario(statin(), ck("o1", 5000, "2025-06-28")))
    assert "STAT-01" in cards


def test_duplicate_ck_counts_once(make_app, settings) -> None:
    # Statin stopped 40 days ago; CK 2,000 then 1,500 after the stop: falling, no HMG-02. Were
    # the 1,500 filed twice counted twice, the latest would "not be lower than the one before".
    stopped = statin(status="stopped", dispenseRequest={"validityPeriod": {"end": "2025-05-22"}})
    case = scenario(stopped, ck("a", 2000, "2025-06-01"), ck("b", 1500, "2025-06-25T08:00:00Z"),
                    ck("b-copy", 1500, "2025-06-25T10:00:00+02:00"))
    assert "HMG-02" not in cards_of(make_app, settings, case)
    rising = scenario(stopped, ck("a", 1400, "2025-06-01"), ck("b", 1500, "2025-06-25"))
    assert "HMG-02" in cards_of(make_app, settings, rising)


@pytest.mark.parametrize("status", ["FINAL", " final ", "Preliminary"])
def test_status_read_in_any_case(make_app, settings, status: str) -> None:
    cards = cards_of(make_app, settings, scenario(statin(), ck("o1", 6950, "2025-06-28",
                                                              status=status)))
    assert "STAT-01" in cards


# --- Day of a time --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("when", "recent"),
    [
        # written on 06-01 (30 days ago, recent), though 05-31 in UTC
        ("2025-06-01T00:30:00+02:00", True),
        # written on 05-31 (31 days ago, not recent), though 06-01 in UTC
        ("2025-05-31T23:30:00-05:00", False),
    ],
)
def test_day_is_the_date_as_written(make_app, settings, when: str, recent: bool) -> None:
    cards = cards_of(make_app, settings, scenario(statin(), ck("o1", 6950, when)))
    assert ("STAT-01" in cards) is recent


EDGES = ("9999-12-31T23:59:59-00:01", "0001-01-01T00:00:00+00:01")
# Each prefetch key and the resource type its search returns.
KEY_TYPES = {
    "observations": "Observation",
    "medicationRequests": "MedicationRequest",
    "medicationAdministrations": "MedicationAdministration",
    "medicationStatements": "MedicationStatement",
    "conditions": "Condition",
}


def post_with_prefetch(client, case: dict[str, Any]) -> list[dict[str, Any]]:
    """Every service of the case's hook called with a prefetch assembled by type (the test EHR's
    own search cannot sort a date past year 9999 in UTC); each answers 200."""
    resources = [e["resource"] for e in case["record"]["entry"]]
    cards: list[dict[str, Any]] = []
    for service in services_for_hook(case["hook"]):
        prefetch: dict[str, Any] = {}
        for key in service.prefetch_keys:
            if key == "patient":
                prefetch[key] = resources[0]
                continue
            found = [r for r in resources if r["resourceType"] == KEY_TYPES[key]]
            prefetch[key] = {"resourceType": "Bundle", "type": "searchset", "total": len(found),
                             "entry": [{"resource": r} for r in found]}
        body = {"hook": case["hook"], "hookInstance": str(uuid.uuid4()),
                "context": case["context"], "prefetch": prefetch}
        response = client.post(f"/cds-services/{service.id}", data=json.dumps(body),
                               content_type="application/json")
        assert response.status_code == 200, (service.id, response.get_json())
        cards.extend(response.get_json()["cards"])
    return cards


@pytest.mark.parametrize("edge", EDGES)
def test_edge_datetimes_in_an_observation_an_order_and_a_draft_answer_200(
    make_app, settings, edge: str
) -> None:
    # A CK and an order at the very ends of the dateTime range, and a draft dated so: every call
    # answers 200; the recent CK still gives its card.
    client = make_app(settings.with_overrides(today=date.fromisoformat(TODAY))).test_client()
    order = statin(authoredOn=edge, dispenseRequest={"validityPeriod": {"end": edge}})
    draft = statin_draft(authoredOn=edge, dosageInstruction=[{"timing": {"repeat": {
        "boundsPeriod": {"start": edge, "end": edge}}}}])
    observation = ck("edge", 9000, edge, issued=edge)
    for hook in ("patient-view", "order-select", "order-sign"):
        case = scenario(order, observation, ck("o1", 6950, "2025-06-28"), hook=hook,
                        drafts=(draft,))
        if hook == "order-select":
            case["context"]["selections"] = ["MedicationRequest/draft-1"]
        topics = {card["source"]["topic"]["code"] for card in post_with_prefetch(client, case)}
        assert "STAT-01" in topics, hook


# --- Units ----------------------------------------------------------------------------------


@pytest.mark.parametrize("unit", ["U / L", " u/l ", "\u00b5kat / L"])
def test_unit_spelling_is_read(make_app, settings, unit: str) -> None:
    observation = ck("o1", 6950 if "kat" not in unit else 120, "2025-06-28")
    observation["valueQuantity"] = {"value": observation["valueQuantity"]["value"], "unit": unit}
    cards = cards_of(make_app, settings, scenario(statin(), observation))
    assert "STAT-01" in cards


def test_unknown_unit_says_so_on_the_card(make_app, settings) -> None:
    bad = ck("bad", 9000, "2025-06-29")
    bad["valueQuantity"] = {"value": 9000, "unit": "mmol/h"}
    cards = cards_of(make_app, settings, scenario(statin(), ck("o1", 1600, "2025-06-20"), bad))
    assert "STAT-01" not in cards and "STAT-03" in cards
    assert "mmol/h" in cards["STAT-03"]["detail"] and "not recognised" in cards["STAT-03"]["detail"]


# --- Anti-HMGCR without a number ------------------------------------------------------------


def hmgcr(**value: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": "hmgcr-1",
        "status": "final",
        "code": HMGCR,
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2025-06-01",
        **value,
    }


def after_withdrawal(*extra: dict[str, Any]) -> dict[str, Any]:
    # Stopped 2025-03-01 (122 days): CK still raised after the stop -> HMG-01 unless a result is
    # on file.
    stopped = statin(status="stopped", dispenseRequest={"validityPeriod": {"end": "2025-03-01"}})
    return scenario(stopped, ck("o1", 1800, "2025-06-20", uln=192), *extra)


def test_negative_hmgcr_text_is_on_file_for_hmg01(make_app, settings) -> None:
    assert "HMG-01" in cards_of(make_app, settings, after_withdrawal())
    negative = hmgcr(valueString="Negative")
    assert "HMG-01" not in cards_of(make_app, settings, after_withdrawal(negative))
    flagged = hmgcr(valueString="see report", interpretation=[{"coding": [{"code": "N"}]}])
    assert "HMG-01" not in cards_of(make_app, settings, after_withdrawal(flagged))


def test_long_preliminary_positive_text_gives_stat05_and_stat01(make_app, settings) -> None:
    text = "POSITIVE (>200 U) " + "confirmed by a second method at the reference lab; " * 4
    result = hmgcr(status="preliminary", valueString=text)
    case = scenario(result, ck("o1", 6950, "2025-06-28"), hook="order-sign",
                    drafts=(statin_draft(),))
    cards = cards_of(make_app, settings, case)
    assert {"STAT-01", "STAT-05"} <= set(cards)
    card = cards["STAT-05"]
    assert len(card["summary"]) <= SUMMARY_MAX
    assert "POSITIVE (>200 U)" in card["summary"] + card["detail"]
    assert "preliminary" in card["summary"] + card["detail"]


def test_resolved_hmgcr_condition_still_forbids_a_statin(make_app, settings) -> None:
    condition = {
        "resourceType": "Condition",
        "id": "c1",
        "clinicalStatus": {"coding": [{"code": "resolved"}]},
        "code": {"text": "Statin-associated anti-HMGCR necrotizing myopathy"},
        "subject": {"reference": "Patient/p1"},
        "onsetDateTime": "2021-03-01",
    }
    case = scenario(condition, hook="order-sign", drafts=(statin_draft(),))
    assert "STAT-05" in cards_of(make_app, settings, case)
    condition["verificationStatus"] = {"coding": [{"code": "refuted"}]}
    assert "STAT-05" not in cards_of(make_app, settings, case)


# --- Order intent and active statin ---------------------------------------------------------


@pytest.mark.parametrize(("intent", "active"), [("order", True), ("plan", False),
                                                 ("proposal", False), ("Original-Order", True)])
def test_only_order_intents_are_an_active_statin(
    make_app, settings, intent: str, active: bool
) -> None:
    cards = cards_of(make_app, settings, scenario(statin(intent=intent),
                                                  ck("o1", 8500, "2025-06-29", uln=192)))
    assert ("STAT-01" in cards) is active
    assert "STAT-02" in cards  # 44.3×ULN: needs no statin


def test_draft_counts_whatever_its_intent(make_app, settings) -> None:
    case = scenario(ck("o1", 6950, "2025-06-28"), hook="order-sign",
                    drafts=(statin_draft(intent="proposal"),))
    assert "STAT-01" in cards_of(make_app, settings, case)


@pytest.mark.parametrize(("status", "card"), [("on-hold", True), ("active", True),
                                               ("stopped", False)])
def test_on_hold_statement_is_an_active_statin(
    make_app, settings, status: str, card: bool
) -> None:
    cards = cards_of(make_app, settings, scenario(statement(status),
                                                  ck("o1", 1600, "2025-06-23")))
    assert ("STAT-03" in cards) is card
