"""Sandbox-ready with authentication on: requests replayed exactly as the CDS Hooks Sandbox sends
them (clients.md §1), through the HTTP app, with only ``MYOCDS_TRUST_SANDBOX=on`` set.

What is replayed, per hook: the CORS preflight; an ES384 JWT with the Sandbox's header (``kid``,
``jku``, ``typ``) and claims (``iss``, ``aud`` = the URL called, ``exp`` = ``iat`` + 300, ``jti``,
no ``sub``); no ``fhirAuthorization``; no ``encounterId``; ``userId``
``Practitioner/COREPRACTITIONER1``; ``prefetch`` partly missing (the keys its FHIR server could not
answer are dropped, or the whole member when none could), so the service falls back to
``fhirServer`` (a local FHIR test server holding the patient); the drafts as its default DSTU2
server makes them (``MedicationOrder`` ``order-123``, ``dateWritten``, ``patient``, DSTU2
``doseQuantity`` and ``periodUnits``, the non-array ``category`` and ``intent`` it adds with a
supply duration), in a ``draftOrders`` Bundle without ``type``; Rx View's ``selections`` naming
``MedicationOrder/order-123``; then the feedback it sends on Dismiss and on a taken suggestion.

The Sandbox's private key is public but is not shipped here: the issuer entry is the shipped
``cds_service/data/sandbox-issuer.json`` with its key swapped for one made by the test (same
``kid``), and the local FHIR server added to its ``fhirServers``. The shipped key itself is checked
by tests/protocol/test_jwt_verification.py and against clients.md below.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask
from jwt.algorithms import ECAlgorithm

from cds_service.demo.search import build_prefetch
from cds_service.protocol import auth
from cds_service.services import find_service
from cds_service.settings import Settings
from cds_service.tryit.examples import load_examples
from tests.support.fhir_server import FhirTestServer

SANDBOX_ISS = "https://sandbox.cds-hooks.org"
SANDBOX_ORIGIN = "https://sandbox.cds-hooks.org"
SANDBOX_JKU = "https://sandbox.cds-hooks.org/.well-known/jwks.json"
SANDBOX_KID = "44823f3d-0b01-4a6c-a80e-b9d3e8a7226f"
SANDBOX_USER = "Practitioner/COREPRACTITIONER1"
BASE = "http://localhost"  # the test client's root URL: the JWT aud is built on it
CLIENTS_MD = Path(__file__).resolve().parents[2].parent / "shared" / "knowledge" / "clients.md"
SHIPPED = load_examples()
TODAY = date(2025, 7, 1)


class SandboxSigner:
    """Signs as the Sandbox's jwt-generator.js does, with a key made for the test."""

    def __init__(self) -> None:
        self.private = ec.generate_private_key(ec.SECP384R1())
        self.jwk = json.loads(ECAlgorithm.to_jwk(self.private.public_key()))
        self.jwk.update(kid=SANDBOX_KID, use="sig", alg="ES384")

    def token(self, aud: str) -> str:
        now = int(time.time())
        claims = {"iss": SANDBOX_ISS, "aud": aud, "exp": now + 300, "iat": now,
                  "jti": str(uuid.uuid4())}
        headers = {"kid": SANDBOX_KID, "jku": SANDBOX_JKU, "typ": "JWT"}
        return jwt.encode(claims, self.private, algorithm="ES384", headers=headers)

    def headers(self, path: str) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.token(BASE + path)}",
            "Origin": SANDBOX_ORIGIN,
            "Accept": "application/json",
        }


@pytest.fixture(scope="module")
def signer() -> SandboxSigner:
    return SandboxSigner()


@pytest.fixture
def fhir_server() -> Iterator[FhirTestServer]:
    server = FhirTestServer().start()
    yield server
    server.stop()


