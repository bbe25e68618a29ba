"""What the statin and anti-HMGCR cards show beyond the shared facts (``advice.common``): the
statins named, and the anti-HMGCR evidence (a result or a diagnosis). No decisions here.
"""

from __future__ import annotations

from collections.abc import Iterable

from cds_service.advice.common import lab_fact, shorten
from cds_service.advice.model import Fact
from cds_service.record.model import ConditionFact, LabValue, MedicationUse

# Longest medication or condition text put into a summary, so the summary stays <= 139 characters.
SUMMARY_TEXT_MAX = 36
# Longest anti-HMGCR result text (a lab's own wording, "POSITIVE (>200 U)...") in a summary: with
# "anti-HMGCR " and ", preliminary" it fits STAT-05's and HMG-03's summaries.
LAB_TEXT_MAX = 26


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
    """Short wording for a summary: "anti-HMGCR 85 U, flagged POS" or "diagnosis: ...". A lab's
    own text (a result without a number, "POSITIVE (>200 U)") is cut to ``LAB_TEXT_MAX`` and its
    flags are left to the facts, which show both in full."""
    if isinstance(evidence, LabValue):
        flagged = evidence.interpretation and not evidence.qualitative
        flag = f", flagged {'/'.join(evidence.interpretation)}" if flagged else ""
        preliminary = ", preliminary" if evidence.preliminary else ""
        shown = shorten(evidence.display(), LAB_TEXT_MAX)
        return f"anti-HMGCR {shown}{shorten(flag, SUMMARY_TEXT_MAX)}{preliminary}"
    return "diagnosis: " + shorten(evidence.text, SUMMARY_TEXT_MAX)


def evidence_values(evidence: LabValue | ConditionFact) -> dict[str, str]:
    day = evidence.day
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
    return Fact(label="Diagnosis", value=evidence.text, day=evidence.day, note=note)
