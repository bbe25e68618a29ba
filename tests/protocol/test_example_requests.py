"""The example requests the README's curl commands use: schema-valid and answered with the cards
they were written for (clinical date pinned to 2025-07-01, as the README says)."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from cds_service.protocol.schemas import errors

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "requests"

CASES = [
    ("patient-view-statin-ck.json", "myopathy-review", {("STAT-01", "critical")}),
    ("order-select-statin.json", "statin-order-select", {("STAT-03", "warning")}),
    ("order-sign-ivig.json", "ivig-order-check",
     {("IGA-01", "warning"), ("DOSE-01", "info"), ("DOSE-02", "warning"), ("DOSE-03", "warning")}),
    # Shaped the way large EHRs send records (rules.md r2): orders by medicationReference with the
    # Medications only as _include entries (the drafts too), flawed and time-zoned Observations.
    ("patient-view-ehr-statin-flawed-ck.json", "myopathy-review", {("STAT-01", "critical")}),
    ("order-sign-ehr-ivig-referenced-doses.json", "ivig-order-check",
     {("DOSE-01", "info"), ("DOSE-03", "warning")}),
    ("order-select-ehr-resolved-hmgcr.json", "statin-order-select", {("STAT-05", "critical")}),
]


@pytest.mark.parametrize(("name", "service_id", "expected"), CASES, ids=[c[0] for c in CASES])
def test_example_request_gives_its_cards(make_app, settings, name, service_id, expected):
    body = json.loads((EXAMPLES / name).read_text())
    assert errors("request", body) == []
    client = make_app(settings.with_overrides(today=date(2025, 7, 1))).test_client()
    response = client.post(f"/cds-services/{service_id}", data=json.dumps(body),
                           content_type="application/json")
    assert response.status_code == 200, response.get_json()
    document = response.get_json()
    assert errors("response", document) == []
    got = {(c["source"]["topic"]["code"], c["indicator"]) for c in document["cards"]}
    assert expected <= got, got


def test_every_example_is_covered():
    assert sorted(p.name for p in EXAMPLES.glob("*.json")) == sorted(c[0] for c in CASES)
