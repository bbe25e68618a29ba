"""IVIG dose by dosing weight (rules.md DOSE-01, DOSE-02, DOSE-03, DOSE-04).

The dose is grams per kilogram of the dosing weight (ideal, adjusted or actual per the site
policy, rules.md "Dosing weight"): induction 2 g/kg over 2–5 days, maintenance 1 g/kg every
4 weeks, at most 2 g/kg per 4-week cycle [OCTA, ONT, SEED0, SEED4, NBA]. DOSE-01 shows the
arithmetic a pharmacist checks; DOSE-02 catches a dose calculated on the actual weight of an
overweight patient; DOSE-03 catches a cycle over the maximum; DOSE-04 says when no dose can be
checked. All arithmetic is exact; only the displayed numbers are rounded (0.1 g, 0.1 kg, whole
mL and mL/h).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal

from cds_service.advice.common import (
    ORDER_HOOKS,
    card_caveats,
    ivig_order_hook,
    lab_fact,
    value_caveats,
)
from cds_service.advice.model import Advice, Fact, Suggestion
from cds_service.advice.registry import rule
from cds_service.advice.safety import renal_risks, thrombosis_risks
from cds_service.record.dosing import (
    DosingWeight,
    dose_grams,
    dosing_weight,
    grams_per_cycle,
    latest_height,
    latest_weight,
    needs_height,
)
from cds_service.record.ivig import (
    doses_without_grams_between,
    drafted_ivig,
    grams_given_between,
    ivig_given_between,
)
from cds_service.record.model import MedicationUse, PatientRecord, format_number
from cds_service.record.series import days_between, latest
from cds_service.settings import ClinicalSettings

INDUCTION_G_PER_KG = Decimal("2")  # OCTA: 2 g/kg divided over 2–5 consecutive days [ONT, SEED4]
INDUCTION_DAYS = (2, 5)  # OCTA: "over 2–5 consecutive days"
MAINTENANCE_G_PER_KG = Decimal("1")  # SEED4: 1 g/kg monthly; PRIV/GAMG 1 g/kg maintenance
MAX_G_PER_KG_28D = Decimal("2")  # ONT, OCTA: at most 2 g/kg per 4-week cycle (rules.md DOSE-03)
# rules.md DOSE-03: fires above 2 g/kg + 10 % (a margin only; the suggestion uses 2 g/kg).
MAX_G_PER_KG_28D_MARGIN = Decimal("2.2")
CYCLE_DAYS = 28  # ONT, OCTA: one cycle every 4 weeks
TEN_PERCENT_G_PER_ML = Decimal("0.1")  # a 10 % product holds 0.1 g/mL (10 mL per g)
RATE_INITIAL_ML_KG_MIN = Decimal("0.01")  # OCTA: initial 1 mg/kg/min (0.01 mL/kg/min)
RATE_MAX_ML_KG_MIN = Decimal("0.04")  # OCTA: maximum 4 mg/kg/min in dermatomyositis
RATE_AT_RISK_ML_KG_MIN = Decimal("0.03")  # OCTA: ≤ 3.3 mg/kg/min for renal/thrombosis risk
MINUTES_PER_HOUR = 60
# rules.md DOSE-02: actual weight more than 10 % over the dosing weight [NBA, OCTEU] ...
WEIGHT_EXCESS_FRACTION = Decimal("0.10")
# ... and an order within ±10 % of k g/kg × actual weight, k = 1 (maintenance) or 2 (induction).
DOSE_MATCH_FRACTION = Decimal("0.10")
ACTUAL_WEIGHT_MULTIPLES = (1, 2)

WEIGHT_KINDS = ("weight", "height")
TENTH = Decimal("0.1")


def evaluate(
    record: PatientRecord, today: date, clinical: ClinicalSettings, hook: str
) -> list[Advice]:
    if not ivig_order_hook(record, hook):
        return []
    dosing = dosing_weight(record, today, clinical)
    if dosing is None:
        return [dose_04_no_dosing_weight(record, today, clinical)]
    advices = (
        dose_01_calculation(record, today, clinical, dosing),
        dose_02_actual_weight_dose(record, today, dosing),
        dose_03_over_cycle_maximum(record, today, dosing),
    )
    return [a for a in advices if a is not None]


# --- shared display ---------------------------------------------------------------------------


def kg(value: Decimal) -> str:
    return f"{format_number(value, 1)} kg"


def grams(value: Decimal) -> str:
    return f"{format_number(value, 1)} g"


def basis_text(dosing: DosingWeight) -> str:
    """Which weight was used and why, in the card's words."""
    if dosing.actual_reason is not None:
        return f"actual weight ({dosing.actual_reason})"
    if dosing.basis == "actual":
        return "actual weight (site policy)"
    return f"{dosing.basis} body weight"


