"""In-memory FHIR search, prefetch token rendering and ``build_prefetch``."""

from __future__ import annotations

from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

import pytest

from cds_service.demo.search import PAGE_OFFSET_PARAM, UnsupportedSearch, build_prefetch, search
from cds_service.fhir.prefetch import render_template
from cds_service.services import LOINC, ServiceDeclaration, find_service

CK = "2157-6"
IGA = "2458-8"


def _obs(
    ident: str, code: str, when: str | None, patient: str = "Patient/p1", **extra: Any
) -> dict:
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": ident,
        "status": extra.pop("status", "final"),
        "code": {"coding": [{"system": extra.pop("system", LOINC), "code": code}]},
        "subject": {"reference": patient},
    }
    if when is not None:
        resource["effectiveDateTime"] = when
    resource.update(extra)
    return resource


def _record(*resources: dict) -> dict:
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"fullUrl": f"urn:uuid:{r['resourceType']}-{r['id']}", "resource": r} for r in resources
        ],
    }


PATIENT = {"resourceType": "Patient", "id": "p1", "gender": "female"}
RECORD = _record(
    PATIENT,
    {"resourceType": "Patient", "id": "p2"},
    _obs("ck-old", CK, "2024-01-10"),
    _obs("ck-new", CK, "2024-03-05T08:30:00Z"),
    _obs("iga", IGA, "2024-02-01"),
    _obs("ck-undated", CK, None),
    _obs("ck-other-patient", CK, "2024-03-06", patient="Patient/p2"),
    _obs("ck-absolute-ref", CK, "2024-02-15", patient="https://ehr.example/fhir/Patient/p1"),
    _obs("ck-local-code", CK, "2024-02-20", system="http://lab.example/codes"),
    _obs("ck-prelim", CK, "2024-02-25", status="preliminary"),
    {
        "resourceType": "MedicationRequest",
        "id": "mr1",
        "status": "active",
        "intent": "order",
        "subject": {"reference": "Patient/p1"},
        "authoredOn": "2023-05-01",
        "medicationCodeableConcept": {
            "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "617310"}]
        },
    },
)


def _ids(bundle: dict | None) -> list[str]:
    assert bundle is not None and bundle["resourceType"] == "Bundle"
    assert bundle["type"] == "searchset"
    return [e["resource"]["id"] for e in bundle["entry"]]


# -- reads -----------------------------------------------------------------------------------


def test_read_returns_the_resource_or_none() -> None:
    assert search(RECORD, "Patient/p1") == PATIENT
    assert search(RECORD, "Patient/nobody") is None
    assert search(RECORD, "Observation/iga")["code"]["coding"][0]["code"] == IGA  # type: ignore[index]


# -- patient references ------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["p1", "Patient/p1"])
def test_patient_parameter_matches_relative_and_absolute_subject_references(value: str) -> None:
    ids = _ids(search(RECORD, f"Observation?patient={value}"))
    assert "ck-absolute-ref" in ids
    assert "ck-other-patient" not in ids
    assert len(ids) == 7


def test_subject_parameter_with_patient_modifier() -> None:
    assert _ids(search(RECORD, "Observation?subject:Patient=p2")) == ["ck-other-patient"]


# -- tokens ------------------------------------------------------------------------------------


def test_code_token_list_with_systems() -> None:
    ids = _ids(search(RECORD, f"Observation?patient=p1&code={LOINC}|{IGA},{LOINC}|{CK}"))
    assert set(ids) == {"ck-old", "ck-new", "iga", "ck-undated", "ck-absolute-ref", "ck-prelim"}


def test_code_without_system_matches_any_system() -> None:
    ids = _ids(search(RECORD, f"Observation?patient=p1&code={CK}"))
    assert "ck-local-code" in ids and "iga" not in ids


def test_code_with_other_system_does_not_match_loinc() -> None:
    assert _ids(search(RECORD, f"Observation?code=http://lab.example/codes|{CK}")) == [
        "ck-local-code"
    ]


def test_code_with_empty_system_matches_only_codings_without_system() -> None:
    record = _record(
        _obs("no-system", CK, "2024-01-01", system=None),
        _obs("loinc", CK, "2024-01-02"),
    )
    for entry in record["entry"]:
        coding = entry["resource"]["code"]["coding"][0]
        if coding["system"] is None:
            del coding["system"]
    assert _ids(search(record, f"Observation?code=|{CK}")) == ["no-system"]


