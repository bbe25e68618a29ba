"""The shipped example patients: each gives exactly the cards its index entry says, through the
HTTP interface, on the date it is written for and on any other date (its record moves with it)."""

from __future__ import annotations

import json
import re
import uuid
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest

from cds_service.errors import BadRequest, ConfigurationError, NotFound
from cds_service.fhir.data import FhirData
from cds_service.pipeline import load_templates, run_hook
from cds_service.protocol.schemas import errors
from cds_service.record.build import build_record
from cds_service.settings import Settings
from cds_service.tryit.drafts import (
    IVIG,
    PRODUCTS,
    STATIN,
    UNFINISHED,
    DraftSpec,
    draft_resource,
    parse_draft,
)
from cds_service.tryit.examples import (
    DEFAULT_EXAMPLES_DIR,
    View,
    load_examples,
    record_on,
    requests_for,
    shift_dates,
)
from cds_service.tryit.inprocess import run_view
from tests.support.fhir_server import FhirTestServer
from tests.tryit.conftest import CLINICAL_DATE

SHIPPED = load_examples()
NAMES = list(SHIPPED.names())
SHIPPED_SETTINGS = Settings().with_overrides(auth="off")


def call(client: Any, query: dict[str, str]) -> list[dict[str, Any]]:
    """What the page's script does: build the requests, POST each, collect the cards."""
    plan = client.get("/try/request", query_string=query)
    assert plan.status_code == 200, plan.get_json()
    cards: list[dict[str, Any]] = []
    for item in plan.get_json()["calls"]:
        body = item["request"]
        assert errors("request", body) == [], item["serviceId"]
        response = client.post(item["path"], data=json.dumps(body),
                               content_type="application/json")
        assert response.status_code == 200, response.get_json()
        assert errors("response", response.get_json()) == []
        cards.extend(response.get_json()["cards"])
    return cards


def topics(cards: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(c["source"]["topic"]["code"], c["indicator"]) for c in cards}


def test_at_least_ten_examples_each_with_its_own_patient():
    assert len(SHIPPED) >= 10
    patients = [e.patient_id for e in SHIPPED]
    assert len(set(patients)) == len(patients)
    files = {p.stem for p in DEFAULT_EXAMPLES_DIR.glob("*.json")} - {"index"}
    assert files == set(NAMES), "every Bundle in examples/ is listed in index.json and back"


@pytest.mark.parametrize("name", NAMES)
def test_example_gives_exactly_its_cards_over_http(make_app, settings, name):
    example = SHIPPED.get(name)
    client = make_app(settings.with_overrides(today=example.today)).test_client()
    cards = call(client, {"example": name})
    assert topics(cards) == {(e.topic, e.indicator) for e in example.expect}


@pytest.mark.parametrize("days", [400, -1461, 1])
@pytest.mark.parametrize("name", ["statin-ck-over-10x", "remission-on-ivig",
                                  "obese-first-ivig-dose", "ivig-no-response-6-months"])
def test_example_gives_the_same_cards_on_another_day(make_app, settings, name, days):
    # The service's date is not the example's: the record moves with it, so "three days ago"
    # stays three days ago (a leap day crossed included).
    example = SHIPPED.get(name)
    today = example.today + timedelta(days=days)
    client = make_app(settings.with_overrides(today=today)).test_client()
    plan = client.get("/try/request", query_string={"example": name}).get_json()
    assert plan["shiftDays"] == days and plan["today"] == today.isoformat()
    cards = call(client, {"example": name})
    assert topics(cards) == {(e.topic, e.indicator) for e in example.expect}


def test_in_process_run_gives_the_cards_of_the_pipeline(examples):
    # The gallery and the timeline run the service's steps in process: they must give what
    # pipeline.run_hook (the HTTP path) gives for the same request, uuids aside.
    templates = load_templates()
    compared = 0
    for example in examples:
        view = View(example, example.hook, example.draft)
        for run in run_view(view, example.today, SHIPPED_SETTINGS, templates):
            expected = run_hook(
                run.service, run.request, SHIPPED_SETTINGS, example.today, templates=templates
            )
            assert strip_uuids(list(run.cards)) == strip_uuids(expected["cards"]), example.name
            compared += len(run.cards)
    assert compared >= len(examples)