@pytest.fixture
def sandbox_issuer_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, signer: SandboxSigner,
    fhir_server: FhirTestServer,
) -> Path:
    """The shipped Sandbox issuer entry, its key swapped for the test's, the local server added."""
    document = json.loads(auth.SANDBOX_ISSUER_FILE.read_text())
    (entry,) = document["issuers"]
    assert entry["iss"] == SANDBOX_ISS and entry["jku"] == [SANDBOX_JKU]
    assert [k["kid"] for k in entry["jwks"]["keys"]] == [SANDBOX_KID]
    entry["jwks"] = {"keys": [signer.jwk]}
    entry["fhirServers"] = [*entry["fhirServers"], fhir_server.base_url]
    path = tmp_path / "sandbox-issuer.json"
    path.write_text(json.dumps(document))
    monkeypatch.setattr(auth, "SANDBOX_ISSUER_FILE", path)
    return path


@pytest.fixture
def sandbox_settings(settings: Settings, fhir_server: FhirTestServer,
                     sandbox_issuer_file: Path) -> Settings:
    """Production defaults (auth on, pages off) plus the one setting, the clinical date pinned
    and the loopback FHIR server allowed over http (a real Sandbox server is https)."""
    return settings.with_overrides(
        auth="required", sandbox_issuer=True, today=TODAY,
        fhir_allow=(fhir_server.base_url,),
    )


@pytest.fixture
def sandbox_app(make_app: Callable[[Settings], Flask], sandbox_settings: Settings) -> Flask:
    return make_app(sandbox_settings)


def dstu2_draft(patient_id: str, rxnorm: str, name: str, *, supply: bool) -> dict[str, Any]:
    """createFhirResource() of the Sandbox's medication reducer with its default DSTU2 server."""
    draft: dict[str, Any] = {
        "resourceType": "MedicationOrder",
        "id": "order-123",
        "status": "draft",
        "patient": {"reference": f"Patient/{patient_id}"},
        "dateWritten": TODAY.isoformat(),
        "dosageInstruction": [{
            "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnits": "d"}},
            "doseQuantity": {"value": 1, "system": "http://unitsofmeasure.org", "code": "{pill}"},
        }],
        "medicationCodeableConcept": {
            "text": name,
            "coding": [{"display": name, "system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                        "code": rxnorm}],
        },
    }
    if supply:
        # With a supply duration (Rx Sign) it adds intent and a category that is one object.
        draft["dispenseRequest"] = {"expectedSupplyDuration": {
            "value": 30, "unit": "days", "system": "http://unitsofmeasure.org", "code": "d"}}
        draft["intent"] = "order"
        draft["category"] = {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/medicationrequest-category",
            "code": "community"}]}
    return draft


