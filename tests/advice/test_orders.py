"""ORDER-UNIDENTIFIED: an order hook says which drafted order's medication could not be
identified (rules.md "Medication of an order")."""

from __future__ import annotations

import pytest

from cds_service.advice import orders
from cds_service.services import ORDER_UNIDENTIFIED, find_service
from cds_service.settings import ClinicalSettings
from tests.advice import builders as b
from tests.advice.cards import check_card, template

TODAY = b.TODAY
CLINICAL = ClinicalSettings()


@pytest.mark.parametrize("hook", ["order-select", "order-sign"])
def test_order_hooks_name_the_unidentified_order(hook: str) -> None:
    record = b.record(hook=hook, unidentified_drafts=("Medication/abc",))
    (advice,) = orders.evaluate(record, TODAY, CLINICAL, hook)
    assert advice.rule_id == ORDER_UNIDENTIFIED == "ORDER-UNIDENTIFIED"
    assert advice.indicator == "info"
    assert advice.values["order"] == "Medication/abc"
    assert advice.values["count"] == "1"
    assert [(f.label, f.value) for f in advice.facts] == [("Drafted order", "Medication/abc")]
    assert not advice.ck_trend and advice.suggestions == ()
    assert check_card(advice) == (
        "Medication not identified for Medication/abc: no statin or IVIG check ran on it"
    )


def test_silent_on_patient_view_and_when_everything_was_identified() -> None:
    record = b.record(unidentified_drafts=("Medication/abc",))
    assert orders.evaluate(record, TODAY, CLINICAL, "patient-view") == []
    assert orders.evaluate(b.record(hook="order-sign"), TODAY, CLINICAL, "order-sign") == []


def test_several_orders_long_names_and_skipped_resources() -> None:
    names = (
        "urn:uuid:9b1f0c4e-5e0b-4f0e-9d6a-2b7f1c3d4e5f (Immune globulin 10% intravenous)",
        "Medication/xyz",
        "",
    )
    record = b.record(hook="order-sign", unidentified_drafts=names, skipped=(("Medication", 1),))
    (advice,) = orders.evaluate(record, TODAY, CLINICAL, "order-sign")
    assert advice.values["count"] == "3"
    # The first order's name in full: the card shortens it, never "and 2 more".
    assert advice.values["order"] == names[0]
    assert advice.values["more_orders"] == " and 2 more"
    assert advice.values["orders"].endswith("; Medication/xyz; unnamed order")
    assert advice.caveats == ("1 malformed Medication resource skipped",)
    # Too long for the summary: cut at a word boundary, "and 2 more" kept.
    assert check_card(advice) == (
        "Medication not identified for urn:uuid:9b1f0c4e-5e0b-4f0e-9d6a-2b7f1c3d4e5f (Immune\u2026"
        " and 2 more: no statin or IVIG check ran on it"
    )


def test_declared_on_the_statin_order_service_only() -> None:
    for hook, suffix in (("order-select", "select"), ("order-sign", "check")):
        statin_service = find_service(f"statin-order-{suffix}", hook)
        ivig_service = find_service(f"ivig-order-{suffix}", hook)
        assert statin_service is not None and ORDER_UNIDENTIFIED in statin_service.rules
        assert ivig_service is not None and ORDER_UNIDENTIFIED not in ivig_service.rules
    assert set(template(ORDER_UNIDENTIFIED)["hooks"]) == {"order-select", "order-sign"}