def strip_uuids(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: strip_uuids(v) for k, v in value.items() if k != "uuid"}
    if isinstance(value, list):
        return [strip_uuids(v) for v in value]
    return value


def test_requests_carry_the_services_prefetch_and_no_fhir_server(examples):
    for example in examples:
        for hook in ("patient-view", "order-select", "order-sign"):
            view = View(example, hook, example.draft)
            for service, body in requests_for(view, CLINICAL_DATE):
                assert "fhirServer" not in body and "fhirAuthorization" not in body
                assert set(body["prefetch"]) == set(service.prefetch_keys)
                assert body["context"]["patientId"] == example.patient_id
                assert str(uuid.UUID(body["hookInstance"])) == body["hookInstance"]
                assert errors("request", body) == []
                drafts = body["context"].get("draftOrders")
                assert (drafts is not None) == (hook != "patient-view")
                if hook == "order-select":
                    assert body["context"]["selections"] == ["MedicationRequest/try-it-draft"]


def test_shift_dates_moves_every_date_and_keeps_time_and_offset():
    value = {
        "birthDate": "1960-02-29",
        "effectiveDateTime": "2025-07-01T09:30:00+02:00",
        "issued": "2025-06-30T23:59:59.123Z",
        "period": {"start": "2025-01-01", "end": "2025-12-31"},
        "list": ["2024-02-28", "not a date", "2025-07-01x", 20250701],
        "id": "obs-2025-07-01",
    }
    moved = shift_dates(value, 1)
    assert moved == {
        "birthDate": "1960-03-01",
        "effectiveDateTime": "2025-07-02T09:30:00+02:00",
        "issued": "2025-07-01T23:59:59.123Z",
        "period": {"start": "2025-01-02", "end": "2026-01-01"},
        "list": ["2024-02-29", "not a date", "2025-07-01x", 20250701],
        "id": "obs-2025-07-01",
    }
    unchanged = shift_dates(value, 0)
    assert unchanged == value and unchanged is not value


def test_record_on_moves_the_record_and_leaves_the_example_alone(examples):
    example = examples.get("statin-ck-over-10x")
    before = json.dumps(example.record, sort_keys=True)
    moved = record_on(example, example.today + timedelta(days=10))
    assert json.dumps(example.record, sort_keys=True) == before
    dates = [e["resource"].get("effectiveDateTime") for e in moved["entry"]]
    originals = [e["resource"].get("effectiveDateTime") for e in example.record["entry"]]
    for new, old in zip(dates, originals, strict=True):
        if old is not None:
            assert date.fromisoformat(new[:10]) - date.fromisoformat(old[:10]) == timedelta(10)


def test_unknown_example_is_not_found(examples):
    with pytest.raises(NotFound):
        examples.get("../../etc/passwd")
    with pytest.raises(NotFound):
        examples.get("unknown")
    assert examples.get(None).name == NAMES[0]


# --- drafts ----------------------------------------------------------------------------------


@pytest.mark.parametrize("key", sorted(PRODUCTS))
def test_every_product_is_classified_as_the_service_will_see_it(key):
    product = PRODUCTS[key]
    spec = DraftSpec(product, Decimal(30) if product.kind == IVIG else None,
                     2 if product.kind == IVIG else None)
    draft = draft_resource(spec, "p1", CLINICAL_DATE)
    data = FhirData(resources=({"resourceType": "Patient", "id": "p1"},), drafts=(draft,),
                    selections=())
    body = {"hook": "order-sign", "context": {"patientId": "p1"}}
    record = build_record(data, body, SHIPPED_SETTINGS)
    if product.kind == STATIN:
        assert [u.medication.display for u in record.drafted_statins] == [product.display]
    elif product.kind == IVIG:
        (use,) = record.drafted_ivig
        assert use.dose is not None and use.dose.amount == 30 and use.dose.days == 2
        assert use.medication.concentration_g_per_ml is not None
    elif product.kind == UNFINISHED:
        # rules.md r2: a draft with no medication yet is ignored, neither statin, IVIG nor
        # unidentified.
        assert "medicationCodeableConcept" not in draft and "medicationReference" not in draft
        assert "intent" not in draft
        assert record.drafted_statins == () and record.drafted_ivig == ()
        assert record.unidentified_drafts == ()
    else:
        assert record.unidentified_drafts == (product.display,)


