"""What every advice area shares: the hooks a rule is asked on, and how a card shows what it used
(template values, the "Values used" facts) and what was assumed or uncertain (caveats, rules.md
"What every card must show"). No decisions here.

Display only rounds: ×ULN to one decimal, other numbers half up to the places a card asks for;
every decision is made on the exact values in the rule modules.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import date
from decimal import Decimal

from cds_service.advice.model import Advice, Fact
from cds_service.advice.registry import answers
from cds_service.hooks import ORDER_HOOKS, ORDER_SELECT, PATIENT_VIEW, HookName
from cds_service.record.ivig import drafted_ivig
from cds_service.record.model import (
    CkValue,
    LabValue,
    Medication,
    MedicationUse,
    PatientRecord,
    format_number,
)
from cds_service.settings import ClinicalSettings

# --- hooks ----------------------------------------------------------------------------------

ALL_HOOKS: frozenset[HookName] = ORDER_HOOKS | {PATIENT_VIEW}
# rules.md HMG-01/HMG-02, CONT-03: chart open, and an order being chosen (not at signing).
VIEW_AND_SELECT: frozenset[HookName] = frozenset({PATIENT_VIEW, ORDER_SELECT})
ONLY_PATIENT_VIEW: frozenset[HookName] = frozenset({PATIENT_VIEW})


def ivig_order_hook(record: PatientRecord, hook: str) -> bool:
    """rules.md: "order-select, order-sign (IVIG drafted)"."""
    return hook in ORDER_HOOKS and bool(drafted_ivig(record))


Rule = Callable[[PatientRecord, date, ClinicalSettings, str], Advice | None]


def fired(
    rules: Sequence[Rule], record: PatientRecord, today: date, clinical: ClinicalSettings, hook: str
) -> list[Advice]:
    """The advice of each rule that fires, in the order given; a rule is asked only on the hooks
    its ``@rule`` declaration names."""
    found = (rule(record, today, clinical, hook) for rule in rules if answers(rule, hook))
    return [advice for advice in found if advice is not None]


# --- words and numbers ----------------------------------------------------------------------

CK_LOINC = "2157-6"  # Creatine kinase [Enzymatic activity/volume] in Serum or Plasma

# How a card names each kind of result (RULE_UNITS keys), in facts and caveats.
LABELS = {
    "ck": "CK",
    "hmgcr": "Anti-HMGCR",
    "iga": "Serum IgA",
    "weight": "Weight",
    "height": "Height",
    "creatinine": "Creatinine",
    "egfr": "eGFR",
}


def label(kind: str) -> str:
    return LABELS.get(kind, kind)


def count_text(n: int) -> str:
    return format_number(Decimal(n))


# --- values used ----------------------------------------------------------------------------


# How a card writes a comparator in words: "CK ≥ 3,080 U/L, at least 10.0×ULN" (rules.md "CK as a
# lower bound").
_COMPARATOR_SIGNS = {"<": "<", "<=": "≤", ">": ">", ">=": "≥"}
_COMPARATOR_WORDS = {"<": "under ", "<=": "at most ", ">": "over ", ">=": "at least "}


def ck_values(ck: CkValue, prefix: str = "ck") -> dict[str, str]:
    """Template values of one CK: {ck}, {ck_x_uln}, {ck_date}, {ck_uln}, {ck_preliminary}, and
    the bound in words: {ck_shown} ("≥ 3,080", "6,950") and {ck_x_uln_shown} ("at least 10.0",
    "22.6")."""
    sign = _COMPARATOR_SIGNS.get(ck.comparator or "", "")
    words = _COMPARATOR_WORDS.get(ck.comparator or "", "")
    times_uln = ck.times_uln_text()  # worked out once: shown with and without its comparator
    unsigned = times_uln[len(ck.comparator or "") :]
    return {
        prefix: ck.number_text(),
        f"{prefix}_x_uln": times_uln,
        f"{prefix}_date": ck.day.isoformat(),
        f"{prefix}_uln": format_number(ck.uln),
        f"{prefix}_preliminary": " (preliminary)" if ck.preliminary else "",
        f"{prefix}_shown": f"{sign} {format_number(ck.value)}" if sign else format_number(ck.value),
        f"{prefix}_x_uln_shown": f"{words}{unsigned}",
    }


def ck_fact(ck: CkValue, name: str = "CK", *, days_ago: int | None = None) -> Fact:
    """A CK as used: value and ×ULN, its date, where the ULN came from, converted, preliminary."""
    notes = [] if days_ago is None else [f"{count_text(days_ago)} days ago"]
    if ck.uln_assumed:
        notes.append(f"assumed ULN {format_number(ck.uln)} U/L")
    else:
        notes.append(f"ULN {format_number(ck.uln)} U/L (lab)")
    if ck.converted:
        notes.append(f"converted from {ck.original}")
    if ck.preliminary:
        notes.append("preliminary")
    return Fact(
        label=name,
        value=f"{ck.display()} ({ck.times_uln_text()}×ULN)",
        day=ck.day,
        note="; ".join(notes),
    )


def lab_fact(value: LabValue, name: str | None = None, extra: str | None = None) -> Fact:
    """A result as used: value with its comparator in the rule's unit, its date and its notes."""
    notes = []
    if value.converted:
        notes.append(f"converted from {value.original}")
    if value.interpretation:
        notes.append("flagged " + ", ".join(value.interpretation))
    if value.preliminary:
        notes.append("preliminary")
    if extra:
        notes.append(extra)
    return Fact(
        label=name or label(value.kind),
        value=value.display(),
        day=value.day,
        note="; ".join(notes) or None,
    )


