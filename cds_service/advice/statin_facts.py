"""What the statin and anti-HMGCR cards show: formatted values for the templates, the values used
(facts) and what was assumed or uncertain (caveats). No decisions here.

Display only rounds: ×ULN to one decimal, numbers with thousands separators; every decision is
made on the exact values in ``cds_service.advice.statin`` / ``hmgcr``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from decimal import Decimal

from cds_service.advice.model import Fact
from cds_service.record.model import (
    CkValue,
    ConditionFact,
    LabValue,
    MedicationUse,
    PatientRecord,
    format_number,
)
from cds_service.record.statin import condition_day

# Longest medication or condition text put into a summary, so the summary stays <= 139 characters.
SUMMARY_TEXT_MAX = 36

LAB_LABELS = {
    "ck": "CK",
    "creatinine": "Creatinine",
    "hmgcr": "Anti-HMGCR",
    "egfr": "eGFR",
    "iga": "Serum IgA",
}


def shorten(text: str, limit: int = SUMMARY_TEXT_MAX) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def count_text(n: int) -> str:
    return format_number(Decimal(n))


# --- CK -------------------------------------------------------------------------------------


def times_uln_text(ck: CkValue) -> str:
    return ck.times_uln_text()


def ck_number(ck: CkValue) -> str:
    return f"{ck.comparator or ''}{format_number(ck.value)}"


def ck_values(ck: CkValue, prefix: str = "ck") -> dict[str, str]:
    """Template values of one CK: {ck}, {ck_x_uln}, {ck_date}, {ck_uln}, {ck_preliminary}."""
    return {
        prefix: ck_number(ck),
        f"{prefix}_x_uln": times_uln_text(ck),
        f"{prefix}_date": ck.day.isoformat(),
        f"{prefix}_uln": format_number(ck.uln),
        f"{prefix}_preliminary": " (preliminary)" if ck.preliminary else "",
    }


def ck_fact(ck: CkValue, label: str = "CK") -> Fact:
    notes = [
        f"assumed ULN {format_number(ck.uln)} U/L"
        if ck.uln_assumed
        else f"ULN {format_number(ck.uln)} U/L (lab)"
    ]
    if ck.converted:
        notes.append(f"converted from {ck.original}")
    if ck.preliminary:
        notes.append("preliminary")
    return Fact(
        label=label,
        value=f"{ck_number(ck)} U/L ({times_uln_text(ck)}×ULN)",
        day=ck.day,
        note="; ".join(notes),
    )


# --- other labs -----------------------------------------------------------------------------


def lab_fact(value: LabValue, label: str | None = None) -> Fact:
    notes = []
    if value.converted:
        notes.append(f"converted from {value.original}")
    if value.interpretation:
        notes.append("flagged " + ", ".join(value.interpretation))
    if value.preliminary:
        notes.append("preliminary")
    return Fact(
        label=label or LAB_LABELS.get(value.kind, value.kind),
        value=value.display(),
        day=value.day,
        note="; ".join(notes) or None,
    )


# --- medications ----------------------------------------------------------------------------


def statin_names(uses: Iterable[MedicationUse]) -> str:
    names: list[str] = []
    for use in uses:
        if use.medication.display not in names:
            names.append(use.medication.display)
    return ", ".join(names)


def statin_fact(use: MedicationUse) -> Fact:
    if use.drafted:
        state = "drafted in this order"
    elif use.end_date is not None and use.status in ("stopped", "completed"):
        state = f"{use.status}, ended {use.end_date.isoformat()}"
    else:
        state = use.status
    notes = [f"{use.resource_type} {state}"]
    if use.medication.matched_by_name:
        notes.append("statin matched by name")
    return Fact(
        label="Statin",
        value=use.medication.display,
        day=use.authored_on,
        note="; ".join(notes),
    )


# --- anti-HMGCR evidence ----------------------------------------------------------------------


def evidence_day(evidence: LabValue | ConditionFact) -> date | None:
    if isinstance(evidence, LabValue):
        return evidence.day
    return condition_day(evidence)


def evidence_text(evidence: LabValue | ConditionFact) -> str:
    """Short wording for a summary: "anti-HMGCR 85 U, flagged POS" or "diagnosis: ..."."""
    if isinstance(evidence, LabValue):
        flag = f", flagged {'/'.join(evidence.interpretation)}" if evidence.interpretation else ""
        preliminary = ", preliminary" if evidence.preliminary else ""
        return f"anti-HMGCR {evidence.display()}{flag}{preliminary}"
    return "diagnosis: " + shorten(evidence.text)


def evidence_values(evidence: LabValue | ConditionFact) -> dict[str, str]:
    day = evidence_day(evidence)
    return {
        "hmgcr": evidence_text(evidence),
        "hmgcr_date": day.isoformat() if day else "undated",
    }


def evidence_fact(evidence: LabValue | ConditionFact) -> Fact:
    if isinstance(evidence, LabValue):
        return lab_fact(evidence)
    note = f"Condition {evidence.clinical_status or 'active'}"
    if evidence.onset is None and evidence.recorded is not None:
        note += "; dated by recordedDate"
    elif evidence.onset is None:
        note += "; no onset or recorded date"
    return Fact(label="Diagnosis", value=evidence.text, day=condition_day(evidence), note=note)


# --- caveats --------------------------------------------------------------------------------


def caveats(
    record: PatientRecord,
    *,
    cks: Iterable[CkValue] = (),
    labs: Iterable[LabValue] = (),
    statins: Iterable[MedicationUse] = (),
    unusable_kinds: Iterable[str] = ("ck",),
) -> tuple[str, ...]:
    """What the card must say was assumed or uncertain (rules.md "What every card must show"):
    assumed ULN, preliminary results, statins matched by name, results of the card's area that
    could not be used, malformed resources skipped. In order, without repeats."""
    notes: list[str] = []
    for ck in cks:
        if ck.uln_assumed:
            notes.append(
                f"Assumed ULN {format_number(ck.uln)} U/L for the CK of {ck.day.isoformat()} "
                f"(no reference range on the result; default for sex {record.gender or 'unknown'})"
            )
        if ck.preliminary:
            notes.append(f"The CK of {ck.day.isoformat()} is a preliminary result")
    for value in labs:
        if value.preliminary:
            label = LAB_LABELS.get(value.kind, value.kind)
            notes.append(f"The {label} of {value.day.isoformat()} is a preliminary result")
    for use in statins:
        if use.medication.matched_by_name:
            notes.append(f"Statin matched by name: {use.medication.display}")
    kinds = tuple(unusable_kinds)
    for result in record.unusable:
        if result.kind in kinds:
            label = LAB_LABELS.get(result.kind, result.kind)
            when = f" of {result.time.date().isoformat()}" if result.time else ""
            notes.append(f"{label} result{when} not used: {result.reason}")
    for resource_type, count in record.skipped:
        if count:
            plural = "s" if count != 1 else ""
            notes.append(f"{count} malformed {resource_type} resource{plural} skipped")
    return tuple(dict.fromkeys(notes))