def _per_day(total: Decimal, days: int, rounding: str = ROUND_HALF_UP) -> Decimal:
    return (total / days).quantize(TENTH, rounding=rounding)


def _order_text(use: MedicationUse, dosing: DosingWeight | None) -> str:
    """E.g. "100 g/day × 2 days = 200 g"; the order as written when it is not in grams."""
    per_dose = dose_grams(use.dose, use.medication, dosing)
    total = grams_per_cycle(use, dosing)
    if use.dose is None or per_dose is None or total is None:
        return use.dose.original if use.dose is not None else "no dose"
    days = use.dose.days
    day_word = "day" if days == 1 else "days"
    return f"{grams(per_dose)}/day × {days} {day_word} = {grams(total)}"


def _unconverted(use: MedicationUse) -> str:
    """Why a drafted IVIG has no grams: no dose yet (an unfinished draft) or one not in grams."""
    if use.dose is None:
        return f"{use.medication.display}: no dose in grams stated on the order yet"
    return f"{use.medication.display}: dose '{use.dose.original}' could not be converted to grams"


def _order_fact(use: MedicationUse, dosing: DosingWeight | None) -> Fact:
    return Fact(f"IVIG order ({use.medication.display})", _order_text(use, dosing), use.authored_on)


def _weight_facts(dosing: DosingWeight) -> tuple[Fact, ...]:
    facts = [lab_fact(dosing.weight)]
    if dosing.height is not None:
        facts.append(lab_fact(dosing.height))
    return tuple(facts)


def _dosing_caveats(record: PatientRecord, dosing: DosingWeight) -> list[str]:
    caveats = list(
        card_caveats(
            record,
            used=(dosing.weight, dosing.height),
            converted=True,
            medications=drafted_ivig(record),
            unusable_kinds=WEIGHT_KINDS,
        )
    )
    if dosing.sex_assumed:
        caveats.append("Sex not recorded as male or female: female Devine formula used (lower)")
    if dosing.age_unknown:
        caveats.append("No birth date on record: adult assumed for the dosing weight")
    return caveats


# --- DOSE-01 ----------------------------------------------------------------------------------


def infusion_rate_ml_h(actual_kg: Decimal, ml_kg_min: Decimal) -> Decimal:
    """Rate (mL/h) = actual weight × mL/kg/min × 60 (OCTA: rates on body weight)."""
    return actual_kg * ml_kg_min * MINUTES_PER_HOUR


