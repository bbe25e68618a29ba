"""Through HTTP, rules.md r2 "Reading a resource" and "Medication of an order":

- a flaw no rule reads (an unknown element, a wrong-typed ``note`` or ``interpretation``, an
  extension without ``url``) added to any resource of a record never removes a card it gives
  (hypothesis, over the reference scenarios);
- orders coded only by ``medicationReference``, their Medications only reachable by ``_include``,
  give the same cards prefetched (the services' own templates) and fetched (loopback server);
- the call's log line counts the flawed resources per type and carries no identifier or value;
- an unfinished draft is read as far as it goes and counted; the whole R4B model checks it only
  when a suggestion would re-emit it, which then is left out while its card still shows.
"""

from __future__ import annotations

import copy
import io
import json
import uuid
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class
from flask import Flask
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from cds_service.demo.search import build_prefetch
from cds_service.services import LOINC, services_for_hook
from cds_service.settings import Settings
from tests.support.fhir_server import FhirTestServer

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
OWN_SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"


def _post(client: Any, service_id: str, body: dict[str, Any]) -> Any:
    return client.post(
        f"/cds-services/{service_id}", data=json.dumps(body), content_type="application/json"
    )


def _cards(client: Any, hook: str, context: dict[str, Any], record: dict[str, Any],
           **extra: Any) -> set[tuple[str, str]]:
    """(topic, indicator) of every card the services of ``hook`` give, prefetched from
    ``record`` with their own templates unless ``extra`` says otherwise."""
    given_cards: set[tuple[str, str]] = set()
    for service in services_for_hook(hook):
        body = {"hook": hook, "hookInstance": str(uuid.uuid4()), "context": context, **extra}
        if "fhirServer" not in extra:
            body["prefetch"] = build_prefetch(service, context, record)
        response = _post(client, service.id, body)
        assert response.status_code == 200, (service.id, response.get_json())
        given_cards |= {
            (c["source"]["topic"]["code"], c["indicator"]) for c in response.get_json()["cards"]
        }
    return given_cards


# --- the property -----------------------------------------------------------------------------


def _known_elements(resource_type: Any) -> set[str]:
    try:
        return set(get_fhir_model_class(str(resource_type)).schema()["properties"])
    except KeyError:
        return set()


_FLAWS = ("unknown element", "note", "interpretation", "extension without url")


def _add_flaw(resource: dict[str, Any], flaw: str, name: str, value: Any) -> bool:
    """Add ``flaw`` to ``resource`` where no rule could read it; False when it does not apply
    (an element of that name is already there: replacing it would change what the rules see)."""
    if flaw == "unknown element":
        if name in _known_elements(resource.get("resourceType")) or name in resource:
            return False
        resource[name] = value
    elif flaw == "note":
        resource["note"] = "see the lab's comment"  # R4: an array of Annotation
    elif flaw == "interpretation":
        if "interpretation" in resource:
            return False
        resource["interpretation"] = {"text": "abnormal"}  # R4: an array of CodeableConcept
    else:
        extensions = resource.get("extension")
        extensions = extensions if isinstance(extensions, list) else []
        resource["extension"] = [*extensions, {"valueString": "no url"}]
    return True


def _with_cards(scenarios: dict[str, dict[str, Any]]) -> list[str]:
    return sorted(k for k, s in scenarios.items() if s.get("expect", {}).get("present"))