# --- caveats --------------------------------------------------------------------------------


def _drug_class(medication: Medication) -> str | None:
    if medication.is_statin:
        return "Statin"
    if medication.is_ivig:
        return "IVIG"
    if medication.is_estrogen:
        return "Estrogen"
    return None


def card_caveats(
    record: PatientRecord,
    *,
    used: Iterable[LabValue | None] = (),
    converted: bool = False,
    extra: Iterable[str] = (),
    medications: Iterable[MedicationUse] = (),
    unusable_kinds: Iterable[str] = (),
) -> tuple[str, ...]:
    """What the card must say was assumed or uncertain, in order, without repeats:

    - the ``value_caveats`` of the values ``used``;
    - the rule's own ``extra`` notes;
    - ``medications`` classified only by name (rules.md "the card then says 'matched by name'");
    - results of ``unusable_kinds`` that could not be used ("unit ‹u› not recognised");
    - malformed resources skipped by the fhir layer.
    """
    notes = value_caveats(record, used, converted=converted)
    notes.extend(extra)
    for use in medications:
        drug_class = _drug_class(use.medication)
        if use.medication.matched_by_name and drug_class is not None:
            notes.append(f"{drug_class} matched by name: {use.medication.display}")
    kinds = set(unusable_kinds)
    for result in record.unusable:
        if result.kind in kinds:
            when = f" of {result.time.date().isoformat()}" if result.time else ""
            notes.append(f"{label(result.kind)} result{when} not used: {result.reason}")
    for resource_type, count in record.skipped:
        if count > 0:
            plural = "s" if count != 1 else ""
            notes.append(f"{count} malformed {resource_type} resource{plural} skipped")
    return tuple(dict.fromkeys(notes))


def value_caveats(
    record: PatientRecord, used: Iterable[LabValue | None], *, converted: bool = False
) -> list[str]:
    """Of each value a decision used: an assumed CK ULN; a conversion, only when ``converted``
    (the IVIG order cards, whose "Values used" table does not show every value behind the
    decision); a preliminary result."""
    notes: list[str] = []
    for value in used:
        if value is None:
            continue
        if isinstance(value, CkValue) and value.uln_assumed:
            notes.append(
                f"Assumed ULN {format_number(value.uln)} U/L for the CK of "
                f"{value.day.isoformat()} (no reference range on the result; default for sex "
                f"{record.gender or 'unknown'})"
            )
        if converted and value.converted:
            notes.append(
                f"{label(value.kind)} converted from {value.original} to {value.display()} "
                f"({value.day.isoformat()})"
            )
        if value.preliminary:
            notes.append(
                f"{label(value.kind)} {value.display()} ({value.day.isoformat()}) is a "
                "preliminary result"
            )
    return notes
