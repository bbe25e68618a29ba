"""``gather`` against a mocked FHIR server (``respx``, the ``responses`` of httpx, which the FHIR
client is built on): what is fetched, how, and what fails.

The mock answers with ``cds_service.demo.search`` over a small record, like a real server would,
unless a test registers a specific answer.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import respx

from cds_service.demo.search import build_prefetch, search
from cds_service.errors import DataUnavailable, FhirServerRefused, Unprocessable
from cds_service.fhir import client as client_module
from cds_service.fhir.gather import gather
from cds_service.services import LOINC, ServiceDeclaration
from cds_service.settings import Settings
from tests.fhir.conftest import declared_service

BASE = "https://fhir.test.example/r4"
TOKEN = "secret-token-123"
PATIENT_ID = "pat-9f3"


SERVICE = declared_service("myopathy-review", "patient-view")


def _obs(ident: str, code: str, when: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": ident,
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
        "effectiveDateTime": when,
        "valueQuantity": {"value": 250, "unit": "U/L"},
    }


def _med_request(ident: str, **medication: Any) -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "id": ident,
        "status": "active",
        "intent": "order",
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
        **(medication or {"medicationCodeableConcept": {"text": "atorvastatin 40 mg"}}),
    }


RECORD: dict[str, Any] = {
    "resourceType": "Bundle",
    "type": "collection",
    "entry": [
        {"resource": {"resourceType": "Patient", "id": PATIENT_ID, "gender": "male"}},
        {"resource": _obs("ck1", "2157-6", "2025-01-02")},
        {"resource": _obs("ck2", "2157-6", "2025-02-02")},
        {"resource": _obs("ck3", "2157-6", "2025-03-02")},
        {"resource": _obs("wt", "29463-7", "2025-03-01")},
        {"resource": _med_request("mr1")},
    ],
}
CONTEXT = {"patientId": PATIENT_ID, "userId": "Practitioner/u1"}


@pytest.fixture
def settings() -> Settings:
    return Settings().with_overrides(
        auth="off", fhir_allow=(BASE,), fhir_timeout_seconds=1.0, hook_deadline_seconds=2.0
    )


@pytest.fixture
def server() -> Iterator[respx.MockRouter]:
    """A mocked fhirServer answering from RECORD; specific answers registered by a test win."""
    with respx.mock(assert_all_called=False) as mock:
        yield mock


def _serve_record(mock: respx.MockRouter, record: dict[str, Any] = RECORD) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        relative = str(request.url)[len(BASE) + 1 :]
        result = search(record, relative, base=BASE)
        if result is None:
            return httpx.Response(404, json={"resourceType": "OperationOutcome", "issue": []})
        headers = {"Content-Type": "application/fhir+json"}
        return httpx.Response(200, headers=headers, content=json.dumps(result))

    mock.get(url__startswith=BASE + "/").mock(side_effect=answer)


def _answer(route: respx.Route, answer: dict[str, Any]) -> None:
    """``{"status", "json", "body", "headers"}`` as the response, or ``{"error": exc}`` raised."""
    if "error" in answer:
        route.mock(side_effect=answer["error"])
        return
    route.respond(
        status_code=answer.get("status", 200),
        headers=answer.get("headers"),
        **({"json": answer["json"]} if "json" in answer else {"text": answer.get("body", "")}),
    )


def _body(prefetch: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "hook": "patient-view",
        "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "fhirServer": BASE,
        "context": copy.deepcopy(CONTEXT),
    }
    if prefetch is not None:
        body["prefetch"] = prefetch
    body.update(extra)
    return body


def _full_prefetch(service: ServiceDeclaration = SERVICE) -> dict[str, Any]:
    return build_prefetch(service, CONTEXT, RECORD)


def _paths(mock: respx.MockRouter) -> list[str]:
    return [urlsplit(str(c.request.url)).path.removeprefix("/r4/") for c in mock.calls]


def _ids(resources: Any, resource_type: str) -> list[str]:
    return [r["id"] for r in resources if r["resourceType"] == resource_type]


# -- prefetch as sent --------------------------------------------------------------------------


def test_complete_prefetch_needs_no_request(
    server: respx.MockRouter, settings: Settings
) -> None:
    data = gather(SERVICE, _body(_full_prefetch()), settings)
    assert len(server.calls) == 0
    assert data.stats.fetches == 0 and data.stats.keys_fetched == ()
    assert _ids(data.resources, "Observation") == ["ck3", "wt", "ck2", "ck1"]
    assert _ids(data.resources, "Patient") == [PATIENT_ID]


def test_null_means_no_data_and_is_not_fetched(
    server: respx.MockRouter, settings: Settings
) -> None:
    prefetch = _full_prefetch()
    prefetch["observations"] = None
    prefetch["patient"] = None
    data = gather(SERVICE, _body(prefetch), settings)
    assert len(server.calls) == 0
    assert _ids(data.resources, "Observation") == [] and _ids(data.resources, "Patient") == []


# -- fallback fetch ----------------------------------------------------------------------------


def test_absent_key_is_fetched_with_the_bearer_token(
    server: respx.MockRouter, settings: Settings
) -> None:
    _serve_record(server)
    prefetch = _full_prefetch()
    del prefetch["observations"]
    body = _body(prefetch, fhirAuthorization={"access_token": TOKEN, "token_type": "Bearer"})
    data = gather(SERVICE, body, settings)
    assert _paths(server) == ["Observation"]
    request = server.calls[0].request
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert "fhir+json" in request.headers["Accept"]
    query = parse_qs(urlsplit(str(request.url)).query)
    assert query["patient"] == [PATIENT_ID]
    assert query["_sort"] == ["-date"]
    assert f"{LOINC}|2157-6" in query["code"][0].split(",")
    assert _ids(data.resources, "Observation") == ["ck3", "wt", "ck2", "ck1"]
    assert data.stats.fetches == 1 and data.stats.keys_fetched == ("observations",)


def test_without_fhir_authorization_no_authorization_header_is_sent(
    server: respx.MockRouter, settings: Settings
) -> None:
    _serve_record(server)
    data = gather(SERVICE, _body(), settings)  # no prefetch at all: every key fetched
    assert sorted(_paths(server)) == sorted(
        [
            f"Patient/{PATIENT_ID}",
            "Observation",
            "MedicationRequest",
            "MedicationAdministration",
            "MedicationStatement",
            "Condition",
        ]
    )
    assert all("Authorization" not in c.request.headers for c in server.calls)
    assert data.stats.keys_fetched == tuple(SERVICE.prefetch)
    # The same resources as a complete prefetch gives, in the same order.
    assert data.resources == gather(SERVICE, _body(_full_prefetch()), settings).resources


@pytest.mark.parametrize(
    "outcome_value",
    [
        {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "timeout"}]},
        {
            "resourceType": "Bundle",
            "type": "searchset",
            "entry": [
                {"resource": {"resourceType": "OperationOutcome", "issue": []}},
            ],
        },
    ],
    ids=["outcome", "bundle-with-outcome"],
)
def test_operation_outcome_value_is_treated_as_absent(
    server: respx.MockRouter, settings: Settings, outcome_value: dict
) -> None:
    _serve_record(server)
    prefetch = _full_prefetch()
    prefetch["observations"] = outcome_value
    data = gather(SERVICE, _body(prefetch), settings)
    assert _paths(server) == ["Observation"]
    assert len(_ids(data.resources, "Observation")) == 4


def test_read_answered_404_is_no_data(server: respx.MockRouter, settings: Settings) -> None:
    server.get(f"{BASE}/Patient/{PATIENT_ID}").respond(404, json={})
    prefetch = _full_prefetch()
    del prefetch["patient"]
    data = gather(SERVICE, _body(prefetch), settings)
    assert _ids(data.resources, "Patient") == []


# -- paging ------------------------------------------------------------------------------------


def _page(ids: list[str], next_url: str | None) -> dict[str, Any]:
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "link": [{"relation": "self", "url": "x"}],
        "entry": [{"resource": _obs(i, "2157-6", "2025-01-01")} for i in ids],
    }
    if next_url:
        bundle["link"].append({"relation": "next", "url": next_url})
    return bundle


def _register_pages(mock: respx.MockRouter, pages: int) -> None:
    for n in range(pages - 1, -1, -1):  # the first page's route, matching any query, comes last
        next_url = f"{BASE}/Observation?page={n + 1}" if n + 1 < pages else None
        page = _page([f"p{n}a", f"p{n}b"], next_url)
        if n:
            mock.get(f"{BASE}/Observation", params__contains={"page": str(n)}).respond(json=page)
        else:
            mock.get(f"{BASE}/Observation").respond(json=page)


def test_next_links_are_followed(server: respx.MockRouter, settings: Settings) -> None:
    _register_pages(server, 3)
    prefetch = _full_prefetch()
    del prefetch["observations"]
    data = gather(SERVICE, _body(prefetch), settings)
    assert len(server.calls) == 3
    assert _ids(data.resources, "Observation") == ["p0a", "p0b", "p1a", "p1b", "p2a", "p2b"]
    assert data.stats.truncated == ()


def test_paging_stops_at_the_page_cap_and_says_so(
    server: respx.MockRouter, settings: Settings
) -> None:
    _register_pages(server, 3)
    prefetch = _full_prefetch()
    del prefetch["observations"]
    data = gather(SERVICE, _body(prefetch), settings.with_overrides(fhir_page_cap=2))
    assert len(server.calls) == 2
    assert _ids(data.resources, "Observation") == ["p0a", "p0b", "p1a", "p1b"]
    assert data.stats.truncated == ("observations",)


def test_a_paged_prefetch_bundle_is_completed_from_the_server(
    server: respx.MockRouter, settings: Settings
) -> None:
    server.get(f"{BASE}/Observation").respond(json=_page(["p1a"], None))
    prefetch = _full_prefetch()
    prefetch["observations"] = _page(["p0a"], f"{BASE}/Observation?page=1")
    data = gather(SERVICE, _body(prefetch), settings)
    assert _paths(server) == ["Observation"]
    assert _ids(data.resources, "Observation") == ["p0a", "p1a"]


@pytest.mark.parametrize(
    "elsewhere",
    [
        "https://evil.example/r4/Observation?page=1",
        "https://fhir.test.example/other/Observation?page=1",
        "http://fhir.test.example/r4/Observation?page=1",
        "https://fhir.test.example/r4/../admin/Observation?page=1",
        "https://fhir.test.example/r4/..%2fadmin/Observation?page=1",  # decoded: r4/../admin
        "https://fhir.test.example/r4/%252e%252e/admin/Observation?page=1",  # encoded twice
        "https://fhir.test.example:8443/r4/Observation?page=1",
    ],
)
def test_next_link_off_the_fhir_server_is_refused(
    server: respx.MockRouter, settings: Settings, elsewhere: str
) -> None:
    server.get(f"{BASE}/Observation").respond(json=_page(["a"], elsewhere))
    prefetch = _full_prefetch()
    del prefetch["observations"]
    body = _body(prefetch, fhirAuthorization={"access_token": TOKEN})
    with pytest.raises(DataUnavailable, match="'observations'.*outside fhirServer"):
        gather(SERVICE, body, settings)
    assert len(server.calls) == 1  # the token never went to the other address


# -- failures ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ({"status": 401, "json": {}}, "refused access \\(HTTP 401\\)"),
        ({"status": 403, "json": {}}, "refused access \\(HTTP 403\\)"),
        ({"status": 500, "json": {}}, "HTTP 500"),
        ({"status": 503, "body": "busy"}, "HTTP 503"),
        ({"status": 404, "json": {"resourceType": "OperationOutcome"}}, "HTTP 404"),
        ({"status": 302, "headers": {"Location": "https://evil.example/"}}, "redirect"),
        ({"status": 200, "body": '{"resourceType": "Bundle", "entry": ['}, "not JSON"),
        ({"status": 200, "body": "<html>login</html>"}, "not JSON"),
        ({"status": 200, "json": {"resourceType": "Patient", "id": "x"}}, "a Patient where"),
        ({"status": 200, "json": [1, 2]}, "not a FHIR resource"),
        ({"status": 200, "json": {"resourceType": "OperationOutcome"}}, "an OperationOutcome"),
        (
            {"status": 200, "json": {"resourceType": "Bundle", "entry": "x"}},
            "malformed Bundle",
        ),
        ({"error": httpx.ConnectError("refused")}, "could not be reached"),
        ({"error": httpx.ReadTimeout("slow")}, "did not answer in time"),
    ],
)
def test_search_failures_are_412_naming_the_key_and_the_reason(
    server: respx.MockRouter, settings: Settings, answer: dict[str, Any], reason: str
) -> None:
    _answer(server.get(f"{BASE}/Observation"), answer)
    prefetch = _full_prefetch()
    del prefetch["observations"]
    body = _body(prefetch, fhirAuthorization={"access_token": TOKEN})
    with pytest.raises(DataUnavailable) as caught:
        gather(SERVICE, body, settings)
    message = caught.value.message
    assert "prefetch key 'observations'" in message
    assert re.search(reason, message), message
    assert caught.value.status == 412
    assert TOKEN not in message and PATIENT_ID not in message and "evil" not in message
    assert len(server.calls) == 1


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ({"status": 401, "json": {}}, "HTTP 401"),
        ({"status": 500, "json": {}}, "HTTP 500"),
        ({"status": 200, "json": {"resourceType": "Bundle"}}, "a Bundle where a Patient"),
        ({"status": 200, "json": {"resourceType": "Patient", "id": "other"}}, "different"),
    ],
)
def test_read_failures_are_412_naming_the_key(
    server: respx.MockRouter, settings: Settings, answer: dict[str, Any], reason: str
) -> None:
    _answer(server.get(f"{BASE}/Patient/{PATIENT_ID}"), answer)
    prefetch = _full_prefetch()
    del prefetch["patient"]
    with pytest.raises(DataUnavailable, match="prefetch key 'patient'") as caught:
        gather(SERVICE, _body(prefetch), settings)
    assert re.search(reason, caught.value.message), caught.value.message


def test_no_fhir_server_means_412_naming_the_missing_keys(settings: Settings) -> None:
    prefetch = _full_prefetch()
    del prefetch["observations"], prefetch["conditions"]
    body = _body(prefetch)
    del body["fhirServer"]
    with pytest.raises(DataUnavailable, match="'observations', 'conditions'.*no fhirServer"):
        gather(SERVICE, body, settings)


def test_fhir_server_refused_by_the_allow_list_is_412_before_any_request(
    server: respx.MockRouter,
) -> None:
    settings = Settings().with_overrides(auth="off")  # BASE not allow-listed; plain http refused
    body = _body(fhirServer="http://fhir.test.example/r4")
    with pytest.raises(FhirServerRefused, match="https") as caught:
        gather(SERVICE, body, settings)
    assert caught.value.status == 412
    assert len(server.calls) == 0


def test_template_that_cannot_be_filled_is_412(settings: Settings) -> None:
    body = _body(_full_prefetch())
    del body["prefetch"]["patient"]
    del body["context"]["patientId"]
    with pytest.raises(DataUnavailable, match="'patient'.*cannot be filled"):
        gather(SERVICE, body, settings)


def test_dot_segment_patient_id_is_not_requested(
    server: respx.MockRouter, settings: Settings
) -> None:
    body = _body()
    body["context"]["patientId"] = ".."
    with pytest.raises(DataUnavailable, match="'patient'"):
        gather(SERVICE, body, settings)
    assert all("/.." not in str(c.request.url) for c in server.calls)


def test_response_over_the_size_cap_is_refused(
    server: respx.MockRouter, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_module, "MAX_RESPONSE_BYTES", 100)
    server.get(f"{BASE}/Observation").respond(json=_page(["a", "b", "c"], None))
    prefetch = _full_prefetch()
    del prefetch["observations"]
    with pytest.raises(DataUnavailable, match="larger than the limit"):
        gather(SERVICE, _body(prefetch), settings)


# -- prefetch content the client got wrong ---------------------------------------------------


def test_flawed_resources_are_kept_and_counted_from_every_source(
    server: respx.MockRouter, settings: Settings
) -> None:
    """rules.md r2: an element no rule reads never hides a resource, whether it came as a single
    prefetch value, in a prefetch Bundle, in a fetched page or from a read."""
    prefetch = _full_prefetch()
    prefetch["patient"] = {"resourceType": "Patient", "id": PATIENT_ID, "birthDate": "1958-13-45",
                           "gender": "Male"}
    prefetch["observations"]["entry"].append(
        {"resource": {"resourceType": "Observation", "id": "no-code", "status": "final"}}
    )
    page = _page(["good"], None)
    page["entry"].append({"resource": {"resourceType": "Observation", "id": "bad",
                                       "note": "haemolysed", "status": "final"}})
    server.get(f"{BASE}/Condition").respond(json=page)
    server.get(f"{BASE}/Medication/m1").respond(json={
        "resourceType": "Medication", "id": "m1", "code": {"text": "Zocor"}, "fooBar": 1})
    prefetch["medicationRequests"]["entry"] = [
        {"resource": _med_request("mr", medicationReference={"reference": "Medication/m1"})}
    ]
    del prefetch["conditions"]
    data = gather(SERVICE, _body(prefetch), settings)
    assert _ids(data.resources, "Patient") == [PATIENT_ID]
    assert {"no-code", "bad", "good"} <= set(_ids(data.resources, "Observation"))
    assert data.medications["Medication/m1"]["fooBar"] == 1
    assert dict(data.flawed) == {"Patient": 1, "Observation": 2, "Medication": 1}
    assert dict(data.skipped) == {}


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ({"resourceType": "Observation", "id": "x", "status": "final", "code": {}}, "expected a"),
        ("Patient/1", "not a FHIR resource"),
        ({"resourceType": "Patient", "id": "someone-else"}, "not the one the template reads"),
    ],
)
def test_wrong_prefetch_values_are_422(settings: Settings, value: Any, reason: str) -> None:
    prefetch = _full_prefetch()
    prefetch["patient"] = value
    with pytest.raises(Unprocessable, match=f"'patient'.*{reason}"):
        gather(SERVICE, _body(prefetch), settings)


def test_unreadable_entry_in_a_prefetch_bundle_is_skipped_and_counted(settings: Settings) -> None:
    prefetch = _full_prefetch()
    prefetch["observations"]["entry"] += [
        {"resource": ["not", "an", "object"]}, {"resource": {"id": "no-type"}}
    ]
    data = gather(SERVICE, _body(prefetch), settings)
    assert _ids(data.resources, "Observation") == ["ck3", "wt", "ck2", "ck1"]
    assert dict(data.skipped) == {"unknown": 2}
    assert dict(data.flawed) == {}


def test_unreadable_entry_in_a_fetched_page_is_skipped_and_counted(
    server: respx.MockRouter, settings: Settings
) -> None:
    page = _page(["good"], None)
    page["entry"].append({"resource": {"resourceType": 7, "id": "bad"}})
    server.get(f"{BASE}/Observation").respond(json=page)
    prefetch = _full_prefetch()
    del prefetch["observations"]
    data = gather(SERVICE, _body(prefetch), settings)
    assert _ids(data.resources, "Observation") == ["good"]
    assert dict(data.skipped) == {"unknown": 1}


# -- drafts and selections ---------------------------------------------------------------------


def _order_body(*entries: dict[str, Any], prefetch: dict[str, Any] | None = None) -> dict[str, Any]:
    body = _body(prefetch if prefetch is not None else _full_prefetch(_ORDER_SERVICE))
    body["hook"] = "order-select"
    body["context"]["draftOrders"] = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": list(entries),
    }
    body["context"]["selections"] = ["MedicationRequest/draft-1"]
    return body


_ORDER_SERVICE = declared_service("statin-order-select", "order-select")


def test_drafts_are_parsed_with_dstu2_tolerance_and_selections_kept(settings: Settings) -> None:
    dstu2 = {
        "resourceType": "MedicationOrder",
        "id": "draft-1",
        "status": "draft",
        "dateWritten": "2025-07-01",
        "patient": {"reference": f"Patient/{PATIENT_ID}"},
        "medicationCodeableConcept": {"text": "atorvastatin 20 MG Oral Tablet"},
    }
    data = gather(_ORDER_SERVICE, _order_body({"resource": dstu2}), settings)
    assert [d["resourceType"] for d in data.drafts] == ["MedicationRequest"]
    assert data.drafts[0]["authoredOn"] == "2025-07-01" and data.drafts[0]["intent"] == "order"
    assert data.selections == ("MedicationRequest/draft-1",)


def test_unfinished_drafts_are_read_and_counted(settings: Settings) -> None:
    """rules.md r2: a draft missing what R4 requires is read as far as it goes, never refused;
    ``flawed_drafts`` counts those read past a flaw."""
    opened = {"resourceType": "MedicationRequest", "id": "draft-1", "status": "draft",
              "subject": {"reference": f"Patient/{PATIENT_ID}"}}  # no intent, no medication
    odd = {"resourceType": "MedicationRequest", "status": "draft", "subject": 7,
           "medicationCodeableConcept": {"text": "atorvastatin"}}
    finished = {**opened, "id": "draft-2", "medicationCodeableConcept": {"text": "atorvastatin"}}
    body = _order_body({"resource": opened}, {"resource": odd}, {"resource": finished})
    data = gather(_ORDER_SERVICE, body, settings)
    assert [d.get("id") for d in data.drafts] == ["draft-1", None, "draft-2"]
    assert data.drafts[0]["intent"] == "order"  # a draft is being ordered (tolerance)
    assert data.flawed_drafts == 2  # draft-1 has no medication[x]; the other a subject of 7


def test_an_unreadable_draft_is_422_pointing_at_the_entry(settings: Settings) -> None:
    with pytest.raises(Unprocessable) as caught:
        gather(
            _ORDER_SERVICE,
            _order_body({"resource": {"resourceType": "Patient"}}, {"resource": {"id": "x"}}),
            settings,
        )
    assert caught.value.expression == "context.draftOrders.entry[1]"


# -- medication references ---------------------------------------------------------------------


def _medication(ident: str, text: str) -> dict[str, Any]:
    return {"resourceType": "Medication", "id": ident, "code": {"text": text}}


def _referring_draft(reference: str) -> dict[str, Any]:
    return {
        "resource": {
            "resourceType": "MedicationRequest",
            "id": "draft-1",
            "status": "draft",
            "intent": "order",
            "subject": {"reference": f"Patient/{PATIENT_ID}"},
            "medicationReference": {"reference": reference},
        }
    }


def test_medication_in_draft_orders_resolves_without_a_request(
    server: respx.MockRouter, settings: Settings
) -> None:
    body = _order_body(
        _referring_draft("urn:uuid:med-1"),
        {"fullUrl": "urn:uuid:med-1", "resource": _medication("m1", "Zocor 20 mg")},
    )
    data = gather(_ORDER_SERVICE, body, settings)
    assert len(server.calls) == 0
    assert data.medications["urn:uuid:med-1"]["code"]["text"] == "Zocor 20 mg"
    assert data.medications["Medication/m1"] is data.medications["urn:uuid:med-1"]
    assert [d["resourceType"] for d in data.drafts] == ["MedicationRequest"]


def test_medication_in_a_prefetch_bundle_resolves_and_is_not_a_record_resource(
    server: respx.MockRouter, settings: Settings
) -> None:
    prefetch = _full_prefetch(_ORDER_SERVICE)
    prefetch["medicationRequests"]["entry"].append(
        {"fullUrl": f"{BASE}/Medication/m7", "resource": _medication("m7", "Lipitor")}
    )
    data = gather(
        _ORDER_SERVICE, _order_body(_referring_draft("Medication/m7"), prefetch=prefetch), settings
    )
    assert len(server.calls) == 0
    assert data.medications["Medication/m7"]["code"]["text"] == "Lipitor"
    assert data.medications[f"{BASE}/Medication/m7"]["id"] == "m7"
    assert _ids(data.resources, "Medication") == []


def test_missing_medications_are_read_from_the_server_and_failures_are_not_fatal(
    server: respx.MockRouter, settings: Settings
) -> None:
    server.get(f"{BASE}/Medication/m2").respond(json=_medication("m2", "Crestor"))
    server.get(f"{BASE}/Medication/m3").respond(404, json={})
    server.get(f"{BASE}/Medication/m4").respond(500, json={})
    # another Medication than the one asked for
    server.get(f"{BASE}/Medication/m5").respond(json=_medication("m9", "Zocor"))
    server.get(f"{BASE}/Medication/m6").respond(json=_medication("m6", "Gamunex-C"))
    prefetch = _full_prefetch(_ORDER_SERVICE)
    references = [
        "Medication/m3",
        "Medication/m4",
        "Medication/m5",
        f"{BASE}/Medication/m6",
        "https://elsewhere.example/fhir/Medication/m8",
        "urn:uuid:not-sent",
        "#contained",
    ]
    prefetch["medicationRequests"]["entry"] = [
        {"resource": _med_request(f"mr-{n}", medicationReference={"reference": ref})}
        for n, ref in enumerate(references)
    ]
    body = _order_body(_referring_draft("Medication/m2"), prefetch=prefetch)
    body["fhirAuthorization"] = {"access_token": TOKEN}
    data = gather(_ORDER_SERVICE, body, settings)
    assert sorted(_paths(server)) == [f"Medication/m{n}" for n in (2, 3, 4, 5, 6)]
    assert all(c.request.headers["Authorization"] == f"Bearer {TOKEN}" for c in server.calls)
    assert data.medications["Medication/m2"]["code"]["text"] == "Crestor"
    assert data.medications[f"{BASE}/Medication/m6"]["code"]["text"] == "Gamunex-C"
    for absent in ("Medication/m3", "Medication/m4", "Medication/m5", "urn:uuid:not-sent"):
        assert absent not in data.medications
    assert data.stats.medications_fetched == 2
    # m3, m4, m5 failed; m8 lives on another server; the urn:uuid was never sent.
    assert data.stats.medications_unresolved == 5
    assert data.stats.fetches == 5


def test_medications_without_fhir_server_stay_unresolved(settings: Settings) -> None:
    body = _order_body(_referring_draft("Medication/m2"))
    del body["fhirServer"]
    data = gather(_ORDER_SERVICE, body, settings)
    assert "Medication/m2" not in data.medications
    assert data.stats.medications_unresolved == 1


def test_reference_to_a_medication_already_at_hand_is_not_fetched_twice(
    server: respx.MockRouter, settings: Settings
) -> None:
    server.get(f"{BASE}/Medication/m2").respond(json=_medication("m2", "Crestor"))
    prefetch = _full_prefetch(_ORDER_SERVICE)
    prefetch["medicationRequests"]["entry"] = [
        {"resource": _med_request("a", medicationReference={"reference": "Medication/m2"})},
        {"resource": _med_request("b", medicationReference={"reference": f"{BASE}/Medication/m2"})},
    ]
    data = gather(
        _ORDER_SERVICE, _order_body(_referring_draft("Medication/m2"), prefetch=prefetch), settings
    )
    assert _paths(server) == ["Medication/m2"]
    assert data.medications[f"{BASE}/Medication/m2"] is data.medications["Medication/m2"]


def test_drafts_and_selections_are_read_from_the_fields_the_hook_declares(
    server: respx.MockRouter, settings: Settings
) -> None:
    """``hooks.HookDeclaration`` names its drafts and selections fields (run_hook passes them):
    a hook of its own may keep them elsewhere, and a hook without drafts has none read."""
    draft = {"resourceType": "MedicationRequest", "id": "draft-1", "status": "draft",
             "intent": "order", "subject": {"reference": f"Patient/{PATIENT_ID}"},
             "medicationCodeableConcept": {"text": "atorvastatin 40 mg"}}
    body = _body(_full_prefetch(_ORDER_SERVICE))
    body["context"]["medications"] = {"resourceType": "Bundle", "type": "collection",
                                      "entry": [{"resource": draft}]}
    body["context"]["chosen"] = ["MedicationOrder/draft-1"]
    data = gather(
        _ORDER_SERVICE, body, settings, drafts_field="medications", selections_field="chosen"
    )
    assert [d["id"] for d in data.drafts] == ["draft-1"]
    assert data.selections == ("MedicationRequest/draft-1",)
    # An unreadable entry in draftOrders is refused where the hook reads drafts from it ...
    unreadable = _order_body({"resource": {"id": "x"}})
    with pytest.raises(Unprocessable, match=r"context\.draftOrders\.entry\[0\]"):
        gather(_ORDER_SERVICE, unreadable, settings)
    # ... and not read at all on a hook without drafts.
    unreadable["prefetch"] = _full_prefetch(SERVICE)
    none = gather(SERVICE, unreadable, settings, drafts_field=None, selections_field=None)
    assert none.drafts == () and none.selections == ()
    assert len(server.calls) == 0