@rule("DOSE-01", hooks=ORDER_HOOKS)
def dose_01_calculation(
    record: PatientRecord, today: date, clinical: ClinicalSettings, dosing: DosingWeight
) -> Advice:
    """The dose arithmetic: weights, induction, maintenance, volumes and infusion rates."""
    used = dosing.used_kg
    induction = INDUCTION_G_PER_KG * used
    maintenance = MAINTENANCE_G_PER_KG * used
    risk = renal_risks(record, today, clinical) + thrombosis_risks(record, today)
    max_rate = RATE_AT_RISK_ML_KG_MIN if risk else RATE_MAX_ML_KG_MIN
    initial_ml_h = infusion_rate_ml_h(dosing.actual_kg, RATE_INITIAL_ML_KG_MIN)
    max_ml_h = infusion_rate_ml_h(dosing.actual_kg, max_rate)

    # Each figure is written once and shown both in the summary values and in the calculation.
    dosing_kg, basis = kg(used), basis_text(dosing)
    induction_g, maintenance_g = grams(induction), grams(maintenance)
    initial_text, max_text = format_number(initial_ml_h, 0), format_number(max_ml_h, 0)
    per_day_g = {days: grams(induction / days) for days in INDUCTION_DAYS}

    rows: list[tuple[str, str]] = [("Actual weight", kg(dosing.actual_kg))]
    if dosing.height_cm is not None:
        rows.append(("Height", f"{format_number(dosing.height_cm, 1)} cm"))
    if dosing.ideal_kg is not None and dosing.adjusted_kg is not None:
        rows.append(("Ideal body weight (Devine)", kg(dosing.ideal_kg)))
        rows.append(("Adjusted weight (IBW + 0.4 × (actual − IBW))", kg(dosing.adjusted_kg)))
    rows.append(("Dosing weight used", f"{dosing_kg}: {basis}"))
    rows.append(
        (
            "Induction 2 g/kg",
            f"{induction_g} = {_ml_at_10_percent(induction)} mL at 10 %",
        )
    )
    for days in INDUCTION_DAYS:
        rows.append((f"Induction over {days} days", f"{per_day_g[days]}/day"))
    rows.append(
        (
            "Maintenance 1 g/kg every 4 weeks",
            f"{maintenance_g} = {_ml_at_10_percent(maintenance)} mL at 10 %",
        )
    )
    rows.append(
        (
            f"Initial rate {RATE_INITIAL_ML_KG_MIN} mL/kg/min × actual weight",
            f"{initial_text} mL/h",
        )
    )
    rate_label = f"Maximum rate {max_rate} mL/kg/min × actual weight"
    if risk:
        # Age ≥ 65 is both a renal and a thrombosis risk: name it once.
        rate_label += " (capped: " + ", ".join(dict.fromkeys(f.reason for f in risk)) + ")"
    rows.append((rate_label, f"{max_text} mL/h"))

    drafts = drafted_ivig(record)
    caveats = _dosing_caveats(record, dosing)
    # The results behind the rate cap are values this card used (converted, preliminary).
    caveats += value_caveats(record, (f.value for f in risk), converted=True)
    for use in drafts:
        total = grams_per_cycle(use, dosing)
        if total is None:
            caveats.append(
                f"{_unconverted(use)}, so it was not checked against the dosing weight"
            )
            continue
        rows.append(
            (
                f"This order ({use.medication.display})",
                f"{_order_text(use, dosing)} = {format_number(total / used, 2)} g/kg of "
                "dosing weight",
            )
        )
        concentration = use.medication.concentration_g_per_ml
        if concentration is not None and concentration != TEN_PERCENT_G_PER_ML:
            caveats.append(
                f"{use.medication.display} is not a 10 % product: volumes and rates above "
                "assume 10 %"
            )

    return Advice(
        rule_id="DOSE-01",
        indicator="info",
        values={
            "dosing_kg": dosing_kg,
            "basis": basis,
            "policy": dosing.policy,
            "induction_g": induction_g,
            "induction_2d_g": per_day_g[2],
            "induction_5d_g": per_day_g[5],
            "maintenance_g": maintenance_g,
            "initial_ml_h": initial_text,
            "max_ml_h": max_text,
        },
        facts=(*_weight_facts(dosing), *(_order_fact(u, dosing) for u in drafts)),
        caveats=tuple(dict.fromkeys(caveats)),
        rows=tuple(rows),
    )


def _ml_at_10_percent(grams_: Decimal) -> str:
    return format_number(grams_ / TEN_PERCENT_G_PER_ML, 0)


# --- one dose per draft (DOSE-02 and DOSE-03) -------------------------------------------------


def actual_weight_multiple(cycle_g: Decimal, actual_kg: Decimal) -> int | None:
    """k (1 or 2) when the order is within ±10 % of k g/kg × actual weight, else None."""
    for k in ACTUAL_WEIGHT_MULTIPLES:
        target = k * actual_kg
        if abs(cycle_g - target) <= DOSE_MATCH_FRACTION * target:
            return k
    return None


@dataclass(frozen=True)
class DraftedIvig:
    """One IVIG drafted in this call with its grams per cycle (None: not convertible)."""

    use: MedicationUse
    cycle_g: Decimal | None

    @property
    def days(self) -> int:
        return self.use.dose.days if self.use.dose is not None else 1

    @property
    def per_day_g(self) -> Decimal | None:
        return self.cycle_g / self.days if self.cycle_g is not None else None


@dataclass(frozen=True)
class ActualWeightDose:
    """DOSE-02 on one draft: its grams are ≈ k g/kg × actual weight."""

    draft: DraftedIvig
    k: int
    corrected_g: Decimal  # k g/kg × dosing weight, per cycle

    @property
    def per_day_g(self) -> Decimal:
        return _per_day(self.corrected_g, self.draft.days)