def test_a_flaw_no_rule_reads_never_removes_a_card(
    scenarios: dict[str, dict[str, Any]],
    make_app: Callable[[Settings], Flask],
    settings: Settings,
) -> None:
    names = _with_cards(scenarios)
    assert names, "no scenario gives a card"
    clients: dict[str, Any] = {}
    baselines: dict[str, set[tuple[str, str]]] = {}

    def client_for(name: str) -> Any:
        if name not in clients:
            today = date.fromisoformat(scenarios[name]["today"])
            clients[name] = make_app(settings.with_overrides(today=today)).test_client()
        return clients[name]

    def cards_of(name: str, scenario: dict[str, Any]) -> set[tuple[str, str]]:
        return _cards(client_for(name), scenario["hook"], scenario["context"], scenario["record"])

    @hypothesis_settings(max_examples=150, deadline=None, database=None,
                         suppress_health_check=[HealthCheck.too_slow])
    @given(
        name=st.sampled_from(names),
        pick=st.integers(min_value=0, max_value=10_000),
        flaw=st.sampled_from(_FLAWS),
        element=st.from_regex(r"\A[a-z][A-Za-z]{2,12}\Z"),
        value=st.one_of(st.integers(), st.text(max_size=8), st.none(),
                        st.dictionaries(st.text(max_size=4), st.integers(), max_size=2)),
    )
    def check(name: str, pick: int, flaw: str, element: str, value: Any) -> None:
        if name not in baselines:
            baselines[name] = cards_of(name, scenarios[name])
        assert baselines[name], f"{name} gives no card"
        scenario = copy.deepcopy(scenarios[name])
        drafts = (scenario["context"].get("draftOrders") or {}).get("entry", [])
        resources = [e["resource"] for e in [*scenario["record"]["entry"], *drafts]]
        if not _add_flaw(resources[pick % len(resources)], flaw, element, value):
            return
        assert baselines[name] <= cards_of(name, scenario), (name, flaw, element)

    check()


# --- _include: prefetch and fallback agree ----------------------------------------------------

PATIENT = "inc-1"
ATORVASTATIN_URN = "urn:uuid:5b0e3c1c-6f1e-4d7a-9a55-0d2b5d1f7a10"


def _medication(medication_id: str, code: str, display: str) -> dict[str, Any]:
    return {"resourceType": "Medication", "id": medication_id,
            "code": {"coding": [{"system": RXNORM, "code": code, "display": display}]}}


def _ordered(resource_type: str, resource_id: str, reference: str, **more: Any) -> dict[str, Any]:
    return {"resourceType": resource_type, "id": resource_id,
            "subject": {"reference": f"Patient/{PATIENT}"},
            "medicationReference": {"reference": reference}, **more}


INCLUDE_RECORD: dict[str, Any] = {
    "resourceType": "Bundle",
    "type": "collection",
    "entry": [
        {"fullUrl": "urn:uuid:0c8f6f0e-8e0e-4c59-8f0a-6a1d3d9d2b01",
         "resource": {"resourceType": "Patient", "id": PATIENT, "gender": "male",
                      "birthDate": "1960-03-01"}},
        # Epic style: each order names its product only by reference; the Medications are in the
        # record, never in a prefetch key of their own.
        {"fullUrl": ATORVASTATIN_URN,
         "resource": _medication("med-atorva", "617311", "atorvastatin 40 MG Oral Tablet")},
        {"fullUrl": "urn:uuid:7d7a1c9e-2c1b-4a5e-8d3f-1f0e2d3c4b5a",
         "resource": _medication("med-simva", "198211", "simvastatin 40 MG Oral Tablet")},
        {"resource": _ordered("MedicationRequest", "mr-1", "Medication/med-atorva",
                              status="active", intent="order", authoredOn="2024-01-10")},
        {"resource": _ordered("MedicationStatement", "ms-1", ATORVASTATIN_URN, status="active")},
        {"resource": _ordered("MedicationRequest", "mr-0", "Medication/med-simva",
                              status="stopped", intent="order", authoredOn="2022-01-10")},
        {"resource": {
            "resourceType": "Observation", "id": "ck-1", "status": "final",
            "code": {"coding": [{"system": LOINC, "code": "2157-6"}]},
            "subject": {"reference": f"Patient/{PATIENT}"},
            "effectiveDateTime": "2025-06-27T08:30:00+02:00",
            "valueQuantity": {"value": 3600, "unit": "U/L", "system": "http://unitsofmeasure.org",
                              "code": "U/L"},
            "referenceRange": [{"high": {"value": 308, "unit": "U/L"}}]}},
    ],
}


