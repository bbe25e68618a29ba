"""The orders being written: ``context.draftOrders`` and ``context.selections``.

A draft is unfinished by nature and read as far as it goes (rules.md r2 "Reading a resource"); the
R4B model only says whether it may be re-emitted (an update suggestion) as it stands. A DSTU2
``MedicationOrder`` draft is read as the ``MedicationRequest`` it became (``parse.read_resource``),
and a selection naming it names that MedicationRequest.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cds_service.errors import Unprocessable
from cds_service.fhir.parse import InvalidResource, is_valid_r4, read_resource

Resource = dict[str, Any]

# The Sandbox's Rx View selects its draft by its own type: "MedicationOrder/order-123" with a DSTU2
# server (clients.md §1.1); the draft itself arrives converted to a MedicationRequest, same id.
_DSTU2_SELECTION = re.compile(r"(^|/)MedicationOrder/(?=[^/]+/?$)")


@dataclass
class Drafts:
    orders: list[Resource] = field(default_factory=list)
    # Medication entries of draftOrders, with the fullUrl they came with: not orders.
    medications: list[tuple[str | None, Resource]] = field(default_factory=list)
    # (resourceType, id) of the drafts the R4B model rejects: never re-emitted by a suggestion.
    invalid: set[tuple[str, str | None]] = field(default_factory=set)


def read_drafts(context: Mapping[str, Any]) -> Drafts:
    """The drafted resources of ``context.draftOrders``; ``Unprocessable`` pointing at the entry
    that is not a FHIR resource at all."""
    drafts = Drafts()
    draft_orders = context.get("draftOrders")
    if draft_orders is None:
        return drafts
    if not isinstance(draft_orders, dict) or draft_orders.get("resourceType") != "Bundle":
        raise Unprocessable("context.draftOrders is not a Bundle", expression="context.draftOrders")
    entries = draft_orders.get("entry") or []
    if not isinstance(entries, list):
        raise Unprocessable(
            "context.draftOrders.entry is not an array", expression="context.draftOrders.entry"
        )
    for index, entry in enumerate(entries):
        where = f"context.draftOrders.entry[{index}]"
        resource = entry.get("resource") if isinstance(entry, dict) else None
        try:
            parsed = read_resource(resource, draft=True)
        except InvalidResource as exc:
            raise Unprocessable(
                f"{where} is not a FHIR resource ({exc})", expression=where
            ) from None
        full_url = entry.get("fullUrl") if isinstance(entry.get("fullUrl"), str) else None
        if parsed["resourceType"] == "Medication":
            drafts.medications.append((full_url, parsed))
            continue
        if not is_valid_r4(parsed):
            identity = parsed.get("id")
            drafts.invalid.add(
                (parsed["resourceType"], identity if isinstance(identity, str) else None)
            )
        drafts.orders.append(parsed)
    return drafts


def read_selections(context: Mapping[str, Any]) -> tuple[str, ...]:
    """``context.selections`` ("MedicationRequest/id"), a DSTU2 MedicationOrder named as the
    MedicationRequest it became."""
    return tuple(
        _DSTU2_SELECTION.sub(r"\1MedicationRequest/", s)
        for s in context.get("selections") or ()
        if isinstance(s, str)
    )