@dataclass(frozen=True)
class CycleTotal:
    """DOSE-03's numbers: G28, every IVIG drafted in this call, the maximum and its margin."""

    start: date
    end: date
    given_g: Decimal  # G28: grams given from 27 days before today through today
    drafts: tuple[DraftedIvig, ...]
    max_g: Decimal  # 2 g/kg × dosing weight: the usual maximum per 4-week cycle
    margin_g: Decimal  # 2.2 g/kg × dosing weight: DOSE-03 fires above it

    @property
    def ordered_g(self) -> Decimal:
        """The grams per cycle of every drafted IVIG whose dose converts to grams."""
        return sum((d.cycle_g for d in self.drafts if d.cycle_g is not None), Decimal(0))

    @property
    def total_g(self) -> Decimal:
        return self.given_g + self.ordered_g

    @property
    def over(self) -> bool:
        return self.total_g > self.margin_g

    @property
    def remaining_g(self) -> Decimal:
        """rules.md r2: the remaining allowance = 2 g/kg × dosing weight − G28 (may be ≤ 0)."""
        return self.max_g - self.given_g

    def allowance_per_day(self, draft: DraftedIvig) -> Decimal | None:
        """This draft's share of the remaining allowance per day, or None when its dose is not
        known in grams. Several drafts share it in proportion to their grams, so no draft is ever
        raised; the daily dose is rounded down (the allowance is a ceiling); 0 = nothing left."""
        if self.remaining_g <= 0:
            return Decimal(0)
        if draft.cycle_g is None or self.ordered_g <= 0:
            return None
        share = draft.cycle_g * self.remaining_g / self.ordered_g
        return max(_per_day(share, draft.days, ROUND_DOWN), Decimal(0))


def drafted_grams(record: PatientRecord, dosing: DosingWeight | None) -> tuple[DraftedIvig, ...]:
    return tuple(DraftedIvig(u, grams_per_cycle(u, dosing)) for u in drafted_ivig(record))


def actual_weight_doses(
    record: PatientRecord, dosing: DosingWeight
) -> tuple[ActualWeightDose, ...]:
    """DOSE-02 judges each drafted IVIG by its own grams (rules.md r2): (actual − dosing weight)
    / actual > 10 % and the draft ≈ 1 or 2 g/kg × actual weight."""
    if dosing.excess_fraction <= WEIGHT_EXCESS_FRACTION:
        return ()
    found = []
    for draft in drafted_grams(record, dosing):
        if draft.cycle_g is None:
            continue
        k = actual_weight_multiple(draft.cycle_g, dosing.actual_kg)
        if k is not None:
            found.append(ActualWeightDose(draft, k, k * dosing.used_kg))
    return tuple(found)


def cycle_window(today: date) -> tuple[date, date]:
    """The 28 days up to today: today and the 27 days before it (both included).

    A dose given exactly 28 days ago belongs to the previous 4-week cycle, so a regular
    2 g/kg every 4 weeks does not count twice (rules.md r2).
    """
    return today - timedelta(days=CYCLE_DAYS - 1), today


def cycle_total(record: PatientRecord, today: date, dosing: DosingWeight) -> CycleTotal:
    start, end = cycle_window(today)
    return CycleTotal(
        start=start,
        end=end,
        given_g=grams_given_between(record, start, end),
        drafts=drafted_grams(record, dosing),
        max_g=MAX_G_PER_KG_28D * dosing.used_kg,
        margin_g=MAX_G_PER_KG_28D_MARGIN * dosing.used_kg,
    )


def one_dose_per_draft(
    record: PatientRecord, today: date, dosing: DosingWeight
) -> dict[int, Decimal]:
    """The one daily dose each draft is set to, by its position in ``drafted_ivig``: the smaller
    of DOSE-02's and DOSE-03's when both fire on it (rules.md r2), so two cards never set one
    draft to two doses. 0 means: nothing remains, delete the draft."""
    drafts = drafted_ivig(record)
    candidates: dict[int, list[Decimal]] = {}
    for found in actual_weight_doses(record, dosing):
        candidates.setdefault(_position(drafts, found.draft.use), []).append(found.per_day_g)
    cycle = cycle_total(record, today, dosing)
    if cycle.over:
        for draft in cycle.drafts:
            allowance = cycle.allowance_per_day(draft)
            if allowance is not None:
                candidates.setdefault(_position(drafts, draft.use), []).append(allowance)
    return {i: min(doses) for i, doses in candidates.items()}


