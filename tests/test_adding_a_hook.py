"""Adding a hook is one declaration plus its rules and templates.

A toy hook, ``encounter-discharge``, is declared here and nowhere in the package: its
``HookDeclaration``, one rule (``@rule``) in its own area, a service running it, and the rule's
card template (with its concept in a copy of the advice CodeSystem). A temporary app built on that
catalogue announces the service in discovery, validates a call with the hook's own context
requirements, answers it over HTTP with the rule's card, and the try-it request builder makes the
call an EHR would send.
"""

from __future__ import annotations

import json
import shutil
from datetime import date
from pathlib import Path
from typing import Any, cast

import pytest
from flask.testing import FlaskClient

from cds_service import create_app
from cds_service.advice import RULES, Advice, Area
from cds_service.advice.common import ck_values, fired
from cds_service.advice.registry import declaration, rule
from cds_service.cards_render import load_templates
from cds_service.cards_render.templates import DEFAULT_CARDS_DIR, DEFAULT_MAPPINGS_DIR
from cds_service.catalogue import Catalogue
from cds_service.errors import ConfigurationError
from cds_service.hooks import HOOKS, HookDeclaration, HookName
from cds_service.record.model import PatientRecord
from cds_service.record.series import latest
from cds_service.services import SERVICES, ServiceDeclaration
from cds_service.settings import ClinicalSettings, Settings
from cds_service.tryit.examples import View, load_examples, requests_for

DISCHARGE = "encounter-discharge"
RULE_ID = "DISCH-01"
DISPLAY = "Discharge: latest CK"
EXAMPLE = "statin-ck-over-10x"  # a shipped example patient with CK results

# --- the four declarations --------------------------------------------------------------------

TOY_HOOK = HookDeclaration(
    name=DISCHARGE,
    title="Encounter discharge",
    fields=("userId", "patientId", "encounterId"),
    required=("userId", "patientId"),  # stricter than the shipped hooks: userId is needed here
)


@rule(RULE_ID, hooks={DISCHARGE}, area="discharge")
def latest_ck_at_discharge(
    record: PatientRecord, today: date, clinical: ClinicalSettings, hook: str
) -> Advice | None:
    """DISCH-01: say the latest CK at discharge."""
    ck = latest(record.ck)
    if ck is None:
        return None
    return Advice(rule_id=RULE_ID, indicator="info", values=ck_values(ck))


def evaluate_discharge(
    record: PatientRecord, today: date, clinical: ClinicalSettings, hook: str
) -> list[Advice]:
    return fired((latest_ck_at_discharge,), record, today, clinical, hook)


TOY_AREA = Area(
    "discharge", evaluate_discharge, (cast(Any, declaration(latest_ck_at_discharge)),)
)
TOY_SERVICE = ServiceDeclaration(
    id="discharge-check",
    hook=cast(HookName, DISCHARGE),
    title="CK at discharge",
    description="Says the latest CK when a patient is discharged.",
    prefetch_keys=("patient", "observations"),
    rules=(RULE_ID,),
)
TEMPLATE = {
    "rule": RULE_ID,
    "display": DISPLAY,
    "hooks": [DISCHARGE],
    "indicator": "info",
    "summary": "Latest CK before discharge: {ck} U/L = {ck_x_uln}×ULN on {ck_date}",
    "reasoning": "The latest CK, {ck} U/L on {ck_date}, is {ck_x_uln}× the upper limit.",
    "sources": ["EAS15"],
    "overrideReasons": [{"code": "acknowledged", "display": "Noted, no action needed"}],
}


def toy_catalogue() -> Catalogue:
    return Catalogue(HOOKS.plus(TOY_HOOK), RULES.plus(TOY_AREA), (*SERVICES, TOY_SERVICE))


def templates_with(tmp_path: Path, template: dict[str, Any]) -> Any:
    """The shipped card templates plus ``template``, its concept added to a copy of the advice
    CodeSystem."""
    cards = tmp_path / "cards"
    shutil.copytree(DEFAULT_CARDS_DIR, cards)
    (cards / f"{RULE_ID}.json").write_text(json.dumps(template), encoding="utf-8")
    mappings = tmp_path / "fhir_mappings"
    shutil.copytree(DEFAULT_MAPPINGS_DIR, mappings)
    codesystem_path = mappings / "CodeSystem-myocds-advice.json"
    codesystem = json.loads(codesystem_path.read_text(encoding="utf-8"))
    codesystem["concept"].append({"code": RULE_ID, "display": DISPLAY})
    codesystem["count"] = len(codesystem["concept"])
    codesystem_path.write_text(json.dumps(codesystem), encoding="utf-8")
    return load_templates(cards, mappings_dir=mappings)


