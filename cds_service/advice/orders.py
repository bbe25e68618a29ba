"""The "unidentified drafted medication" notice (ORDER-UNIDENTIFIED; rules.md "Medication of an
order").

When the medication of a drafted order cannot be identified (its ``medicationReference`` resolved
nowhere, a 404 included), no statin or IVIG rule can run on it. Silence would read as "checked
and fine", so an order hook says which order went unchecked.
"""

from __future__ import annotations

from datetime import date

from cds_service.advice.common import ORDER_HOOKS, card_caveats, count_text, fired
from cds_service.advice.model import Advice, Fact
from cds_service.advice.registry import rule
from cds_service.record.model import PatientRecord
from cds_service.settings import ClinicalSettings


def evaluate(
    record: PatientRecord, today: date, clinical: ClinicalSettings, hook: str
) -> list[Advice]:
    return fired((unidentified_drafts,), record, today, clinical, hook)


@rule("ORDER-UNIDENTIFIED", hooks=ORDER_HOOKS)
def unidentified_drafts(
    record: PatientRecord, today: date, clinical: ClinicalSettings, hook: str
) -> Advice | None:
    """ORDER-UNIDENTIFIED (order-select, order-sign): a drafted order's medication is unknown."""
    if not record.unidentified_drafts:
        return None
    orders = record.unidentified_drafts
    # The first order's text in full: the card's summary shortens it when it must, and "and N
    # more" is its own value so that shortening never drops it.
    more = f" and {count_text(len(orders) - 1)} more" if len(orders) > 1 else ""
    return Advice(
        rule_id="ORDER-UNIDENTIFIED",
        indicator="info",
        values={
            "order": orders[0] or "unnamed order",
            "more_orders": more,
            "orders": "; ".join(o or "unnamed order" for o in orders),
            "count": count_text(len(orders)),
        },
        facts=tuple(
            Fact(label="Drafted order", value=o or "unnamed order", note="medication unknown")
            for o in orders
        ),
        caveats=card_caveats(record),
    )