def _position(drafts: tuple[MedicationUse, ...], use: MedicationUse) -> int:
    return next(i for i, d in enumerate(drafts) if d is use)


def _dose_suggestion(use: MedicationUse, dose_g: Decimal, recommended: bool) -> Suggestion:
    if dose_g <= 0:
        return Suggestion(kind="delete-draft", target=use, recommended=recommended)
    days = use.dose.days if use.dose is not None else 1
    return Suggestion(
        kind="update-draft", target=use, dose_g=dose_g, days=days, recommended=recommended
    )


def _suggestion_text(dose_g: Decimal, days: int) -> str:
    if dose_g <= 0:
        return "delete the order"
    day_word = "day" if days == 1 else "days"
    return f"{grams(dose_g)}/day × {days} {day_word}"


# --- DOSE-02 ----------------------------------------------------------------------------------


@rule("DOSE-02", hooks=ORDER_HOOKS)
def dose_02_actual_weight_dose(
    record: PatientRecord, today: date, dosing: DosingWeight
) -> Advice | None:
    """(actual − dosing weight) / actual > 10 % and a draft ≈ 1 or 2 g/kg × actual weight."""
    found = actual_weight_doses(record, dosing)
    if not found:
        return None
    drafts = drafted_ivig(record)
    doses = one_dose_per_draft(record, today, dosing)
    first = found[0]
    suggestions: list[Suggestion] = []
    rows: list[tuple[str, str]] = []
    caveats = _dosing_caveats(record, dosing)
    for item in found:
        use, days = item.draft.use, item.draft.days
        dose = doses[_position(drafts, use)]
        label = f" ({use.medication.display})" if len(found) > 1 else ""
        rows += [
            (f"Order{label}", _order_text(use, dosing)),
            (
                f"{item.k} g/kg × actual weight {kg(dosing.actual_kg)}",
                grams(item.k * dosing.actual_kg),
            ),
            (f"{item.k} g/kg × dosing weight {kg(dosing.used_kg)}", grams(item.corrected_g)),
        ]
        if dose <= 0:
            # DOSE-03: nothing remains in this 4-week cycle; its card suggests deleting the draft.
            caveats.append(
                f"{use.medication.display}: no IVIG remains in this 4-week cycle (2 g/kg already "
                "given), so no corrected dose is suggested"
            )
            continue
        rows.append((f"Corrected order{label}", _suggestion_text(dose, days)))
        suggestions.append(_dose_suggestion(use, dose, recommended=not suggestions))
    first_dose = doses[_position(drafts, first.draft.use)]
    return Advice(
        rule_id="DOSE-02",
        indicator="warning",
        values={
            "ordered_g": grams(first.draft.cycle_g or Decimal(0)),
            "k": str(first.k),
            "actual_kg": kg(dosing.actual_kg),
            "dosing_kg": kg(dosing.used_kg),
            "basis": basis_text(dosing),
            "excess_percent": format_number(dosing.excess_fraction * 100, 0),
            "corrected_g": grams(first.corrected_g),
            # the daily dose suggested (the smaller one when DOSE-03 fires too)
            "corrected_per_day_g": grams(max(first_dose, Decimal(0))),
            "suggested_dose_g": grams(max(first_dose, Decimal(0))),
            "suggested": _suggestion_text(first_dose, first.draft.days),
            "days": str(first.draft.days),
        },
        facts=(*_weight_facts(dosing), *(_order_fact(f.draft.use, dosing) for f in found)),
        caveats=tuple(dict.fromkeys(caveats)),
        rows=tuple(rows),
        suggestions=tuple(suggestions),
    )


# --- DOSE-03 ----------------------------------------------------------------------------------