@pytest.fixture
def toy_client(settings: Settings, tmp_path: Path) -> FlaskClient:
    catalogue = toy_catalogue()
    app = create_app(settings, catalogue=catalogue, templates=templates_with(tmp_path, TEMPLATE))
    return app.test_client()


def discharge_request(today: date) -> dict[str, Any]:
    """The call the try-it request builder makes for an example patient on the toy hook."""
    example = load_examples().get(EXAMPLE)
    view = View(example, DISCHARGE, example.draft, toy_catalogue().hooks)
    [(service, body)] = requests_for(view, today, toy_catalogue().services)
    assert service is TOY_SERVICE
    return body


# --- what it shows ----------------------------------------------------------------------------


def test_discovery_announces_the_new_hooks_service(toy_client: FlaskClient) -> None:
    services = toy_client.get("/cds-services").get_json()["services"]
    [entry] = [s for s in services if s["id"] == "discharge-check"]
    assert entry["hook"] == DISCHARGE
    assert set(entry["prefetch"]) == {"patient", "observations"}
    assert len(services) == len(SERVICES) + 1  # the shipped ones are all still there


def test_try_it_request_builder_makes_the_hooks_call() -> None:
    example = load_examples().get(EXAMPLE)
    body = discharge_request(example.today)
    assert body["hook"] == DISCHARGE
    assert body["context"] == {"userId": "Practitioner/try-it", "patientId": example.patient_id}
    assert set(body["prefetch"]) == {"patient", "observations"}
    observations = body["prefetch"]["observations"]["entry"]
    assert observations, "the prefetch ran the service's own template over the example"


def test_the_try_it_page_offers_the_hook_and_its_call_gets_the_card(
    toy_client: FlaskClient,
) -> None:
    page = toy_client.get("/try", query_string={"example": EXAMPLE, "hook": DISCHARGE})
    assert page.status_code == 200
    assert 'value="encounter-discharge"' in page.get_data(as_text=True)
    built = toy_client.get("/try/request", query_string={"example": EXAMPLE, "hook": DISCHARGE})
    assert built.status_code == 200
    [call] = built.get_json()["calls"]
    assert call["serviceId"] == "discharge-check"
    response = toy_client.post(call["path"], json=call["request"])
    assert response.status_code == 200, response.get_json()
    assert [c["source"]["topic"]["code"] for c in response.get_json()["cards"]] == [RULE_ID]


def test_a_call_on_the_new_hook_gets_the_rules_card(
    toy_client: FlaskClient, settings: Settings
) -> None:
    example = load_examples().get(EXAMPLE)
    body = discharge_request(example.today)
    response = toy_client.post("/cds-services/discharge-check", json=body)
    assert response.status_code == 200, response.get_json()
    [card] = response.get_json()["cards"]
    assert card["source"]["topic"]["code"] == RULE_ID
    assert card["summary"].startswith("Latest CK before discharge: ")
    assert card["indicator"] == "info"
    # The shipped services still answer their own hooks in the same app.
    pv = requests_for(View(example, "patient-view", example.draft), example.today)
    for service, shipped in pv:
        assert toy_client.post(f"/cds-services/{service.id}", json=shipped).status_code == 200


def test_the_new_hooks_context_requirements_are_validated(toy_client: FlaskClient) -> None:
    example = load_examples().get(EXAMPLE)
    body = discharge_request(example.today)
    del body["context"]["userId"]
    response = toy_client.post("/cds-services/discharge-check", json=body)
    assert response.status_code == 400
    assert response.get_json()["issue"][0]["expression"] == ["context.userId"]


def test_the_new_hook_is_unknown_to_the_shipped_app(client: FlaskClient) -> None:
    body = discharge_request(load_examples().get(EXAMPLE).today)
    assert client.post("/cds-services/discharge-check", json=body).status_code == 404


def test_a_template_disagreeing_with_its_rule_stops_start_up(
    settings: Settings, tmp_path: Path
) -> None:
    wrong = {**TEMPLATE, "hooks": [DISCHARGE, "patient-view"]}
    with pytest.raises(ConfigurationError) as raised:
        create_app(settings, catalogue=toy_catalogue(), templates=templates_with(tmp_path, wrong))
    assert f"rule {RULE_ID}: its card template's hooks" in str(raised.value)


def test_a_rule_no_service_runs_stops_start_up(settings: Settings, tmp_path: Path) -> None:
    catalogue = Catalogue(HOOKS.plus(TOY_HOOK), RULES.plus(TOY_AREA), SERVICES)
    with pytest.raises(ConfigurationError) as raised:
        create_app(settings, catalogue=catalogue, templates=templates_with(tmp_path, TEMPLATE))
    assert f"rule {RULE_ID} answers {DISCHARGE} but no {DISCHARGE} service runs it" in str(
        raised.value
    )
