"""What the ``fhir`` layer hands to ``record.build``: the resources of one hook call.

Everything here is plain JSON (``dict``) in R4 shape, already tolerated (DSTU2 ``MedicationOrder``
drafts converted, the Sandbox's non-array ``category`` wrapped) but not validated as a whole
(rules.md r2 "Reading a resource"): the record reads each element it needs defensively.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any


def _empty() -> Mapping[str, Any]:
    return MappingProxyType({})


@dataclass(frozen=True)
class FetchStats:
    """How the data was had, for the request log (no identifiers, no URLs)."""

    fetches: int = 0  # HTTP requests sent to fhirServer (search pages + reads)
    fetch_ms: float = 0.0  # wall-clock time of the fetch phases (keys, then medication reads)
    keys_fetched: tuple[str, ...] = ()  # prefetch keys that were absent and fetched
    # Keys whose search had more pages than MYOCDS_FHIR_PAGE_CAP allowed: their data is partial.
    truncated: tuple[str, ...] = ()
    medications_fetched: int = 0  # Medication reads that returned a Medication
    medications_unresolved: int = 0  # Medication references left unresolved (404, error, elsewhere)


@dataclass(frozen=True)
class FhirData:
    # Every resource gathered (prefetch + fetched), Bundles unpacked, each read as far as it goes,
    # duplicates (same resourceType/id) kept once, in the service's prefetch key order. Medication
    # resources are not here: they are all in ``medications``.
    resources: tuple[dict[str, Any], ...]
    # The drafted resources of context.draftOrders (R4; a DSTU2 MedicationOrder is converted to a
    # MedicationRequest). Medication entries of draftOrders go to ``medications``, not here.
    drafts: tuple[dict[str, Any], ...]
    # context.selections, e.g. ("MedicationRequest/request-123",)
    selections: tuple[str, ...]
    # Medication resources by key: "Medication/<id>", every fullUrl they arrived with, and the
    # literal reference text they were fetched for. Look a medicationReference.reference up as
    # written; a reference that could not be resolved is absent. "#id" (contained) references are
    # resolved by the record builder against the referring resource.
    medications: Mapping[str, dict[str, Any]] = field(default_factory=_empty)
    # resourceType -> number of Bundle entries that could not be read at all (not a JSON object,
    # no resourceType string) and so were skipped. Labels are R4 resource type names or "unknown".
    skipped: Mapping[str, int] = field(default_factory=_empty)
    # resourceType -> number of resources (in ``resources`` and ``medications``) read past a flaw:
    # an element unknown to R4 or of the wrong JSON kind, a required element missing, an extension
    # without url, a compared code outside its R4 value set as written (``fhir.parse.has_flaws``).
    flawed: Mapping[str, int] = field(default_factory=_empty)
    # How many of ``drafts`` were read past a flaw (the same check as ``flawed``): unfinished
    # drafts, as a rule. Whether one may be re-emitted is the suggestion's check, against the
    # whole R4B model, when it would be (``cards_render.suggestions``).
    flawed_drafts: int = 0
    stats: FetchStats = field(default_factory=FetchStats)

    def of_type(self, resource_type: str) -> tuple[dict[str, Any], ...]:
        return tuple(r for r in self.resources if r.get("resourceType") == resource_type)