@rule("DOSE-03", hooks=ORDER_HOOKS)
def dose_03_over_cycle_maximum(
    record: PatientRecord, today: date, dosing: DosingWeight
) -> Advice | None:
    """G28 + the grams per cycle of every IVIG drafted in this call > 2.2 g/kg × dosing weight
    (rules.md r2: several drafts add up; a draft without a dose in grams adds nothing, so G28
    alone over the limit still fires)."""
    cycle = cycle_total(record, today, dosing)
    if not cycle.drafts or not cycle.over:
        return None
    drafts = drafted_ivig(record)
    doses = one_dose_per_draft(record, today, dosing)
    remaining = max(cycle.remaining_g, Decimal(0))
    caveats = _dosing_caveats(record, dosing)
    for unknown in doses_without_grams_between(record, cycle.start, cycle.end):
        caveats.append(
            f"IVIG given on {unknown.day.isoformat()} has no dose in grams: not counted in the "
            "28-day total"
        )
    suggestions: list[Suggestion] = []
    rows: list[tuple[str, str]] = [("Given in the last 28 days", grams(cycle.given_g))]
    planned: list[str] = []
    for draft in cycle.drafts:
        use = draft.use
        rows.append((f"This order ({use.medication.display})", _order_text(use, dosing)))
        if draft.cycle_g is None:
            caveats.append(f"{_unconverted(use)}: not counted in the 28-day total")
        dose = doses.get(_position(drafts, use))
        if dose is None:
            continue
        planned.append(_suggestion_text(dose, draft.days))
        current = draft.per_day_g
        if dose > 0 and current is not None and dose >= current:
            continue  # already within its share: nothing to change
        suggestions.append(_dose_suggestion(use, dose, recommended=False))
    rows += [
        ("Total", grams(cycle.total_g)),
        (f"Maximum 2 g/kg × dosing weight {kg(dosing.used_kg)}", grams(cycle.max_g)),
        ("Remaining allowance (maximum − given)", grams(remaining)),
    ]
    first = cycle.drafts[0]
    first_dose = doses.get(0)
    days = first.days
    return Advice(
        rule_id="DOSE-03",
        indicator="warning",
        values={
            "ordered_g": grams(cycle.ordered_g),
            "given_28d_g": grams(cycle.given_g),
            "total_g": grams(cycle.total_g),
            "max_g": grams(cycle.max_g),
            "margin_g": grams(cycle.margin_g),
            "dosing_kg": kg(dosing.used_kg),
            "basis": basis_text(dosing),
            "remaining_g": grams(remaining),
            "remaining_per_day_g": grams(
                first_dose if first_dose is not None and first_dose > 0 else Decimal(0)
            ),
            "suggested_dose_g": grams(
                first_dose if first_dose is not None and first_dose > 0 else Decimal(0)
            ),
            "suggested": "; ".join(planned) or "no dose can be suggested",
            "days": str(days),
            "drafts": str(len(cycle.drafts)),
        },
        facts=(
            *_weight_facts(dosing),
            *(_order_fact(d.use, dosing) for d in cycle.drafts),
            *(
                Fact(
                    "IVIG given",
                    grams(g.grams) if g.grams is not None else "dose not recorded",
                    g.day,
                    note=f"{g.resource_type} {g.status}",
                )
                for g in ivig_given_between(record, cycle.start, cycle.end)
            ),
        ),
        caveats=tuple(dict.fromkeys(caveats)),
        rows=tuple(rows),
        suggestions=tuple(suggestions),
    )


# --- DOSE-04 ----------------------------------------------------------------------------------


@rule("DOSE-04", hooks=ORDER_HOOKS)
def dose_04_no_dosing_weight(
    record: PatientRecord, today: date, clinical: ClinicalSettings
) -> Advice:
    """No usable weight within 90 days, or no usable height while the policy needs one."""
    weight = latest_weight(record, today, clinical)
    height = latest_height(record)
    weight_missing = weight is None or weight.comparator is not None or weight.value <= 0
    height_missing = needs_height(clinical.ivig_dosing_weight) and (
        height is None or height.comparator is not None or height.value <= 0
    )
    missing = " and ".join(
        name for name, absent in (("weight", weight_missing), ("height", height_missing)) if absent
    )
    facts: list[Fact] = []
    if weight_missing:
        older = latest(record.weight)
        if older is not None:
            facts.append(lab_fact(older, extra=f"{days_between(older.day, today)} days old"))
        else:
            facts.append(Fact("Weight", "none on file"))
    if height_missing:
        facts.append(Fact("Height", "none on file"))
    drafts = drafted_ivig(record)
    facts.extend(_order_fact(u, None) for u in drafts)
    return Advice(
        rule_id="DOSE-04",
        indicator="warning",
        values={
            "missing": missing,
            "weight_days": str(clinical.weight_recent_days),
            "policy": clinical.ivig_dosing_weight,
        },
        facts=tuple(facts),
        caveats=card_caveats(record, medications=drafts, unusable_kinds=WEIGHT_KINDS),
    )