def r4_draft(patient_id: str, rxnorm: str, name: str) -> dict[str, Any]:
    """The same with an R4 server (``?fhirServiceUrl=.../r4/fhir``): a MedicationRequest."""
    return {
        "resourceType": "MedicationRequest",
        "id": "request-123",
        "status": "draft",
        "intent": "proposal",
        "subject": {"reference": f"Patient/{patient_id}"},
        "authoredOn": TODAY.isoformat(),
        "dosageInstruction": [{
            "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
            "doseAndRate": [{"doseQuantity": {
                "value": 1, "system": "http://unitsofmeasure.org", "code": "{pill}"}}],
        }],
        "medicationCodeableConcept": {
            "text": name,
            "coding": [{"display": name, "system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                        "code": rxnorm}],
        },
    }


def sandbox_body(hook: str, context: dict[str, Any], fhir_server: FhirTestServer,
                 prefetch: dict[str, Any] | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "hookInstance": str(uuid.uuid4()),
        "hook": hook,
        "fhirServer": fhir_server.base_url,
        "context": context,
    }
    if prefetch:  # the whole member is omitted when nothing could be fetched
        body["prefetch"] = prefetch
    return body


def post(client: Any, signer: SandboxSigner, path: str, body: dict[str, Any]) -> Any:
    preflight = client.options(path, headers={
        "Origin": SANDBOX_ORIGIN, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type"})
    assert preflight.status_code == 204
    assert "authorization" in preflight.headers["Access-Control-Allow-Headers"].lower()
    response = client.post(path, data=json.dumps(body), content_type="application/json",
                           headers=signer.headers(path))
    assert response.headers.get("Access-Control-Allow-Origin") in ("*", SANDBOX_ORIGIN)
    return response


def topics(response: Any) -> set[tuple[str, str]]:
    return {(c["source"]["topic"]["code"], c["indicator"]) for c in response.get_json()["cards"]}


def test_discovery_as_the_sandbox_fetches_it(sandbox_app, signer):
    client = sandbox_app.test_client()
    response = client.get("/cds-services", headers=signer.headers("/cds-services"))
    assert response.status_code == 200
    assert len(response.get_json()["services"]) >= 1  # zero services is a failure to the Sandbox
    assert response.headers["Access-Control-Allow-Origin"] in ("*", SANDBOX_ORIGIN)
    # The Sandbox builds each service URL as discovery URL + "/" + id.
    assert client.get("/cds-services//myopathy-review").status_code == 404


def test_patient_view_with_a_prefetch_key_missing(sandbox_app, signer, fhir_server):
    example = SHIPPED.get("statin-ck-over-10x")
    fhir_server.record = dict(example.record)
    service = find_service("myopathy-review", "patient-view")
    context = {"userId": SANDBOX_USER, "patientId": example.patient_id}
    prefetch = build_prefetch(service, context, example.record)
    del prefetch["medicationRequests"]  # a DSTU2 server cannot answer MedicationRequest?...
    response = post(sandbox_app.test_client(), signer, "/cds-services/myopathy-review",
                    sandbox_body("patient-view", context, fhir_server, prefetch))
    assert response.status_code == 200, response.get_json()
    assert topics(response) == {("STAT-01", "critical"), ("STAT-02", "critical")}
    # The missing key came from fhirServer, without a token (the Sandbox sends none).
    assert fhir_server.paths() == ["MedicationRequest"]
    assert all(r.authorization is None for r in fhir_server.requests)


@pytest.mark.parametrize("server_version", ["DSTU2", "R4"])
def test_rx_view_order_select_with_its_draft_and_no_prefetch(sandbox_app, signer, fhir_server,
                                                             server_version):
    example = SHIPPED.get("statin-rechallenge-too-soon")
    fhir_server.record = dict(example.record)
    name = "rosuvastatin calcium 10 MG Oral Tablet"
    if server_version == "DSTU2":
        draft = dstu2_draft(example.patient_id, "859747", name, supply=False)
    else:
        draft = r4_draft(example.patient_id, "859747", name)
    context = {
        "userId": SANDBOX_USER,
        "patientId": example.patient_id,
        # generateContext() of rx-view.jsx: `${resource.resourceType}/${resource.id}`
        "selections": [f"{draft['resourceType']}/{draft['id']}"],
        "draftOrders": {"resourceType": "Bundle", "entry": [{"resource": draft}]},
    }
    client = sandbox_app.test_client()
    statin = post(client, signer, "/cds-services/statin-order-select",
                  sandbox_body("order-select", context, fhir_server, None))
    assert statin.status_code == 200, statin.get_json()
    # STAT-06 fires only on a drafted statin: the selection named the draft.
    assert topics(statin) == {("STAT-06", "warning")}
    ivig = post(client, signer, "/cds-services/ivig-order-select",
                sandbox_body("order-select", context, fhir_server, None))
    assert ivig.status_code == 200 and ivig.get_json() == {"cards": []}
    fetched = set(fhir_server.paths())
    assert {"Patient/" + example.patient_id, "Observation", "MedicationRequest"} <= fetched


def test_rx_sign_order_sign_with_category_object(sandbox_app, signer, fhir_server):
    example = SHIPPED.get("statin-ck-4-to-10x")
    fhir_server.record = dict(example.record)
    draft = dstu2_draft(example.patient_id, "617311", "atorvastatin 40 MG Oral Tablet",
                        supply=True)
    context = {"userId": SANDBOX_USER, "patientId": example.patient_id,
               "draftOrders": {"resourceType": "Bundle", "entry": [{"resource": draft}]}}
    service = find_service("statin-order-check", "order-sign")
    prefetch = build_prefetch(service, context, example.record)
    del prefetch["medicationRequests"], prefetch["conditions"]
    response = post(sandbox_app.test_client(), signer, "/cds-services/statin-order-check",
                    sandbox_body("order-sign", context, fhir_server, prefetch))
    assert response.status_code == 200, response.get_json()
    cards = response.get_json()["cards"]
    assert topics(response) == {("STAT-03", "warning")}
    assert sorted(fhir_server.paths()) == ["Condition", "MedicationRequest"]
    # The Sandbox applies only suggestions that carry a uuid, and lets a card be dismissed only
    # with a uuid: both present.
    assert all(c.get("uuid") for c in cards)
    assert all(s.get("uuid") for c in cards for s in c.get("suggestions", []))


def test_feedback_as_the_sandbox_sends_it(sandbox_app, signer, fhir_server):
    example = SHIPPED.get("statin-ck-4-to-10x")
    fhir_server.record = dict(example.record)
    service = find_service("statin-order-check", "order-sign")
    draft = dstu2_draft(example.patient_id, "617311", "atorvastatin 40 MG Oral Tablet",
                        supply=True)
    context = {"userId": SANDBOX_USER, "patientId": example.patient_id,
               "draftOrders": {"resourceType": "Bundle", "entry": [{"resource": draft}]}}
    client = sandbox_app.test_client()
    cards = post(client, signer, "/cds-services/statin-order-check",
                 sandbox_body("order-sign", context, fhir_server,
                              build_prefetch(service, context, example.record))
                 ).get_json()["cards"]
    (card,) = cards
    suggestion = card["suggestions"][0]
    now = "2025-07-01T10:00:00Z"
    dismissed = {"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": now,
                 "overrideReason": {"reason": {"code": card["overrideReasons"][0]["code"]}}}
    accepted = {"card": card["uuid"], "outcome": "accepted", "outcomeTimestamp": now,
                "acceptedSuggestions": [{"id": suggestion["uuid"]}]}
    for item in (dismissed, accepted):
        response = post(client, signer, "/cds-services/statin-order-check/feedback",
                        {"feedback": [item]})
        assert response.status_code == 200, response.get_json()
        assert response.get_json() == {}


def test_without_the_setting_the_same_calls_are_refused(make_app, sandbox_settings, signer):
    client = make_app(sandbox_settings.with_overrides(sandbox_issuer=False)).test_client()
    response = client.get("/cds-services", headers=signer.headers("/cds-services"))
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_a_token_for_another_url_is_refused(sandbox_app, signer):
    client = sandbox_app.test_client()
    headers = signer.headers("/cds-services/statin-order-check")  # aud: another URL
    assert client.get("/cds-services", headers=headers).status_code == 401


def test_the_setting_allows_the_sandbox_origin_when_origins_are_restricted(
    make_app, sandbox_settings, signer
):
    restricted = sandbox_settings.with_overrides(cors_origins=("https://ehr.example.org",))
    client = make_app(restricted).test_client()
    response = client.get("/cds-services", headers=signer.headers("/cds-services"))
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == SANDBOX_ORIGIN
    other = client.get("/cds-services", headers={
        **signer.headers("/cds-services"), "Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers
    off = make_app(restricted.with_overrides(sandbox_issuer=False)).test_client()
    preflight = off.options("/cds-services", headers={
        "Origin": SANDBOX_ORIGIN, "Access-Control-Request-Method": "GET"})
    assert "Access-Control-Allow-Origin" not in preflight.headers


def test_the_pages_stay_off_in_this_configuration(sandbox_app):
    assert sandbox_app.test_client().get("/try").status_code == 404


def test_shipped_sandbox_key_is_the_one_clients_md_records():
    if not CLIENTS_MD.is_file():
        pytest.skip(f"{CLIENTS_MD} not found")
    text = CLIENTS_MD.read_text()
    match = re.search(r'`(\{"keys":\[\{"kty":"EC".*?\}\]\})`', text, re.DOTALL)
    assert match, "clients.md no longer quotes the Sandbox JWKS"
    published = json.loads(re.sub(r"\s+", "", match.group(1)))
    shipped = json.loads(auth.SANDBOX_ISSUER_FILE.read_text())["issuers"][0]["jwks"]
    assert shipped == published


def sandbox_configured_services(discovery: dict[str, Any], discovery_url: str) -> dict[str, str]:
    """What the Sandbox keeps of a discovery document: services by `${discoveryUrl}/${id}`, a
    later entry with the same id replacing an earlier one (cds-services-reducers.js)."""
    configured: dict[str, str] = {}
    for service in discovery["services"]:
        configured[f"{discovery_url}/{service['id']}"] = service["hook"]
    return configured


def test_the_sandbox_reaches_every_hook_the_service_declares(sandbox_app, signer):
    client = sandbox_app.test_client()
    discovery = client.get("/cds-services", headers=signer.headers("/cds-services")).get_json()
    declared = {(s["id"], s["hook"]) for s in discovery["services"]}
    kept = sandbox_configured_services(discovery, BASE + "/cds-services")
    reachable = {(url.rsplit("/", 1)[1], hook) for url, hook in kept.items()}
    assert reachable == declared


# --- the Sandbox's opening calls (issue 11, rules.md r2 "Drafted") -----------------------------


def opened_draft(patient_id: str, server_version: str) -> dict[str, Any]:
    """What Rx View sends as soon as it opens, before a medication is picked: a draft with no
    medication and no intent (as a DSTU2 MedicationOrder or an R4 MedicationRequest)."""
    timing = {"repeat": {"frequency": 1, "period": 1}}
    if server_version == "DSTU2":
        return {"resourceType": "MedicationOrder", "id": "order-123", "status": "draft",
                "patient": {"reference": f"Patient/{patient_id}"},
                "dateWritten": TODAY.isoformat(),
                "dosageInstruction": [{"timing": timing}]}
    return {"resourceType": "MedicationRequest", "id": "request-123", "status": "draft",
            "subject": {"reference": f"Patient/{patient_id}"},
            "authoredOn": TODAY.isoformat(), "dosageInstruction": [{"timing": timing}]}


@pytest.mark.parametrize("server_version", ["DSTU2", "R4"])
def test_rx_view_and_rx_sign_opening_calls_are_answered_200(sandbox_app, signer, fhir_server,
                                                             server_version):
    """Rx View opens with a draft that has no medication and no intent; Rx Sign opens with no
    draftOrders at all; then a DSTU2 or R4 draft with the medication picked. Every call to every
    order service is 200, with the cards the record gives on that hook (active atorvastatin,
    CK 4-10x ULN: STAT-03), and the unfinished draft adds none."""
    example = SHIPPED.get("statin-ck-4-to-10x")
    fhir_server.record = dict(example.record)
    client = sandbox_app.test_client()
    draft = opened_draft(example.patient_id, server_version)
    opened = {"userId": SANDBOX_USER, "patientId": example.patient_id,
              "selections": [f"{draft['resourceType']}/{draft['id']}"],
              "draftOrders": {"resourceType": "Bundle", "entry": [{"resource": draft}]}}
    sign_opened = {"userId": SANDBOX_USER, "patientId": example.patient_id}
    picked = dstu2_draft(example.patient_id, "617311", "atorvastatin 40 MG Oral Tablet",
                         supply=True) if server_version == "DSTU2" else r4_draft(
        example.patient_id, "617311", "atorvastatin 40 MG Oral Tablet")
    signed = {"userId": SANDBOX_USER, "patientId": example.patient_id,
              "draftOrders": {"resourceType": "Bundle", "entry": [{"resource": picked}]}}
    calls = [
        ("order-select", "statin-order-select", opened, {("STAT-03", "warning")}),
        ("order-select", "ivig-order-select", opened, set()),
        ("order-sign", "statin-order-check", sign_opened, {("STAT-03", "warning")}),
        ("order-sign", "ivig-order-check", sign_opened, set()),
        ("order-sign", "statin-order-check", signed, {("STAT-03", "warning")}),
        ("order-sign", "ivig-order-check", signed, set()),
    ]
    for hook, service_id, context, expected in calls:
        for prefetched in (False, True):
            service = find_service(service_id, hook)
            assert service is not None
            prefetch = build_prefetch(service, context, example.record) if prefetched else None
            response = post(client, signer, f"/cds-services/{service_id}",
                            sandbox_body(hook, context, fhir_server, prefetch))
            assert response.status_code == 200, (service_id, response.get_json())
            assert topics(response) == expected, (service_id, context)
