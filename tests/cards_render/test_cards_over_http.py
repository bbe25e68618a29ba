"""No card's text can fail a call, and one card that cannot be rendered never takes the others
down; every resource the service emits is valid FHIR R4 (rules.md "What every card must show",
"Reading a resource" r2). Through the HTTP interface."""

from __future__ import annotations

import json
import logging
import shutil
import uuid
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B.medicationrequest import MedicationRequest
from fhir.resources.R4B.medicationstatement import MedicationStatement
from fhir.resources.R4B.servicerequest import ServiceRequest

from cds_service.cards_render import ADVICE_SYSTEM, CARDS_DIR_ENV, load_templates
from cds_service.cards_render.render import SUMMARY_MAX, utf16_length
from cds_service.cards_render.suggestions import extension_problem
from cds_service.cards_render.templates import absolute_https_problem
from cds_service.demo.search import build_prefetch
from cds_service.protocol.schemas import errors
from cds_service.record.units import UCUM
from cds_service.services import LOINC, find_service
from cds_service.tryit.drafts import NDC, RXNORM
from cds_service.tryit.examples import View, load_examples, requests_for
from tests.cards_render.conftest import REPO

TODAY = date(2025, 7, 1)
PATIENT = "http-cards-1"
LONG_HMGCR = (
    "POSITIVE (>200 U) " + "confirmed by immunoprecipitation at the reference laboratory " * 6
)


def day(days_ago: int) -> str:
    return (TODAY - timedelta(days=days_ago)).isoformat()


def observation(oid: str, loinc: str, days_ago: int, **value: Any) -> dict[str, Any]:
    resource = {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": loinc}]},
        "subject": {"reference": f"Patient/{PATIENT}"},
        "effectiveDateTime": day(days_ago),
    }
    resource.update(value)
    return resource


def ck(oid: str, days_ago: int, value: float) -> dict[str, Any]:
    return observation(
        oid,
        "2157-6",
        days_ago,
        valueQuantity={"value": value, "unit": "U/L", "system": UCUM, "code": "U/L"},
        referenceRange=[{"high": {"value": 308, "unit": "U/L", "system": UCUM, "code": "U/L"}}],
    )


def statin_order(status: str = "active") -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "id": "simva-1",
        "status": status,
        "intent": "order",
        "subject": {"reference": f"Patient/{PATIENT}"},
        "authoredOn": day(400),
        "medicationCodeableConcept": {
            "coding": [
                {"system": RXNORM, "code": "198211", "display": "simvastatin 40 MG Oral Tablet"}
            ]
        },
    }


def record(*resources: dict[str, Any], gender: str = "male") -> dict[str, Any]:
    patient = {
        "resourceType": "Patient",
        "id": PATIENT,
        "gender": gender,
        "birthDate": "1958-03-02",
    }
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": r} for r in (patient, *resources)],
    }


def call(
    client: Any, service_id: str, hook: str, bundle: dict[str, Any], **context: Any
) -> dict[str, Any]:
    context = {"userId": "Practitioner/1", "patientId": PATIENT, **context}
    service = find_service(service_id, hook)
    assert service is not None
    body = {
        "hookInstance": str(uuid.uuid4()),
        "hook": hook,
        "context": context,
        "prefetch": build_prefetch(service, context, bundle),
    }
    response = client.post(
        f"/cds-services/{service_id}", data=json.dumps(body), content_type="application/json"
    )
    assert response.status_code == 200, response.get_json()
    document = response.get_json()
    assert errors("response", document) == []
    check_emitted_resources(document)
    return document


def check_emitted_resources(document: dict[str, Any]) -> None:
    """Every resource a suggestion would write is valid FHIR R4 (fhir.resources R4B models,
    identical to R4 for these resource types)."""
    models = {
        "ServiceRequest": ServiceRequest,
        "MedicationRequest": MedicationRequest,
        "MedicationStatement": MedicationStatement,
    }
    for card in document["cards"]:
        for suggestion in card.get("suggestions", ()):
            for action in suggestion["actions"]:
                if "resource" in action:
                    resource = action["resource"]
                    models[resource["resourceType"]].parse_obj(resource)


