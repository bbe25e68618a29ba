"""What the IVIG order rules (IGA, DOSE, SAFE) share: when they apply, and how a value used is
shown on the card (facts with dates and units, and the caveats: converted, preliminary, not
usable, matched by name, skipped).

Pure helpers over the record; no wording beyond the short factual notes a card's "values used"
table needs.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

from cds_service.advice.model import Fact
from cds_service.record.ivig import drafted_ivig
from cds_service.record.model import LabValue, MedicationUse, PatientRecord, format_number

ORDER_HOOKS = frozenset({"order-select", "order-sign"})

# Labels of the result kinds these rules read, for facts and caveats.
KIND_LABELS = {
    "iga": "Serum IgA",
    "weight": "Weight",
    "height": "Height",
    "creatinine": "Creatinine",
    "egfr": "eGFR",
}


def ivig_order_hook(record: PatientRecord, hook: str) -> bool:
    """rules.md: "order-select, order-sign (IVIG drafted)"."""
    return hook in ORDER_HOOKS and bool(drafted_ivig(record))


def day_text(day: date | None) -> str:
    return day.isoformat() if day is not None else "date unknown"


def round_to(value: Decimal, places: int) -> Decimal:
    """Display rounding, half up (0.05 g → 0.1 g): never used for a comparison."""
    return value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


def number(value: Decimal, places: int) -> str:
    """Half-up rounded, thousands separators, no trailing zeros ("1,646", "70.5", "60")."""
    return format_number(round_to(value, places))


def lab_fact(v: LabValue, label: str | None = None, extra: str | None = None) -> Fact:
    """A result as used: value with its comparator in the rule's unit, its date and its notes."""
    notes = []
    if v.converted:
        notes.append(f"converted from {v.original}")
    if v.preliminary:
        notes.append("preliminary")
    if extra:
        notes.append(extra)
    return Fact(
        label=label or KIND_LABELS.get(v.kind, v.kind),
        value=v.display(),
        day=v.day,
        note="; ".join(notes) or None,
    )


def value_caveats(values: Iterable[LabValue | None]) -> list[str]:
    """Converted and preliminary values that drove the decision, said in words."""
    caveats = []
    for v in values:
        if v is None:
            continue
        label = KIND_LABELS.get(v.kind, v.kind)
        if v.converted:
            caveats.append(
                f"{label} converted from {v.original} to {v.display()} ({day_text(v.day)})"
            )
        if v.preliminary:
            caveats.append(f"{label} {v.display()} ({day_text(v.day)}) is a preliminary result")
    return caveats


def unusable_caveats(record: PatientRecord, kinds: Iterable[str]) -> list[str]:
    """Results of these kinds the rules could not use (e.g. "unit 'mg%' not recognised")."""
    wanted = set(kinds)
    return [
        f"{KIND_LABELS.get(u.kind, u.kind)} result of "
        f"{day_text(u.time.date() if u.time else None)} not used: {u.reason}"
        for u in record.unusable
        if u.kind in wanted
    ]


def skipped_caveats(record: PatientRecord) -> list[str]:
    return [
        f"{count} malformed {resource_type} resource{'s' if count != 1 else ''} skipped"
        for resource_type, count in record.skipped
        if count > 0
    ]


def order_caveats(uses: Iterable[MedicationUse]) -> list[str]:
    """IVIG orders recognised only by product name: the card says so."""
    return [
        f"{u.medication.display} recognised as IVIG by its name only"
        for u in uses
        if u.medication.matched_by_name
    ]


def common_caveats(
    record: PatientRecord,
    values: Iterable[LabValue | None] = (),
    kinds: Iterable[str] = (),
    uses: Iterable[MedicationUse] = (),
) -> tuple[str, ...]:
    """The caveats every IVIG order card shows, de-duplicated in order."""
    caveats = [
        *value_caveats(values),
        *unusable_caveats(record, kinds),
        *order_caveats(uses),
        *skipped_caveats(record),
    ]
    return tuple(dict.fromkeys(caveats))
