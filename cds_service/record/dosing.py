"""IVIG dosing weight and ordered grams (rules.md Definitions "Dosing weight", "Ordered IVIG dose").

Pure functions of the record. Arithmetic is exact ``Decimal`` throughout; rounding belongs to the
display (the advice layer), never to the comparisons.

Dosing weight, rules.md:
- Devine ideal body weight (IBW): male 50 kg, female 45.5 kg, + 2.3 kg per inch over 60 inches
  (inches unrounded) [NBA, clinical-evidence.md §6].
- Adjusted weight = IBW + 0.4 × (actual − IBW) [NBA "dose-determining weight"].
- The site policy (setting ``ivig_dosing_weight``) picks ideal, adjusted or actual; actual weight
  is used instead when actual < IBW, height < 152.4 cm (60 in), or age < 18.
- Weight: the latest usable within 90 days (setting); height: the latest usable ever.
- Under ``ideal``/``adjusted`` no usable height means no dosing weight (DOSE-04 asks for one);
  under ``actual`` a weight is enough.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from cds_service.record.model import LabValue, Medication, MedicationUse, OrderedDose, PatientRecord
from cds_service.record.series import latest, within_last
from cds_service.settings import ClinicalSettings

CM_PER_INCH = Decimal("2.54")
# Devine formula [NBA; clinical-evidence.md §6]: base weight at 60 inches, then per inch over it.
DEVINE_BASE_KG_MALE = Decimal("50")
DEVINE_BASE_KG_FEMALE = Decimal("45.5")
DEVINE_KG_PER_INCH = Decimal("2.3")
DEVINE_BASE_INCHES = Decimal("60")
# rules.md "Dosing weight": actual weight below 60 in (152.4 cm), where Devine is not defined [NBA].
SHORT_STATURE_CM = Decimal("152.4")
# rules.md "Dosing weight": actual weight under 18 years [NBA: not for age < 18].
ADULT_AGE_YEARS = 18
# Adjusted (dose-determining) weight = IBW + 0.4 × (actual − IBW) [NBA].
ADJUSTMENT_FACTOR = Decimal("0.4")

# Why the actual weight was used although the policy is ideal or adjusted (rules.md).
REASON_SHORT = "height < 152.4 cm"
REASON_CHILD = "age < 18"
REASON_BELOW_IBW = "actual < IBW"

POLICIES_NEEDING_HEIGHT = frozenset({"ideal", "adjusted"})


@dataclass(frozen=True)
class DosingWeight:
    """The weight an IVIG dose is calculated on, with every number behind it."""

    policy: str  # the site policy: ideal | adjusted | actual
    basis: str  # the weight actually used: ideal | adjusted | actual
    used_kg: Decimal
    actual_kg: Decimal
    ideal_kg: Decimal | None  # None only when there is no usable height (policy actual)
    adjusted_kg: Decimal | None
    weight: LabValue  # the weight result used (latest usable within the window)
    height: LabValue | None  # the height result used (latest usable ever)
    # Set when the policy asked for ideal/adjusted but actual was used (REASON_* above).
    actual_reason: str | None = None
    # Devine has male and female formulas only; other/unknown sex uses the female one (lower).
    sex_assumed: bool = False
    age_unknown: bool = False  # no birth date: treated as an adult

    @property
    def height_cm(self) -> Decimal | None:
        return self.height.value if self.height is not None else None

    @property
    def excess_fraction(self) -> Decimal:
        """(actual − dosing weight) / actual, the DOSE-02 test."""
        return (self.actual_kg - self.used_kg) / self.actual_kg


def needs_height(policy: str) -> bool:
    return policy in POLICIES_NEEDING_HEIGHT


def latest_weight(
    record: PatientRecord, today: date, clinical: ClinicalSettings
) -> LabValue | None:
    """The latest usable weight within ``weight_recent_days`` of today (day 90 included)."""
    return latest(
        [w for w in record.weight if within_last(w.day, today, clinical.weight_recent_days)]
    )


def latest_height(record: PatientRecord) -> LabValue | None:
    """The latest usable height, however old (adult height does not change)."""
    return latest(record.height)


def devine_ibw_kg(height_cm: Decimal, gender: str | None) -> Decimal:
    """Devine ideal body weight; other/unknown sex gets the female (lower) formula."""
    base = DEVINE_BASE_KG_MALE if gender == "male" else DEVINE_BASE_KG_FEMALE
    inches = height_cm / CM_PER_INCH
    return base + DEVINE_KG_PER_INCH * (inches - DEVINE_BASE_INCHES)


def adjusted_weight_kg(ideal_kg: Decimal, actual_kg: Decimal) -> Decimal:
    return ideal_kg + ADJUSTMENT_FACTOR * (actual_kg - ideal_kg)


def dosing_weight(
    record: PatientRecord, today: date, clinical: ClinicalSettings
) -> DosingWeight | None:
    """The dosing weight under the site policy, or None when it cannot be computed (DOSE-04)."""
    policy = clinical.ivig_dosing_weight
    weight = latest_weight(record, today, clinical)
    if weight is None or weight.value <= 0 or weight.comparator is not None:
        # A bound ("<150 kg") is no weight to dose on.
        return None
    height = latest_height(record)
    if height is not None and (height.value <= 0 or height.comparator is not None):
        height = None
    if height is None and needs_height(policy):
        return None

    actual = weight.value
    ideal = adjusted = None
    if height is not None:
        ideal = devine_ibw_kg(height.value, record.gender)
        adjusted = adjusted_weight_kg(ideal, actual)
    age = record.age_on(today)

    basis, used, reason = "actual", actual, None
    if needs_height(policy) and height is not None and ideal is not None and adjusted is not None:
        reason = _actual_weight_reason(actual, ideal, height.value, age)
        if reason is None:
            basis = policy
            used = ideal if policy == "ideal" else adjusted
    return DosingWeight(
        policy=policy,
        basis=basis,
        used_kg=used,
        actual_kg=actual,
        ideal_kg=ideal,
        adjusted_kg=adjusted,
        weight=weight,
        height=height,
        actual_reason=reason,
        sex_assumed=height is not None and record.gender not in ("male", "female"),
        age_unknown=age is None,
    )


def _actual_weight_reason(
    actual_kg: Decimal, ideal_kg: Decimal, height_cm: Decimal, age: int | None
) -> str | None:
    """rules.md: use actual weight when height < 152.4 cm, age < 18, or actual < IBW."""
    if height_cm < SHORT_STATURE_CM:
        return REASON_SHORT
    if age is not None and age < ADULT_AGE_YEARS:
        return REASON_CHILD
    if actual_kg < ideal_kg:
        return REASON_BELOW_IBW
    return None


def dose_grams(
    dose: OrderedDose | None, medication: Medication, dosing: DosingWeight | None = None
) -> Decimal | None:
    """One day's dose in grams, or None when it cannot be converted (rules.md "Ordered IVIG
    dose"): g as is; mg / 1000; mL × the product strength when it is known; g/kg × the dosing
    weight when there is one. Read for orders and for doses given alike."""
    if dose is None or dose.amount <= 0:
        return None
    if dose.unit == "g":
        return dose.amount
    if dose.unit == "mg":
        return dose.amount / 1000
    if dose.unit == "mL":
        concentration = medication.concentration_g_per_ml
        return dose.amount * concentration if concentration else None
    if dose.unit == "g/kg":
        return dose.amount * dosing.used_kg if dosing is not None else None
    return None


def grams_per_cycle(use: MedicationUse, dosing: DosingWeight | None) -> Decimal | None:
    """The ordered grams per cycle: the daily dose × its number of days (rules.md)."""
    per_dose = dose_grams(use.dose, use.medication, dosing)
    if per_dose is None or use.dose is None or use.dose.days < 1:
        return None
    return per_dose * use.dose.days