def test_medication_code_and_status_tokens() -> None:
    rxnorm = "http://www.nlm.nih.gov/research/umls/rxnorm"
    assert _ids(search(RECORD, f"MedicationRequest?patient=p1&code={rxnorm}|617310")) == ["mr1"]
    assert _ids(search(RECORD, "MedicationRequest?patient=p1&status=stopped")) == []
    assert _ids(search(RECORD, "Observation?status=preliminary")) == ["ck-prelim"]


def test_escaped_comma_is_part_of_the_value() -> None:
    record = _record(
        {"resourceType": "Patient", "id": "a,b"}, {"resourceType": "Patient", "id": "a"}
    )
    assert _ids(search(record, "Patient?_id=a\\,b")) == ["a,b"]
    assert _ids(search(record, "Patient?_id=a,b")) == ["a"]


def test_id_parameter() -> None:
    assert _ids(search(RECORD, "Observation?_id=iga,ck-new")) == ["ck-new", "iga"]


# -- sorting, dates, paging --------------------------------------------------------------------


def test_sort_descending_by_date_puts_undated_last() -> None:
    ids = _ids(search(RECORD, f"Observation?patient=p1&code={LOINC}|{CK}&_sort=-date"))
    assert ids == ["ck-new", "ck-prelim", "ck-absolute-ref", "ck-old", "ck-undated"]


def test_sort_ascending_and_legacy_desc_modifier() -> None:
    ascending = _ids(search(RECORD, f"Observation?patient=p1&code={LOINC}|{CK}&_sort=date"))
    assert ascending == ["ck-old", "ck-absolute-ref", "ck-prelim", "ck-new", "ck-undated"]
    legacy = _ids(search(RECORD, f"Observation?patient=p1&code={LOINC}|{CK}&_sort:desc=date"))
    assert legacy[0] == "ck-new"


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("date=2024-03-05", {"ck-new"}),
        ("date=ge2024-02-25", {"ck-new", "ck-prelim"}),
        ("date=gt2024-02-25", {"ck-new"}),
        ("date=lt2024-02-01", {"ck-old"}),
        ("date=le2024-02-01", {"ck-old", "iga"}),
        ("date=2024-02", {"iga", "ck-absolute-ref", "ck-local-code", "ck-prelim"}),
        ("date=ge2024-02-20&date=lt2024-03-01", {"ck-local-code", "ck-prelim"}),
    ],
)
def test_date_prefixes(query: str, expected: set[str]) -> None:
    assert set(_ids(search(RECORD, f"Observation?patient=p1&{query}"))) == expected


def test_count_pages_with_next_links_until_every_resource_is_returned() -> None:
    url: str | None = f"Observation?patient=p1&code={LOINC}|{CK}&_sort=-date&_count=2"
    seen: list[str] = []
    pages = 0
    while url:
        bundle = search(RECORD, url)
        assert bundle is not None and bundle["total"] == 5
        seen.extend(_ids(bundle))
        pages += 1
        url = next((ln["url"] for ln in bundle["link"] if ln["relation"] == "next"), None)
    assert pages == 3
    assert seen == ["ck-new", "ck-prelim", "ck-absolute-ref", "ck-old", "ck-undated"]


def test_next_link_is_absolute_with_a_base_and_keeps_the_query() -> None:
    bundle = search(
        RECORD, f"Observation?patient=p1&code={LOINC}|{CK}&_count=2", base="http://h/fhir/"
    )
    assert bundle is not None
    next_url = next(ln["url"] for ln in bundle["link"] if ln["relation"] == "next")
    parts = urlsplit(next_url)
    assert next_url.startswith("http://h/fhir/Observation?")
    query = parse_qs(parts.query)
    assert query[PAGE_OFFSET_PARAM] == ["2"] and query["_count"] == ["2"]
    assert query["code"] == [f"{LOINC}|{CK}"] and query["patient"] == ["p1"]
    assert bundle["entry"][0]["fullUrl"].startswith("http://h/fhir/Observation/")


def test_without_base_entries_keep_the_record_full_url() -> None:
    bundle = search(RECORD, "Patient?_id=p1")
    assert bundle is not None
    assert bundle["entry"][0]["fullUrl"] == "urn:uuid:Patient-p1"
    assert bundle["entry"][0]["search"] == {"mode": "match"}