def by_topic(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {card["source"]["topic"]["code"]: card for card in document["cards"]}


def hmgcr_record() -> dict[str, Any]:
    hmgcr = observation(
        "hmgcr-1",
        "93493-5",
        5,
        status="preliminary",
        valueString=LONG_HMGCR,
        interpretation=[
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
                        "code": "POS",
                    }
                ]
            }
        ],
    )
    return record(statin_order(), ck("ck-1", 2, 6950), hmgcr)


@pytest.fixture
def client(make_app: Any, settings: Any) -> Any:
    return make_app(settings.with_overrides(today=TODAY)).test_client()


def test_a_long_anti_hmgcr_value_is_shortened_and_stat01_stays(client: Any) -> None:
    # issue 11: a preliminary anti-HMGCR valueString made the STAT-05 summary pass 139
    # characters, the renderer raised, and the call was a 500 that lost STAT-01.
    cards = by_topic(call(client, "myopathy-review", "patient-view", hmgcr_record()))
    assert cards["STAT-01"]["indicator"] == "critical"
    stat05 = cards["STAT-05"]
    assert stat05["indicator"] == "critical"
    for card in cards.values():
        assert utf16_length(card["summary"]) <= SUMMARY_MAX, card["summary"]
    assert "POSITIVE" in stat05["summary"]
    assert stat05["summary"].endswith("non-statin lipid lowering") or "…" in stat05["summary"]
    assert "reference laboratory confirmed by" in stat05["detail"]  # the full value


@pytest.fixture
def broken_stat05_client(
    make_app: Any, settings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Any:
    """The service with a STAT-05 template that loads but cannot be rendered: its summary uses a
    value the advice never gives (a clinician's edit gone wrong)."""
    cards = tmp_path / "cards"
    shutil.copytree(REPO / "cards", cards)
    template = json.loads((cards / "STAT-05.json").read_text(encoding="utf-8"))
    template["summary"] = "Anti-HMGCR myopathy ({hmgcr}, {hmgcr_titre}): no statin re-exposure"
    (cards / "STAT-05.json").write_text(json.dumps(template), encoding="utf-8")
    monkeypatch.setenv(CARDS_DIR_ENV, str(cards))
    return make_app(settings.with_overrides(today=TODAY)).test_client()


def test_stat01_survives_a_stat05_card_that_cannot_be_rendered(
    broken_stat05_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        document = call(broken_stat05_client, "myopathy-review", "patient-view", hmgcr_record())
    cards = by_topic(document)
    assert cards["STAT-01"]["indicator"] == "critical"
    assert "STAT-05" not in cards
    # Logged without patient data, and counted: in the call's log line and in /metrics.
    failures = [r.getMessage() for r in caplog.records if "left out" in r.getMessage()]
    assert failures and failures[0].startswith("card STAT-05 left out")
    assert all("POSITIVE" not in m and PATIENT not in m and "6,950" not in m for m in failures)
    lines = [vars(r) for r in caplog.records if r.name == "myocds.call"]
    assert [line.get("cards_failed") for line in lines] == [["STAT-05"]]
    assert "STAT-05" not in lines[0]["card_topics"] and "STAT-01" in lines[0]["card_topics"]
    metrics = broken_stat05_client.get("/metrics").get_data(as_text=True)
    assert 'myocds_card_render_failures_total{topic="STAT-05"} 1.0' in metrics


def ivig_draft(**members: Any) -> dict[str, Any]:
    draft: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "id": "ivig-draft",
        "status": "draft",
        "intent": "order",
        "subject": {"reference": f"Patient/{PATIENT}"},
        "medicationCodeableConcept": {
            "coding": [{"system": NDC, "code": "13533-800", "display": "Gamunex-C 10%"}],
            "text": "Gamunex-C 10% IV",
        },
        "dosageInstruction": [
            {
                "timing": {"repeat": {"count": 2, "frequency": 1, "period": 1, "periodUnit": "d"}},
                "doseAndRate": [
                    {"doseQuantity": {"value": 100, "unit": "g", "system": UCUM, "code": "g"}}
                ],
            }
        ],
    }
    draft.update(members)
    return {k: v for k, v in draft.items() if v is not None}


def obese_record() -> dict[str, Any]:
    """175 cm, 100 kg man: IBW 70.5 kg; 2 × 100 g = 2 g/kg of the actual weight (DOSE-02)."""
    weight = observation(
        "wt-1",
        "29463-7",
        3,
        valueQuantity={"value": 100, "unit": "kg", "system": UCUM, "code": "kg"},
    )
    height = observation(
        "ht-1",
        "8302-2",
        3,
        valueQuantity={"value": 175, "unit": "cm", "system": UCUM, "code": "cm"},
    )
    return record(weight, height)


def drafts(draft: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"fullUrl": "urn:uuid:1f0c2d3e-4b5a-4968-8776-a5b4c3d2e1f0", "resource": draft}],
    }


