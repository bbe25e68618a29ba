"""What the statin and anti-HMGCR cards show beyond the shared facts (``advice.common``): the
statins named, and the anti-HMGCR evidence (a result or a diagnosis). No decisions here.
"""

from __future__ import annotations

from collections.abc import Iterable

from cds_service.advice.common import lab_fact
from cds_service.advice.model import Fact
from cds_service.record.model import ConditionFact, LabValue, MedicationUse

# --- medications ----------------------------------------------------------------------------


def statin_names(uses: Iterable[MedicationUse]) -> str:
    """The statins' names, each once, in order."""
    return ", ".join(dict.fromkeys(use.medication.display for use in uses))


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


def evidence_text(evidence: LabValue | ConditionFact) -> str:
    """The evidence in a few words, in full: "anti-HMGCR 85 U", "anti-HMGCR POSITIVE (>200 U)"
    (a result without a number: the lab's own text) or "diagnosis: ...". The card's summary
    shortens it when it must (``cards_render``), never the advice."""
    if isinstance(evidence, LabValue):
        return f"anti-HMGCR {evidence.display()}"
    return f"diagnosis: {evidence.text}"


def evidence_notes(evidence: LabValue | ConditionFact) -> str:
    """What qualifies a numeric result, after its text: ", flagged H, preliminary" or "". Apart
    from ``evidence_text`` so that shortening a long lab text never cuts "preliminary" off the
    summary. A result without a number leaves its flags to the facts, which show them."""
    if not isinstance(evidence, LabValue):
        return ""
    flagged = evidence.interpretation and not evidence.qualitative
    flag = f", flagged {'/'.join(evidence.interpretation)}" if flagged else ""
    return flag + (", preliminary" if evidence.preliminary else "")


def evidence_values(evidence: LabValue | ConditionFact) -> dict[str, str]:
    """{hmgcr} (``evidence_text``), {hmgcr_notes} (``evidence_notes``) and {hmgcr_date}."""
    day = evidence.day
    return {
        "hmgcr": evidence_text(evidence),
        "hmgcr_notes": evidence_notes(evidence),
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
    return Fact(label="Diagnosis", value=evidence.text, day=evidence.day, note=note)