def test_last_page_has_no_next_link_and_count_zero_gives_only_the_total() -> None:
    last = search(RECORD, f"Observation?code={CK}&_count=2&{PAGE_OFFSET_PARAM}=6")
    assert last is not None and [ln["relation"] for ln in last["link"]] == ["self"]
    assert len(last["entry"]) == 1
    empty = search(RECORD, f"Observation?code={CK}&_count=0")
    assert empty is not None and empty["entry"] == [] and empty["total"] == 7


@pytest.mark.parametrize(
    "url",
    [
        "Observation?patient=p1&code:in=http://vs.example",
        "Observation?bogus=1",
        "Observation?_sort=-bogus",
        "Observation?_count=many",
        "Observation?date=sa2024-01-01",
        "Observation?date=yesterday",
        "http://elsewhere/Observation",
        "lowercase?x=1",
        "Patient/p1?_elements=id",
    ],
)
def test_unsupported_requests_fail_loudly(url: str) -> None:
    with pytest.raises(UnsupportedSearch):
        search(RECORD, url)


def test_search_via_underscore_search_path() -> None:
    assert _ids(search(RECORD, "Patient/_search?_id=p2")) == ["p2"]


# -- templates ---------------------------------------------------------------------------------


CONTEXT = {"patientId": "p1", "userId": "Practitioner/dr-7", "draftOrders": {"a": 1}}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("Patient/{{context.patientId}}", "Patient/p1"),
        ("Observation?patient={{ context.patientId }}&_count=1", "Observation?patient=p1&_count=1"),
        ("Practitioner/{{userPractitionerId}}", "Practitioner/dr-7"),
        ("{{context.userId}}", "Practitioner/dr-7"),
        ("PractitionerRole?_id={{userPractitionerRoleId}}", None),
        ("Encounter/{{context.encounterId}}", None),
        ("Bundle/{{context.draftOrders}}", None),
        ("Observation?x={{context.draftOrders.entry}}", None),
        ("Observation?x={{today()}}", None),
    ],
)
def test_render_template(template: str, expected: str | None) -> None:
    assert render_template(template, CONTEXT) == expected


def test_render_template_url_encodes_values() -> None:
    context = {"patientId": "a b&c=d/e?f#g", "flag": True, "n": 3}
    assert render_template("Patient?_id={{context.patientId}}", context) == (
        "Patient?_id=a%20b%26c%3Dd%2Fe%3Ff%23g"
    )
    assert render_template("X?a={{context.flag}}&b={{context.n}}", context) == "X?a=true&b=3"


def test_dot_segment_ids_are_encoded_not_kept_as_paths() -> None:
    assert render_template("{{context.userId}}", {"userId": "Patient/.."}) == "Patient%2F.."


def test_render_template_userid_of_other_type_fills_only_its_own_token() -> None:
    context = {"userId": "PractitionerRole/r1"}
    assert render_template("{{userPractitionerRoleId}}", context) == "r1"
    assert render_template("{{userPractitionerId}}", context) is None


def test_build_prefetch_runs_the_service_templates_on_the_record() -> None:
    service = find_service("myopathy-review", "patient-view")
    assert service is not None
    prefetch = build_prefetch(service, {"patientId": "p1"}, RECORD)
    assert set(prefetch) == set(service.prefetch)
    assert prefetch["patient"] == PATIENT
    observations = _ids(prefetch["observations"])
    assert observations[0] == "ck-new" and "ck-local-code" not in observations
    assert _ids(prefetch["medicationRequests"]) == ["mr1"]
    assert _ids(prefetch["conditions"]) == []


class _Templates:
    """Stands in for a ServiceDeclaration: build_prefetch reads only ``prefetch``."""

    def __init__(self, prefetch: dict[str, str]) -> None:
        self.prefetch = prefetch


def test_build_prefetch_gives_null_for_a_missing_read_and_omits_unfillable_templates() -> None:
    service = _Templates(
        {"patient": "Patient/{{context.patientId}}", "enc": "Encounter/{{context.encounterId}}"}
    )
    prefetch = build_prefetch(cast(ServiceDeclaration, service), {"patientId": "nobody"}, RECORD)
    assert prefetch == {"patient": None}


# --- _include (rules.md r2 "Medication of an order") -----------------------------------------