def test_parse_draft_defaults_and_bounds():
    example = SHIPPED.get("obese-first-ivig-dose")
    assert parse_draft(None, None, None, example.draft) == example.draft
    assert parse_draft("privigen", "12.5", "3", example.draft).dose_g == 12.5
    statin = parse_draft("atorvastatin-40", "99", "9", example.draft)
    assert statin.dose_g is None and statin.days is None  # a statin has no grams
    # Switching from a statin example to an IVIG product starts from the default IVIG order.
    from_statin = parse_draft("octagam", None, None, SHIPPED.get("statin-ck-4-to-10x").draft)
    assert (from_statin.dose_g, from_statin.days) == (35, 2)
    for product, dose, days, field in [
        ("nope", None, None, "product"),
        ("privigen", "0", None, "dose"),
        ("privigen", "-5", None, "dose"),
        ("privigen", "1001", None, "dose"),
        ("privigen", "NaN", None, "dose"),
        ("privigen", "1e400", None, "dose"),
        ("privigen", "abc", None, "dose"),
        ("privigen", None, "0", "days"),
        ("privigen", None, "32", "days"),
        ("privigen", None, "2.5", "days"),
    ]:
        with pytest.raises(BadRequest) as caught:
            parse_draft(product, dose, days, example.draft)
        assert caught.value.expression == field


def test_broken_example_index_stops_start_up(tmp_path, reduced_examples):
    directory = reduced_examples(["statin-ck-over-10x"])
    index = json.loads((directory / "index.json").read_text())
    index["examples"].append(dict(index["examples"][0]))  # listed twice
    (directory / "index.json").write_text(json.dumps(index))
    with pytest.raises(ConfigurationError, match="listed twice"):
        load_examples(directory)
    index["examples"] = [dict(index["examples"][0], name="missing-file")]
    (directory / "index.json").write_text(json.dumps(index))
    with pytest.raises(ConfigurationError, match="missing-file"):
        load_examples(directory)
    index["examples"] = [dict(index["examples"][0], name="statin-ck-over-10x",
                              draft={"product": "privigen"})]
    (directory / "index.json").write_text(json.dumps(index))
    with pytest.raises(ConfigurationError, match="dose_g and days"):
        load_examples(directory)


# --- records shaped the way large EHRs send them (rules.md r2) ------------------------------

EHR_SHAPED = [name for name in NAMES if name.startswith("ehr-")]
ORDER_TYPES = ("MedicationRequest", "MedicationStatement", "MedicationAdministration")
OBSERVATION_ELEMENTS = {  # R4 Observation's elements (for "an element R4 does not define")
    "resourceType", "id", "meta", "implicitRules", "language", "text", "contained", "extension",
    "modifierExtension", "identifier", "basedOn", "partOf", "status", "category", "code",
    "subject", "focus", "encounter", "effectiveDateTime", "effectivePeriod", "effectiveTiming",
    "effectiveInstant", "issued", "performer", "valueQuantity", "valueCodeableConcept",
    "valueString", "valueBoolean", "valueInteger", "valueRange", "valueRatio", "valueSampledData",
    "valueTime", "valueDateTime", "valuePeriod", "dataAbsentReason", "interpretation", "note",
    "bodySite", "method", "specimen", "device", "referenceRange", "hasMember", "derivedFrom",
    "component",
}


def test_at_least_three_ehr_shaped_examples():
    assert len(EHR_SHAPED) >= 3


