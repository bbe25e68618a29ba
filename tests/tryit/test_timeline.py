"""The CK timeline SVG: one point per usable CK (as the record layer reads them), ×ULN on a log
axis with the 1/4/10/40× lines, statin bands, IVIG marks, drafts, and the values the cards used."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from datetime import date
from typing import Any

import pytest

from cds_service.fhir.data import FhirData
from cds_service.record.build import build_record
from cds_service.settings import Settings
from cds_service.tryit.examples import load_examples
from cds_service.tryit.timeline import build_timeline, render_svg

SVG = "{http://www.w3.org/2000/svg}"
SHIPPED = load_examples()
TODAY = date(2025, 7, 1)


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)  # also proves the document is well-formed XML


def points(root: ET.Element) -> list[ET.Element]:
    return [g for g in root.iter(f"{SVG}g") if "ck-point" in g.get("class", "").split()]


def of_class(root: ET.Element, name: str) -> list[ET.Element]:
    return [e for e in root.iter() if name in e.get("class", "").split()]


def ck_observation(oid: str, day: str, value: Any, *, status: str = "final", unit: str = "U/L",
                   high: Any = 200) -> dict[str, Any]:
    obs: dict[str, Any] = {
        "resourceType": "Observation", "id": oid, "status": status,
        "code": {"coding": [{"system": "http://loinc.org", "code": "2157-6"}]},
        "subject": {"reference": "Patient/p"}, "effectiveDateTime": day,
        "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org",
                          "code": unit},
    }
    if high is not None:
        obs["referenceRange"] = [{"high": {"value": high, "unit": "U/L"}}]
    return obs


def record_of(*resources: dict[str, Any], drafts: tuple[dict[str, Any], ...] = (),
              hook: str = "patient-view") -> Any:
    patient = {"resourceType": "Patient", "id": "p", "gender": "female"}
    data = FhirData(resources=(patient, *resources), drafts=drafts, selections=())
    return build_record(data, {"hook": hook, "context": {"patientId": "p"}},
                        Settings().with_overrides(auth="off"))


def test_one_point_per_usable_ck_as_the_rules_read_them():
    record = record_of(
        ck_observation("final", "2025-03-01", 150),
        ck_observation("amended", "2025-04-01", 900, status="amended"),
        ck_observation("corrected", "2025-04-15", 1000, status="corrected"),
        ck_observation("prelim", "2025-05-01", 2400, status="preliminary"),
        ck_observation("registered", "2025-05-10", 9999, status="registered"),
        ck_observation("cancelled", "2025-05-11", 9999, status="cancelled"),
        ck_observation("error", "2025-05-12", 9999, status="entered-in-error"),
        ck_observation("unit", "2025-05-13", 9999, unit="mmol/h"),
        ck_observation("ukat", "2025-06-01", 50, unit="ukat/L"),  # 50 × 60 = 3,000 U/L
        ck_observation("nohigh", "2025-06-20", 960, high=None),  # assumed ULN 192 (female)
    )
    root = parse(render_svg(build_timeline(record, TODAY)))
    shown = {p.get("data-resource"): p for p in points(root)}
    assert set(shown) == {"final", "amended", "corrected", "prelim", "ukat", "nohigh"}
    assert root.get("data-points") == "6"
    assert shown["ukat"].get("data-ck") == "3,000" and shown["ukat"].get("data-x-uln") == "15.0"
    assert shown["nohigh"].get("data-uln") == "192" and shown["nohigh"].get("data-x-uln") == "5.0"
    assert shown["prelim"].get("data-status") == "preliminary"
    assert [p.get("data-date") for p in points(root)] == sorted(p.get("data-date")
                                                                 for p in points(root))
    assert all(p.get("data-used") == "false" for p in points(root))


def test_log_axis_and_threshold_lines():
    record = record_of(ck_observation("a", "2025-05-01", 100),
                       ck_observation("b", "2025-06-01", 5000))  # 0.5× and 25×
    root = parse(render_svg(build_timeline(record, TODAY)))
    lines = {int(line.get("data-multiple")): float(line.get("y1"))
             for line in of_class(root, "uln-line")}
    assert sorted(lines) == [1, 4, 10, 40]
    assert lines[1] > lines[4] > lines[10] > lines[40]  # higher ×ULN is higher up
    # Log scale: 1→10× spans the same height as 4→40×.
    assert math.isclose(lines[1] - lines[10], lines[4] - lines[40], abs_tol=0.2)  # 0.1 px rounding
    by_id = {p.get("data-resource"): p for p in points(root)}
    high = float(next(by_id["b"].iter(f"{SVG}circle")).get("cy"))
    low = float(next(by_id["a"].iter(f"{SVG}circle")).get("cy"))
    assert lines[40] < high < lines[10]  # 25× between the 10× and 40× lines
    assert low > lines[1]  # 0.5× below the ULN line


def test_values_far_outside_the_lines_widen_the_axis():
    record = record_of(ck_observation("a", "2025-05-01", 5, high=200),
                       ck_observation("b", "2025-06-01", 60000, high=200))  # 0.025× and 300×
    root = parse(render_svg(build_timeline(record, TODAY)))
    top, bottom = 58, 340 - 64
    for point in points(root):
        cy = float(next(point.iter(f"{SVG}circle")).get("cy"))
        assert top < cy < bottom


def test_no_ck_says_so():
    root = parse(render_svg(build_timeline(record_of(), TODAY)))
    assert points(root) == [] and root.get("data-points") == "0"
    assert "No usable CK on file" in ET.tostring(root, encoding="unicode")


def test_text_from_the_record_is_escaped():
    statin = {
        "resourceType": "MedicationRequest", "id": "s", "status": "active", "intent": "order",
        "subject": {"reference": "Patient/p"}, "authoredOn": "2025-01-01",
        "medicationCodeableConcept": {"text": "<script>alert(1)</script> simvastatin 40 mg"},
    }
    record = record_of(statin, ck_observation("a", "2025-06-01", 500))
    svg = render_svg(build_timeline(record, TODAY))
    root = parse(svg)
    assert not [e for e in root.iter() if e.tag.endswith("script")]
    assert "&lt;script&gt;" in svg
    (band,) = of_class(root, "statin-band")
    assert band.get("data-running") == "true" and band.get("data-end") == "2025-07-01"


@pytest.mark.parametrize("name", list(SHIPPED.names()))
def test_example_timeline_has_one_point_per_ck_in_its_record(make_app, settings, name):
    example = SHIPPED.get(name)
    client = make_app(settings.with_overrides(today=example.today)).test_client()
    response = client.get("/try/timeline.svg", query_string={"example": name})
    assert response.status_code == 200 and response.mimetype == "image/svg+xml"
    root = parse(response.get_data(as_text=True))
    # Independently of the record layer: the example's CK Observations (all usable, in U/L).
    cks = sorted(
        e["resource"]["effectiveDateTime"][:10]
        for e in example.record["entry"]
        if e["resource"]["resourceType"] == "Observation"
        and e["resource"]["code"]["coding"][0]["code"] == "2157-6"
    )
    assert sorted(p.get("data-date") for p in points(root)) == cks
    given = [e for e in example.record["entry"]
             if e["resource"]["resourceType"] == "MedicationAdministration"]
    assert len(of_class(root, "ivig-mark")) == len(given)


EXPECTED_USED = {
    # example: the CK values its cards show in "Values used"
    "statin-ck-over-10x": {"2025-06-28"},
    "statin-ck-4-to-10x": {"2025-06-24"},
    "ck-high-after-statin-stop": {"2025-06-25"},
    "remission-on-ivig": {"2025-05-20", "2025-06-24"},
    "statin-rechallenge-too-soon": {"2025-05-18", "2025-06-26"},
    "ivig-renal-thrombosis-risk": set(),
}


@pytest.mark.parametrize("name", sorted(EXPECTED_USED))
def test_the_values_the_cards_used_are_highlighted(try_client, name):
    root = parse(try_client.get("/try/timeline.svg", query_string={"example": name})
                 .get_data(as_text=True))
    used = {p.get("data-date") for p in points(root) if p.get("data-used") == "true"}
    assert used == EXPECTED_USED[name]
    assert {p.get("data-date") for p in of_class(root, "used")} == used


def test_statin_bands_ivig_marks_and_drafts(try_client):
    root = parse(try_client.get("/try/timeline.svg?example=ck-high-after-statin-stop")
                 .get_data(as_text=True))
    (band,) = of_class(root, "statin-band")
    # The course drawn from its validity period (the order was first written in 2020).
    assert (band.get("data-start"), band.get("data-end")) == ("2025-01-10", "2025-04-10")
    assert band.get("data-running") == "false"
    assert of_class(root, "draft-mark") == []
    drafted = parse(try_client.get(
        "/try/timeline.svg?example=ck-high-after-statin-stop&hook=order-sign"
        "&product=rosuvastatin-10").get_data(as_text=True))
    (mark,) = of_class(drafted, "draft-mark")
    assert "rosuvastatin" in mark.get("data-label")
    remission = parse(try_client.get("/try/timeline.svg?example=remission-on-ivig")
                      .get_data(as_text=True))
    grams = {m.get("data-grams") for m in of_class(remission, "ivig-mark")}
    assert grams == {"32"} and len(of_class(remission, "ivig-mark")) == 11


def test_the_page_embeds_the_same_timeline(try_client):
    html = try_client.get("/try?example=remission-on-ivig").get_data(as_text=True)
    svg = html[html.index("<svg"): html.index("</svg>") + len("</svg>")]
    alone = try_client.get("/try/timeline.svg?example=remission-on-ivig").get_data(as_text=True)
    assert len(points(parse(svg))) == len(points(parse(alone))) == 7