_MED_URN = "urn:uuid:med-by-urn"
INCLUDE_RECORD = {
    "resourceType": "Bundle",
    "type": "collection",
    "entry": [
        {"fullUrl": "urn:uuid:anything-else", "resource": {"resourceType": "Medication",
                                                          "id": "m1", "code": {"text": "A"}}},
        {"fullUrl": _MED_URN, "resource": {"resourceType": "Medication", "id": "m2",
                                            "code": {"text": "B"}}},
        {"resource": {"resourceType": "Medication", "id": "m3", "code": {"text": "unused"}}},
        *(
            {"resource": {"resourceType": "MedicationRequest", "id": ident, "status": "active",
                          "intent": "order", "subject": {"reference": "Patient/p1"},
                          "medicationReference": {"reference": reference}}}
            for ident, reference in (
                ("by-id", "Medication/m1"),
                ("by-urn", _MED_URN),
                ("again", "Medication/m1/_history/3"),
                ("contained", "#c1"),
                ("elsewhere", "Medication/not-here"),
            )
        ),
    ],
}


def _included(bundle: dict | None) -> list[str]:
    assert bundle is not None
    return [e["resource"]["id"] for e in bundle["entry"] if e["search"]["mode"] == "include"]


def test_include_brings_each_referenced_medication_once_by_id_or_by_full_url() -> None:
    bundle = search(INCLUDE_RECORD,
                    "MedicationRequest?patient=p1&_include=MedicationRequest:medication")
    assert bundle is not None and bundle["total"] == 5  # the total counts matches only
    assert [e["search"]["mode"] for e in bundle["entry"]][:5] == ["match"] * 5
    # Medication/m1 by type and id whatever its fullUrl; the urn:uuid by fullUrl; m3 is unused.
    assert _included(bundle) == ["m1", "m2"]
    assert search(INCLUDE_RECORD, "MedicationRequest?patient=p1")["entry"][-1]["search"] == {
        "mode": "match"}  # without _include, nothing else comes


def test_include_follows_the_page_and_a_server_serves_urn_references_as_type_and_id() -> None:
    first = search(INCLUDE_RECORD, "MedicationRequest?_include=MedicationRequest:medication"
                   "&_count=1", base="http://ehr.example/fhir")
    assert first is not None and _included(first) == ["m1"]
    second = search(INCLUDE_RECORD, "MedicationRequest?_include=MedicationRequest:medication"
                    "&_count=1&_getpagesoffset=1", base="http://ehr.example/fhir")
    assert second is not None
    (match,) = [e for e in second["entry"] if e["search"]["mode"] == "match"]
    assert match["resource"]["medicationReference"] == {"reference": "Medication/m2"}
    assert _included(second) == ["m2"]
    assert INCLUDE_RECORD["entry"][4]["resource"]["medicationReference"]["reference"] == _MED_URN


@pytest.mark.parametrize(
    "include",
    ["Observation:medication", "MedicationRequest:subject", "MedicationRequest:medication:Patient"],
)
def test_unsupported_includes_fail_loudly(include: str) -> None:
    with pytest.raises(UnsupportedSearch, match="_include"):
        search(INCLUDE_RECORD, f"MedicationRequest?_include={include}")


def test_the_services_templates_include_the_orders_medications() -> None:
    service = find_service("myopathy-review", "patient-view")
    assert service is not None
    for key, resource_type in (("medicationRequests", "MedicationRequest"),
                               ("medicationStatements", "MedicationStatement"),
                               ("medicationAdministrations", "MedicationAdministration")):
        assert f"_include={resource_type}:medication" in service.prefetch[key]


def test_flawed_stored_resources_are_searched_not_fatal() -> None:
    """A flawed record (rules.md r2) is searched as a server would: an element that cannot be
    read does not match, a date that cannot be read sorts as undated; the search never fails."""
    record = _record(
        _obs("bad-date", CK, "2024-13-45"),
        _obs("bad-period", CK, None, effectivePeriod={"start": 5}),
        {**_obs("bad-coding", CK, "2024-02-01"), "code": {"coding": {"code": CK}}},
        _obs("bad-status", CK, "2024-02-02", status=["final"]),
        _obs("good", CK, "2024-02-03"),
        {"resourceType": "MedicationRequest", "id": ["x"], "subject": {"reference": "Patient/p1"},
         "medicationReference": "Medication/m1", "status": "active"},
    )
    bundle = search(record, f"Observation?patient=p1&code={LOINC}|{CK}&status=final&_sort=-date")
    assert _ids(bundle) == ["good", "bad-date", "bad-period"]
    assert search(record, "MedicationRequest?_id=x&_include=MedicationRequest:medication"
                  )["entry"] == []
    included = search(record, "MedicationRequest?patient=p1&_include=MedicationRequest:medication")
    assert [e["search"]["mode"] for e in included["entry"]] == ["match"]
