"""Serum IgA before IVIG (rules.md IGA-01, IGA-02, IGA-03).

IgA deficiency carries a risk of anaphylaxis to IVIG when anti-IgA antibodies are present
[ESID, OCTEM, TRC, GAMC]: the IgA level must be known before the first dose, and a level in the
deficiency range calls for specialist input and a low-IgA product.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from cds_service.advice.common import (
    ALL_HOOKS,
    ORDER_HOOKS,
    PATIENT_VIEW,
    card_caveats,
    ivig_order_hook,
    lab_fact,
)
from cds_service.advice.model import Advice, Fact, Suggestion
from cds_service.advice.registry import rule
from cds_service.record.ivig import drafted_ivig, ivig_status
from cds_service.record.model import LabValue, PatientRecord, format_number
from cds_service.record.series import latest
from cds_service.settings import ClinicalSettings

IGA_LOINC = "2458-8"  # IgA [Mass/volume] in Serum or Plasma
IGA_DEFICIENCY_MG_DL = Decimal("7")  # ESID: selective IgA deficiency = serum IgA < 7 mg/dL
IGA_DEFICIENCY_MIN_AGE_YEARS = 4  # ESID: the definition applies over 4 years of age
IGA_LOWER_DEFAULT = Decimal("61")  # LABIGA Mayo: adult (≥ 18 y) reference 61–356 mg/dL

IGA_KINDS = ("iga",)
AGE_NOT_CHECKED = "Age not on record: the ESID age condition (over 4 years) was not checked"


def evaluate(
    record: PatientRecord, today: date, clinical: ClinicalSettings, hook: str
) -> list[Advice]:
    advices = (
        iga_01_not_on_file(record, hook),
        iga_02_deficiency_range(record, today, hook),
        iga_03_low(record, today, hook),
    )
    return [a for a in advices if a is not None]


@rule("IGA-01", hooks=ORDER_HOOKS)
def iga_01_not_on_file(record: PatientRecord, hook: str) -> Advice | None:
    """IVIG drafted and no usable serum IgA on file: check IgA first."""
    if not ivig_order_hook(record, hook) or record.iga:
        return None
    drafts = drafted_ivig(record)
    return Advice(
        rule_id="IGA-01",
        indicator="warning",
        values={"product": drafts[0].medication.display},
        facts=(
            *(Fact("IVIG order", u.medication.display, u.authored_on) for u in drafts),
            Fact("Serum IgA", "none on file"),
        ),
        caveats=card_caveats(record, medications=drafts, unusable_kinds=IGA_KINDS),
        suggestions=(Suggestion(kind="order-lab", loinc=IGA_LOINC, recommended=True),),
    )


def _in_deficiency_range(iga: LabValue) -> bool:
    """IgA < 7 mg/dL; "<7" counts (rules.md "Value": an upper bound at or under 7 meets it)."""
    return iga.meets_below(IGA_DEFICIENCY_MG_DL)


@rule("IGA-02", hooks=ALL_HOOKS)
def iga_02_deficiency_range(record: PatientRecord, today: date, hook: str) -> Advice | None:
    """Latest IgA < 7 mg/dL and age > 4: the ESID deficiency range."""
    status = ivig_status(record, today) if hook == PATIENT_VIEW else None
    on_patient_view = status is not None and status.ongoing
    if not (ivig_order_hook(record, hook) or on_patient_view):
        return None
    iga = latest(record.iga)
    if iga is None or not _in_deficiency_range(iga):
        return None
    age = record.age_on(today)
    if age is not None and age <= IGA_DEFICIENCY_MIN_AGE_YEARS:
        return None

    drafts = drafted_ivig(record) if hook != PATIENT_VIEW else ()
    facts = [lab_fact(iga)]
    caveats = list(
        card_caveats(
            record, used=(iga,), converted=True, medications=drafts, unusable_kinds=IGA_KINDS
        )
    )
    if age is None:
        facts.append(Fact("Age", "not on record"))
        # Failing safe: an unknown age does not silence a possible deficiency.
        caveats.append(AGE_NOT_CHECKED)
    else:
        facts.append(Fact("Age", f"{age} years"))
    if status is not None and status.ongoing:
        facts.append(Fact("IVIG", "ongoing: " + ", ".join(status.ongoing_because)))
    return Advice(
        rule_id="IGA-02",
        indicator="critical",
        values={"iga": iga.display(), "iga_date": iga.day.isoformat()},
        facts=tuple(facts),
        caveats=tuple(caveats),
    )


@rule("IGA-03", hooks=ORDER_HOOKS)
def iga_03_low(record: PatientRecord, today: date, hook: str) -> Advice | None:
    """7 ≤ latest IgA < lower limit; or an upper bound that cannot exclude deficiency."""
    if not ivig_order_hook(record, hook):
        return None
    iga = latest(record.iga)
    if iga is None:
        return None
    lower = iga.ref_low if iga.ref_low is not None else IGA_LOWER_DEFAULT
    low_not_deficient = iga.meets_above(IGA_DEFICIENCY_MG_DL, inclusive=True) and iga.meets_below(
        lower
    )
    # "<10 mg/dL" is below the lower limit but may still be under 7: deficiency not excluded.
    bound_undecided = (
        iga.comparator in ("<", "<=") and not _in_deficiency_range(iga) and iga.value <= lower
    )
    if not (low_not_deficient or bound_undecided):
        return None
    # rules.md r2: IGA-03 needs age > 4, as IGA-02 does (ESID: under 5 the adult ranges do not
    # apply); an unknown age does not silence the card, it says the age was not checked.
    age = record.age_on(today)
    if age is not None and age <= IGA_DEFICIENCY_MIN_AGE_YEARS:
        return None

    drafts = drafted_ivig(record)
    limit_note = f"lower limit {format_number(lower)} mg/dL " + (
        "(lab range)" if iga.ref_low is not None else "(assumed adult range, Mayo)"
    )
    caveats = list(
        card_caveats(
            record, used=(iga,), converted=True, medications=drafts, unusable_kinds=IGA_KINDS
        )
    )
    if iga.ref_low is None:
        caveats.append(f"No lab reference range: assumed lower limit {format_number(lower)} mg/dL")
    if bound_undecided:
        caveats.append(
            f"IgA reported as {iga.display()}: deficiency (< 7 mg/dL) not excluded; ask the "
            "laboratory for the exact value or repeat the test"
        )
    if age is None:
        caveats.append(AGE_NOT_CHECKED)
    return Advice(
        rule_id="IGA-03",
        indicator="info",
        values={
            "iga": iga.display(),
            "iga_date": iga.day.isoformat(),
            "lower_limit": f"{format_number(lower)} mg/dL",
            "bound_note": "; deficiency (< 7 mg/dL) not excluded" if bound_undecided else "",
        },
        facts=(lab_fact(iga, extra=limit_note),),
        caveats=tuple(caveats),
    )