@pytest.mark.parametrize("name", EHR_SHAPED)
def test_ehr_shaped_example_is_shaped_like_large_ehrs_send_it(name):
    example = SHIPPED.get(name)
    resources = [e["resource"] for e in example.record["entry"]]
    orders = [r for r in resources if r["resourceType"] in ORDER_TYPES]
    assert orders and all(
        "medicationReference" in r and "medicationCodeableConcept" not in r for r in orders
    )
    observations = [r for r in resources if r["resourceType"] == "Observation"]
    flawed = [
        r for r in observations
        if set(r) - OBSERVATION_ELEMENTS
        or isinstance(r.get("note"), str)
        or isinstance(r.get("interpretation"), dict)
    ]
    assert flawed, "an Observation with a flaw no rule reads"
    assert any(r.get("extension") for r in resources if r["resourceType"] != "Patient")
    zoned = re.compile(r"T\d{2}:\d{2}(:\d{2})?[+-]\d{2}:\d{2}$")
    assert any(zoned.search(v) for r in resources for v in _datetimes(r))
    # The Medications reach the service only as _include entries of the prefetch searchsets.
    view = View(example, example.hook, example.draft)
    included = 0
    for _service, body in requests_for(view, example.today):
        for bundle in body["prefetch"].values():
            for entry in (bundle or {}).get("entry", ()) if isinstance(bundle, dict) else ():
                if entry["resource"]["resourceType"] == "Medication":
                    assert entry["search"]["mode"] == "include"
                    included += 1
    assert included >= 1


def _datetimes(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [d for v in value.values() for d in _datetimes(v)]
    if isinstance(value, list):
        return [d for v in value for d in _datetimes(v)]
    return [value] if isinstance(value, str) and len(value) > 19 and value[10:11] == "T" else []


@pytest.mark.parametrize("hook", ["order-select", "order-sign"])
def test_a_draft_with_nothing_picked_yet_answers_200_without_a_draft_card(
    make_app, settings, hook
):
    # rules.md r2 "Drafted": the order entry just opened (the Sandbox's Rx View): no 4xx, no card
    # from the draft; the record's own cards on that hook still come.
    example = SHIPPED.get("statin-ck-over-10x")  # active simvastatin, CK 25×ULN
    client = make_app(settings.with_overrides(today=example.today)).test_client()
    cards = call(client, {"example": example.name, "hook": hook, "product": "nothing-picked"})
    got = topics(cards)
    assert ("STAT-01", "critical") in got  # from the active statin, not from the draft
    assert not {t for t, _ in got} & {"ORDER-UNIDENTIFIED", "IGA-01", "DOSE-01", "DOSE-04"}


@pytest.mark.parametrize("name", EHR_SHAPED)
def test_ehr_shaped_example_gives_the_same_cards_when_fetched(make_app, settings, name):
    # rules.md r2: prefetch (Medications as _include entries) and the fallback fetch (the service
    # reads the record from the EHR's FHIR server, here one on loopback) give the same cards.
    example = SHIPPED.get(name)
    server = FhirTestServer().start()
    try:
        server.record = example.record
        server.page_size = 3
        client = make_app(
            settings.with_overrides(today=example.today, fhir_allow=(server.base_url,))
        ).test_client()
        view = View(example, example.hook, example.draft)
        got: dict[str, list[Any]] = {"prefetch": [], "fetched": []}
        for service, body in requests_for(view, example.today):
            fetched = {k: v for k, v in body.items() if k != "prefetch"}
            fetched["fhirServer"] = server.base_url
            for way, request in (("prefetch", body), ("fetched", fetched)):
                response = client.post(f"/cds-services/{service.id}", data=json.dumps(request),
                                       content_type="application/json")
                assert response.status_code == 200, (way, response.get_json())
                got[way].extend(strip_uuids(response.get_json()["cards"]))
        assert server.request_count > 0
    finally:
        server.stop()
    assert got["fetched"] == got["prefetch"]
    assert topics(got["prefetch"]) == {(e.topic, e.indicator) for e in example.expect}
