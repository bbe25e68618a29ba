"""GET /cds-services: derived from SERVICES, schema-valid, no null or empty members."""

from __future__ import annotations

from cds_service.protocol.schemas import errors
from cds_service.services import SERVICES


def test_discovery_lists_every_declared_service_once(client):
    response = client.get("/cds-services")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    services = response.get_json()["services"]
    assert [(s["id"], s["hook"]) for s in services] == [(s.id, s.hook) for s in SERVICES]
    for entry, declared in zip(services, SERVICES, strict=True):
        assert entry["title"] == declared.title
        assert entry["description"] == declared.description
        assert entry["prefetch"] == declared.prefetch


def test_discovery_is_schema_valid_and_has_no_empty_members(client):
    document = client.get("/cds-services").get_json()
    assert errors("discovery", document) == []
    for entry in document["services"]:
        assert all(value not in (None, "", [], {}) for value in entry.values()), entry
        assert "usageRequirements" not in entry or entry["usageRequirements"]


def test_discovery_covers_the_hooks_rules_md_needs(client):
    pairs = {(s["id"], s["hook"]) for s in client.get("/cds-services").get_json()["services"]}
    assert ("myopathy-review", "patient-view") in pairs
    assert {("statin-order-select", "order-select"), ("statin-order-check", "order-sign"),
            ("ivig-order-select", "order-select"), ("ivig-order-check", "order-sign")} <= pairs


def test_one_id_per_hook_so_the_sandbox_keeps_every_service(client):
    """The CDS Hooks Sandbox keys services by id (clients.md §1.1): an id under two hooks would
    leave one of them unreachable there."""
    ids = [s["id"] for s in client.get("/cds-services").get_json()["services"]]
    assert len(ids) == len(set(ids))


def test_prefetch_templates_use_only_2_0_tokens(client):
    for entry in client.get("/cds-services").get_json()["services"]:
        for template in entry["prefetch"].values():
            assert "{{context.patientId}}" in template
            assert "ofType(" not in template and "today()" not in template


def test_discovery_schema_rejects_null_and_empty_members():
    document = {"services": [{"hook": "patient-view", "id": "x", "description": "d",
                              "title": None, "prefetch": {}}]}
    found = errors("discovery", document)
    assert any(e.startswith("services[0].title ") for e in found), found
    assert any(e.startswith("services[0].prefetch ") for e in found), found


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}