def test_finished_draft_gets_the_update_suggestion(client: Any) -> None:
    document = call(
        client,
        "ivig-order-check",
        "order-sign",
        obese_record(),
        draftOrders=drafts(ivig_draft()),
    )
    dose02 = by_topic(document)["DOSE-02"]
    kinds = [a["type"] for s in dose02["suggestions"] for a in s["actions"]]
    assert "update" in kinds


@pytest.mark.parametrize(
    "flaw",
    [
        {"subject": None},  # unfinished: R4 requires subject
        {"note": "give slowly"},  # note as a string, not an Annotation array
        {"extension": [{"valueString": "no url"}]},  # an extension without url
    ],
    ids=["no-subject", "note-string", "extension-without-url"],
)
def test_update_of_a_draft_that_is_not_valid_r4_is_left_out_and_its_card_still_shows(
    client: Any, flaw: dict[str, Any]
) -> None:
    # rules.md r2: a draft missing elements R4 requires (or with flaws no rule reads) is read as
    # far as it goes; an update of it would emit an invalid resource, so that suggestion is left
    # out and the card says so.
    document = call(
        client,
        "ivig-order-check",
        "order-sign",
        obese_record(),
        draftOrders=drafts(ivig_draft(**flaw)),
    )
    dose02 = by_topic(document)["DOSE-02"]
    assert dose02["indicator"] == "warning"
    updates = [
        a for s in dose02.get("suggestions", ()) for a in s["actions"] if a["type"] == "update"
    ]
    assert updates == []
    assert "is not offered as an action" in dose02["detail"]
    assert "would not be valid FHIR R4" in dose02["detail"]


def ivig_given(days_ago: int) -> dict[str, Any]:
    return {
        "resourceType": "MedicationAdministration",
        "id": f"ivig-given-{days_ago}",
        "status": "completed",
        "subject": {"reference": f"Patient/{PATIENT}"},
        "effectiveDateTime": day(days_ago),
        "medicationCodeableConcept": {
            "coding": [{"system": NDC, "code": "13533-800", "display": "Gamunex-C 10%"}]
        },
        "dosage": {"dose": {"value": 60, "unit": "g", "system": UCUM, "code": "g"}},
    }


def test_cont02_thresholds_are_site_settings_shown_on_the_card(
    make_app: Any, settings: Any
) -> None:
    # rules.md r2: CONT-02 rests on a seed alone: a local protocol whose thresholds are settings.
    stopped = record(ivig_given(100), ivig_given(128), ck("ck-1", 40, 150))
    default = make_app(settings.with_overrides(today=TODAY)).test_client()
    assert "CONT-02" not in by_topic(call(default, "myopathy-review", "patient-view", stopped))
    stricter = make_app(
        settings.with_overrides(today=TODAY, ck_monitor_early_days=30, ck_monitor_phase_days=120)
    ).test_client()
    card = by_topic(call(stricter, "myopathy-review", "patient-view", stopped))["CONT-02"]
    detail = card["detail"]
    assert "local protocol: not from a published guideline; thresholds are site settings" in detail
    assert "CK at least every 30 days for the first 120 days after the last IVIG" in detail
    assert "then every 91 days; this card watches the first 365 days" in detail
    assert "links" not in card  # its only source is a seed, never a link
    assert "expert summary (AI-generated, not peer reviewed)" in detail


