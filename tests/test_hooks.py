"""The hook declarations (``cds_service.hooks``) and what reads them: request validation, the
context an EHR sends (try-it, ``myocds call``), which drafts count as drafted."""

from __future__ import annotations

from typing import get_args

import pytest
from flask.testing import FlaskClient

from cds_service.hooks import HOOKS, ORDER_HOOKS, Drafted, HookDeclaration, HookName
from cds_service.protocol.schemas import errors, request_schema, validator
from cds_service.services import PREFETCH_TEMPLATES, SERVICES

DRAFT = {"resourceType": "MedicationRequest", "id": "d1", "status": "draft", "intent": "order"}


def test_the_hook_names_type_and_the_declarations_agree() -> None:
    assert HOOKS.names() == get_args(HookName) == ("patient-view", "order-select", "order-sign")
    assert ORDER_HOOKS == {h.name for h in HOOKS if h.takes_drafts}
    assert {s.hook for s in SERVICES} == set(HOOKS.names())


@pytest.mark.parametrize(
    ("hook", "drafted"),
    [
        ("patient-view", Drafted.NONE),
        ("order-select", Drafted.SELECTED),
        ("order-sign", Drafted.ALL),
    ],
)
def test_which_drafts_count_as_drafted(hook: str, drafted: Drafted) -> None:
    assert HOOKS.drafted(hook) is drafted
    assert HOOKS.drafted("no-such-hook") is Drafted.NONE


def test_the_context_an_ehr_sends_on_each_hook() -> None:
    view = HOOKS["patient-view"].context("p1", "Practitioner/u", [DRAFT])
    assert view == {"userId": "Practitioner/u", "patientId": "p1"}  # no drafts on patient-view
    select = HOOKS["order-select"].context("p1", "Practitioner/u", [DRAFT], full_urls=["urn:x"])
    assert select["draftOrders"] == {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"fullUrl": "urn:x", "resource": DRAFT}],
    }
    assert select["selections"] == ["MedicationRequest/d1"]
    sign = HOOKS["order-sign"].context("p1", "Practitioner/u", [DRAFT])
    assert sign["draftOrders"]["entry"] == [{"resource": DRAFT}]
    assert "selections" not in sign


def test_a_context_moved_to_another_hook_loses_the_fields_that_hook_has_not() -> None:
    select = HOOKS["order-select"].context("p1", "u", [DRAFT])
    assert set(HOOKS["order-sign"].fit(select)) == {"userId", "patientId", "draftOrders"}
    assert set(HOOKS["patient-view"].fit(select)) == {"userId", "patientId"}
    assert HOOKS["order-select"].fit(select) == select


def test_every_shipped_prefetch_template_applies_to_every_shipped_hook() -> None:
    for hook in HOOKS:
        assert hook.prefetch_keys(PREFETCH_TEMPLATES) == tuple(PREFETCH_TEMPLATES)
    lonely = HookDeclaration(name="x", title="x", fields=("userId",), required=())
    assert lonely.prefetch_keys(PREFETCH_TEMPLATES) == ()


def test_the_request_schema_takes_each_hooks_requirements_from_its_declaration() -> None:
    parts = request_schema()["allOf"]
    assert [p["if"]["properties"]["hook"]["const"] for p in parts] == list(HOOKS.names())
    strict = HOOKS.plus(
        HookDeclaration(name="x-hook", title="x", fields=("userId", "patientId"),
                        required=("userId", "patientId"))
    )
    body = {"hook": "x-hook", "hookInstance": "1", "context": {"patientId": "p"}}
    assert errors("request", body) == []  # the shipped schema knows no x-hook
    found = [e.message for e in validator("request", strict).iter_errors(body)]
    assert found == ["'userId' is a required property"]


@pytest.mark.parametrize("hook", ["patient-view", "order-select", "order-sign"])
def test_a_call_without_the_patient_is_refused_naming_it(client: FlaskClient, hook: str) -> None:
    service = next(s for s in SERVICES if s.hook == hook)
    body = {"hook": hook, "hookInstance": "c0ffee", "context": {"userId": "Practitioner/u"}}
    response = client.post(f"/cds-services/{service.id}", json=body)
    assert response.status_code == 400
    assert response.get_json()["issue"][0]["expression"] == ["context.patientId"]