@pytest.fixture
def include_server(fhir_server: FhirTestServer) -> FhirTestServer:
    fhir_server.record = copy.deepcopy(INCLUDE_RECORD)
    fhir_server.page_size = 2  # the included Medications ride on the pages of their orders
    return fhir_server


@pytest.mark.parametrize("hook", ["patient-view", "order-sign"])
def test_medications_only_via_include_give_the_same_cards_both_ways(
    hook: str,
    include_server: FhirTestServer,
    fhir_settings: Settings,
    make_app: Callable[[Settings], Flask],
) -> None:
    context: dict[str, Any] = {"userId": "Practitioner/u", "patientId": PATIENT}
    if hook == "order-sign":  # a new statin order, itself by reference (resolved from prefetch)
        draft = _ordered("MedicationRequest", "draft-1", "Medication/med-atorva",
                         status="draft", intent="order", authoredOn="2025-07-01")
        context["draftOrders"] = {"resourceType": "Bundle", "entry": [{"resource": draft}]}
    client = make_app(fhir_settings.with_overrides(today=date(2025, 7, 1))).test_client()
    prefetched = _cards(client, hook, context, INCLUDE_RECORD)
    fetched = _cards(client, hook, context, INCLUDE_RECORD, fhirServer=include_server.base_url)
    assert ("STAT-01", "critical") in prefetched  # 3,600 / 308 = 11.7x on atorvastatin
    assert fetched == prefetched
    paths = include_server.paths()
    assert "MedicationRequest" in paths and "MedicationStatement" in paths
    assert not [p for p in paths if p.startswith("Medication/")]  # none read one by one


def test_without_include_the_prefetch_would_miss_the_statin(
    fhir_settings: Settings, make_app: Callable[[Settings], Flask]
) -> None:
    """The control: the same prefetch with the included Medications taken out gives no STAT-01,
    so the test above proves the _include, not something else."""
    client = make_app(fhir_settings.with_overrides(today=date(2025, 7, 1))).test_client()
    context = {"userId": "Practitioner/u", "patientId": PATIENT}
    (service,) = services_for_hook("patient-view")
    prefetch = build_prefetch(service, context, INCLUDE_RECORD)
    for bundle in prefetch.values():
        if isinstance(bundle, dict) and bundle.get("resourceType") == "Bundle":
            bundle["entry"] = [e for e in bundle["entry"] if e["search"]["mode"] == "match"]
    body = {"hook": "patient-view", "hookInstance": str(uuid.uuid4()), "context": context,
            "prefetch": prefetch}
    response = _post(client, service.id, body)
    assert response.status_code == 200
    assert "STAT-01" not in {c["source"]["topic"]["code"] for c in response.get_json()["cards"]}


# --- the log line -----------------------------------------------------------------------------