def test_first_ivig_example_gets_one_dose_for_its_draft(client: Any) -> None:
    # issue 11: DOSE-02 suggested 113.8 g and DOSE-03 125.2 g for the same draft, and DOSE-03's
    # summary spoke of "the 2.2 g/kg maximum". rules.md r2: one draft, one dose; 2 g/kg named.
    body = json.loads((REPO / "examples" / "requests" / "order-sign-ivig.json").read_text())
    response = client.post(
        "/cds-services/ivig-order-check", data=json.dumps(body), content_type="application/json"
    )
    assert response.status_code == 200
    check_emitted_resources(response.get_json())
    cards = by_topic(response.get_json())
    doses = {}
    for rule in ("DOSE-02", "DOSE-03"):
        (update,) = [
            a for s in cards[rule]["suggestions"] for a in s["actions"] if a["type"] == "update"
        ]
        dosage = update["resource"]["dosageInstruction"][0]
        doses[rule] = (
            update["resource"]["id"],
            dosage["doseAndRate"][0]["doseQuantity"]["value"],
            dosage["timing"]["repeat"]["count"],
        )
    assert doses["DOSE-02"] == doses["DOSE-03"]
    summary = cards["DOSE-03"]["summary"]
    assert "usual maximum of 2 g/kg per 4-week cycle" in summary
    assert "2.2 g/kg" not in summary


# --- "What every card must show", for every card the shipped examples give -------------------


def check_every_card_must_show(card: dict[str, Any], templates: Any) -> None:
    """rules.md "What every card must show" (r2 source rules included), on a card as served."""
    topic = card["source"]["topic"]
    assert topic["system"] == ADVICE_SYSTEM and topic["display"]
    rule = topic["code"]
    assert 0 < utf16_length(card["summary"]) <= SUMMARY_MAX, (rule, card["summary"])
    assert uuid.UUID(card["uuid"]).version == 4
    detail = card["detail"]
    sources = templates.sources_of(templates[rule])
    assert "**Sources:**" in detail, rule
    urls = [link["url"] for link in card.get("links", ())]
    seeds = [s for s in sources if s.is_seed]
    for seed in seeds:
        assert seed.url not in urls and seed.url not in detail, (rule, seed.key)
        assert f"— {seed.caution}" in detail, (rule, seed.key)
    assert urls == list(dict.fromkeys(s.url for s in sources if not s.is_seed)), rule
    assert all(absolute_https_problem(url) is None for url in urls), rule
    ranks = [s.rank for s in sources]
    assert ranks == sorted(ranks), rule  # verified first
    seed_only = bool(seeds) and len(seeds) == len(sources)
    assert (
        "local protocol: not from a published guideline; thresholds are site settings" in detail
    ) == seed_only, rule
    assert card["overrideReasons"] and all(r["display"] for r in card["overrideReasons"])
    suggestions = card.get("suggestions", ())
    assert ("selectionBehavior" in card) == bool(suggestions), rule
    for suggestion in suggestions:
        assert uuid.UUID(suggestion["uuid"]).version == 4
        for action in suggestion["actions"]:
            if action["type"] == "delete":
                assert action["resourceId"].startswith("MedicationRequest/")
                continue
            resource = action["resource"]
            assert extension_problem(resource) is None
            if resource["resourceType"] == "ServiceRequest":
                assert (resource["status"], resource["intent"]) == ("draft", "order")
                assert resource["code"]["coding"][0]["system"] == LOINC
                assert resource["subject"]["reference"].startswith("Patient/")


def test_every_card_of_every_example_shows_what_every_card_must_show(
    make_app: Any, settings: Any
) -> None:
    templates = load_templates()
    examples = load_examples()
    seen: set[str] = set()
    for example in examples:
        client = make_app(settings.with_overrides(today=example.today)).test_client()
        for hook in ("patient-view", "order-select", "order-sign"):
            view = View(example, hook, example.draft)
            for service, body in requests_for(view, example.today):
                response = client.post(
                    f"/cds-services/{service.id}",
                    data=json.dumps(body),
                    content_type="application/json",
                )
                assert response.status_code == 200, (example.name, hook, service.id)
                document = response.get_json()
                assert errors("response", document) == []
                check_emitted_resources(document)
                for card in document["cards"]:
                    check_every_card_must_show(card, templates)
                    seen.add(card["source"]["topic"]["code"])
    assert {"CONT-02", "IGA-01", "DOSE-01", "STAT-01", "DOSE-03"} <= seen  # seeded rules too
    assert len(seen) >= 23
