"""The Medication an order refers to (rules.md "Medication of an order").

Medication references (``medicationReference``) of the drafts and the gathered orders are looked
up among the Medications that arrived (draftOrders, prefetch, fetched pages) and the rest read from
``fhirServer``; a Medication that cannot be had is left out, not fatal: the record then reports the
medication as unidentified. ``#id`` (contained) references are the record builder's.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from cds_service.fhir.client import Budget, FetchFailed, FhirServer
from cds_service.fhir.elements import FHIR_ID, as_dict, as_text

log = logging.getLogger(__name__)

Resource = dict[str, Any]

# Order-like resources whose medication[x] may be a reference to a Medication.
_MEDICATION_USERS = frozenset(
    {"MedicationRequest", "MedicationStatement", "MedicationAdministration", "MedicationDispense"}
)
_MEDICATION_REF = re.compile(rf"^Medication/({FHIR_ID})(?:/_history/[^/]+)?$")


@dataclass(frozen=True)
class Resolved:
    fetches: int = 0  # Medication reads sent
    found: int = 0  # reads that returned the Medication asked for
    unresolved: int = 0  # references left unresolved (404, error, another server, not sent)


def add_medication(into: dict[str, Resource], medication: Resource, *keys: str | None) -> None:
    """Keep ``medication`` under "Medication/<id>" and every key it arrived with (fullUrl)."""
    if as_text(medication.get("id")):
        into.setdefault(f"Medication/{medication['id']}", medication)
    for key in keys:
        if key:
            into.setdefault(key, medication)


def resolve_medications(
    orders: Iterable[Resource],
    medications: dict[str, Resource],
    base: str | None,
    server: Callable[[], FhirServer | None],
    budget: Budget,
) -> Resolved:
    """Add to ``medications`` the Medication of every order's reference not already at hand,
    read from fhirServer (``server()`` opens the conversation, ``None`` when it may not be had)."""
    wanted: dict[str, list[str]] = {}  # "Medication/<id>" to read -> literal references to it
    unresolved = 0
    for resource in orders:
        medication = resource.get("medicationReference")
        if medication is None or resource.get("resourceType") not in _MEDICATION_USERS:
            continue  # (most orders name their medication by code: no reference to look at)
        reference = as_dict(medication).get("reference")
        if not isinstance(reference, str) or reference.startswith("#"):
            continue  # contained: resolved by the record builder against the resource
        if reference in medications:
            continue
        target = _medication_target(reference, base)
        if target is not None and target in medications:
            medications[reference] = medications[target]
            continue
        if target is None:
            unresolved += 1  # a urn:uuid not sent, or a Medication on another server
            continue
        wanted.setdefault(target, []).append(reference)
    if not wanted:
        return Resolved(unresolved=unresolved)
    fhir = server()
    if fhir is None:  # no fhirServer, or not allowed: the references stay unresolved
        return Resolved(unresolved=unresolved + sum(len(refs) for refs in wanted.values()))
    tasks = {target: _reader(fhir, target, budget) for target in wanted}
    done, pending = fhir.client.run(tasks, budget)
    found = 0
    for target, medication in done.items():
        if medication is None:
            unresolved += len(wanted[target])
            continue
        found += 1
        add_medication(medications, medication, target, *wanted[target])
    unresolved += sum(len(wanted[target]) for target in pending)
    if unresolved:
        log.info("medication references left unresolved: %d", unresolved)
    return Resolved(fetches=len(done), found=found, unresolved=unresolved)


def _medication_target(reference: str, base: str | None) -> str | None:
    """``Medication/<id>`` for a relative reference or an absolute one on fhirServer, else None."""
    relative = reference
    if "://" in reference:
        if base is None or not reference.startswith(base + "/"):
            return None
        relative = reference[len(base) + 1 :]
    match = _MEDICATION_REF.match(relative)
    return f"Medication/{match.group(1)}" if match else None


def _reader(fhir: FhirServer, target: str, budget: Budget) -> Callable[[], Resource | None]:
    def read() -> Resource | None:
        """A Medication read; any failure is "not found" here (the record says "unidentified")."""
        try:
            return fhir.read(fhir.url(target), "Medication", target.partition("/")[2], budget)
        except FetchFailed:
            return None

    return read
