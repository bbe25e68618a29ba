"""The orders being written: ``context.draftOrders`` and ``context.selections`` on the order
hooks, or the fields another hook's declaration names (``hooks.HookDeclaration``).

A draft is unfinished by nature and read as far as it goes (rules.md r2 "Reading a resource"), as
every other resource is: its flaws are counted (``Drafts.flawed``, the same cheap check as
prefetch, ``parse.has_flaws``) for the call's log line. The whole R4B model checks a draft only
where it is about to be re-emitted: an update suggestion checks the draft it starts from
(``cards_render.suggestions``) and leaves itself out when the model rejects it. A DSTU2
``MedicationOrder`` draft is read as the ``MedicationRequest`` it became (``parse.read_resource``),
and a selection naming it names that MedicationRequest.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cds_service.errors import Unprocessable
from cds_service.fhir.parse import InvalidResource, has_flaws, read_resource

Resource = dict[str, Any]

# The Sandbox's Rx View selects its draft by its own type: "MedicationOrder/order-123" with a DSTU2
# server (clients.md §1.1); the draft itself arrives converted to a MedicationRequest, same id.
_DSTU2_SELECTION = re.compile(r"(^|/)MedicationOrder/(?=[^/]+/?$)")


@dataclass
class Drafts:
    orders: list[Resource] = field(default_factory=list)
    # Medication entries of draftOrders, with the fullUrl they came with: not orders.
    medications: list[tuple[str | None, Resource]] = field(default_factory=list)
    # How many of ``orders`` have flaws (``has_flaws``): unfinished ones, as a rule.
    flawed: int = 0


def read_drafts(context: Mapping[str, Any], field_name: str | None = "draftOrders") -> Drafts:
    """The drafted resources of the Bundle in ``context[field_name]`` (none when the hook has no
    drafts field); ``Unprocessable`` pointing at the entry that is not a FHIR resource at all."""
    drafts = Drafts()
    draft_orders = context.get(field_name) if field_name is not None else None
    if draft_orders is None:
        return drafts
    where = f"context.{field_name}"
    if not isinstance(draft_orders, dict) or draft_orders.get("resourceType") != "Bundle":
        raise Unprocessable(f"{where} is not a Bundle", expression=where)
    entries = draft_orders.get("entry") or []
    if not isinstance(entries, list):
        raise Unprocessable(f"{where}.entry is not an array", expression=f"{where}.entry")
    for index, entry in enumerate(entries):
        where = f"context.{field_name}.entry[{index}]"
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
        if has_flaws(parsed):
            drafts.flawed += 1
        drafts.orders.append(parsed)
    return drafts


def read_selections(
    context: Mapping[str, Any], field_name: str | None = "selections"
) -> tuple[str, ...]:
    """``context[field_name]`` ("MedicationRequest/id"), a DSTU2 MedicationOrder named as the
    MedicationRequest it became."""
    selections = context.get(field_name) if field_name is not None else None
    return tuple(
        _DSTU2_SELECTION.sub(r"\1MedicationRequest/", s)
        for s in (selections if isinstance(selections, list) else ())
        if isinstance(s, str)
    )