def test_the_call_line_counts_flawed_resources_per_type_and_no_ids(
    json_lines: io.StringIO, settings: Settings, make_app: Callable[[Settings], Flask]
) -> None:
    record = copy.deepcopy(INCLUDE_RECORD)
    secret_note = "Nurse Ratched drew this at home"
    by_id = {e["resource"]["id"]: e["resource"] for e in record["entry"]}
    by_id["ck-1"]["note"] = secret_note
    by_id["ck-1"]["fooBar"] = 12345
    by_id["med-simva"]["extension"] = [{"valueString": "no url"}]
    by_id[PATIENT]["gender"] = "MALE"
    context = {"userId": "Practitioner/u", "patientId": PATIENT}
    (service,) = services_for_hook("patient-view")
    prefetch = build_prefetch(service, context, record)
    prefetch["conditions"]["entry"].append({"resource": ["not", "a", "resource"]})
    client = make_app(settings.with_overrides(today=date(2025, 7, 1))).test_client()
    body = {"hook": "patient-view", "hookInstance": str(uuid.uuid4()), "context": context,
            "prefetch": prefetch}
    response = _post(client, service.id, body)
    assert response.status_code == 200
    assert ("STAT-01", "critical") in {
        (c["source"]["topic"]["code"], c["indicator"]) for c in response.get_json()["cards"]
    }  # the flawed CK Observation still gives the critical card
    records = [json.loads(text) for text in json_lines.getvalue().splitlines()]
    (line,) = [r for r in records if r["logger"] == "myocds.call"]
    assert line["flawed_resources"] == [
        {"type": "Medication", "count": 1},
        {"type": "Observation", "count": 1},
        {"type": "Patient", "count": 1},  # scrubbed as patient data if it were a key
    ]
    assert line["skipped_resources"] == 1
    assert line["flawed_drafts"] == 0  # a patient-view has no drafts
    text = json_lines.getvalue()  # every line of the call, not only its call line
    for secret in (PATIENT, "ck-1", "med-simva", "mr-1", secret_note, "12345", "3600", "urn:uuid"):
        assert secret not in text, secret


@pytest.mark.parametrize("reference", [7, "Medication/med-atorva", ["Medication/med-atorva"], None])
def test_an_unreadable_medication_reference_is_an_unidentified_medication_not_an_error(
    reference: Any, settings: Settings, make_app: Callable[[Settings], Flask]
) -> None:
    record = copy.deepcopy(INCLUDE_RECORD)
    for entry in record["entry"]:
        if entry["resource"]["resourceType"] in ("MedicationRequest", "MedicationStatement"):
            entry["resource"]["medicationReference"] = reference
    client = make_app(settings.with_overrides(today=date(2025, 7, 1))).test_client()
    context = {"userId": "Practitioner/u", "patientId": PATIENT}
    assert "STAT-01" not in {topic for topic, _ in _cards(client, "patient-view", context, record)}


def test_an_unfinished_draft_gets_its_card_but_no_update_and_is_counted(
    json_lines: io.StringIO, settings: Settings, make_app: Callable[[Settings], Flask]
) -> None:
    """rules.md r2: DOSE-02 fires on a draft without ``subject`` (R4 requires one); its update
    would re-emit that draft, so the R4B model refuses it and the card says so instead."""
    scenario = json.loads((OWN_SCENARIOS / "r2-dose-one-dose-per-draft.json").read_text())
    client = make_app(
        settings.with_overrides(today=date.fromisoformat(scenario["today"]))
    ).test_client()

    def dose02(context: dict[str, Any]) -> dict[str, Any]:
        (service,) = [s for s in services_for_hook("order-sign") if "DOSE-02" in s.rules]
        body = {"hook": "order-sign", "hookInstance": str(uuid.uuid4()), "context": context,
                "prefetch": build_prefetch(service, context, scenario["record"])}
        response = _post(client, service.id, body)
        assert response.status_code == 200, response.get_json()
        (card,) = [c for c in response.get_json()["cards"]
                   if c["source"]["topic"]["code"] == "DOSE-02"]
        return card

    finished = dose02(scenario["context"])
    assert [a["type"] for s in finished["suggestions"] for a in s["actions"]] == ["update"]
    unfinished_context = copy.deepcopy(scenario["context"])
    del unfinished_context["draftOrders"]["entry"][0]["resource"]["subject"]
    unfinished = dose02(unfinished_context)
    assert "suggestions" not in unfinished
    assert "not offered as an action" in unfinished["detail"]
    assert "would not be valid FHIR R4" in unfinished["detail"].replace("\\", "")
    lines = [json.loads(t) for t in json_lines.getvalue().splitlines()]
    calls = [r for r in lines if r["logger"] == "myocds.call"]
    assert [c.get("flawed_drafts") for c in calls] == [0, 1]
