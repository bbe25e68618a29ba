"""The normalized patient record: what the advice functions read.

Built once per hook call by ``cds_service.record.build.build_record`` from the FHIR resources the
``fhir`` layer gathered. Frozen dataclasses; every value keeps its provenance (resource type and
id, time, the value and unit as the lab wrote them) so a card can show exactly what it used.

Conventions:
- ``value`` is a ``Decimal`` in the rule's unit (``RULE_UNITS``), converted exactly (rules.md
  "Units": 0.07 g/L is exactly 7 mg/dL).
- ``comparator`` keeps the bound: ``None`` (exact), ``"<"``, ``"<="``, ``">"``, ``">="``
  (``≤``/``≥`` are normalised to ``<=``/``>=``). Compare with ``meets_below``/``meets_above``,
  never with ``<`` on ``value`` directly: a bound meets a condition only as rules.md "Value"
  says.
- Times are timezone-aware ``datetime``s in the offset the source wrote (a date-only FHIR value is
  midnight UTC); they compare as instants. ``day`` is the calendar date as written, the one the
  rules count days with (rules.md "Day of a time", r2: never converted to UTC).
- Sequences are tuples sorted oldest → newest, so ``[-1]`` is "the latest".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, TypeVar

_T = TypeVar("_T")


def quick_init(cls: type[_T]) -> type[_T]:
    """Give a frozen dataclass an ``__init__`` that stores its fields straight in its ``__dict__``.

    A frozen dataclass's own ``__init__`` sets each field through ``object.__setattr__`` (about
    0.2 µs a field); a call builds some hundreds of these values (one per result and order), so
    this one assigns each field to the instance's ``__dict__`` (a fifth faster again than one
    ``__dict__.update`` with keywords, which builds a dict first): same parameters, order and
    defaults (a ``default_factory`` is called per instance), still frozen, equal and hashed as
    before. For dataclasses without ``__post_init__``, ``slots`` or ``init=False`` fields.
    """
    params, stores = [], []
    namespace: dict[str, Any] = {"_MISSING": MISSING}
    for f in fields(cls):  # type: ignore[arg-type]
        if not f.init or getattr(cls, "__post_init__", None) is not None:
            raise TypeError(f"quick_init does not handle {cls.__name__}.{f.name}")
        if f.default is not MISSING:
            namespace[f"_d_{f.name}"] = f.default
            params.append(f"{f.name}=_d_{f.name}")
            stores.append(f"d[{f.name!r}] = {f.name}")
        elif f.default_factory is not MISSING:
            namespace[f"_f_{f.name}"] = f.default_factory
            params.append(f"{f.name}=_MISSING")
            stores.append(f"d[{f.name!r}] = _f_{f.name}() if {f.name} is _MISSING else {f.name}")
        else:
            params.append(f.name)
            stores.append(f"d[{f.name!r}] = {f.name}")
    source = (
        f"def __init__(self, {', '.join(params)}):\n"
        "    d = self.__dict__\n"
        + "".join(f"    {store}\n" for store in stores)
    )
    exec(source, namespace)  # noqa: S102 - generated from the class's own field names only
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    cls.__init__ = init  # type: ignore[method-assign]
    return cls

RULE_UNITS: dict[str, str] = {
    "ck": "U/L",
    "iga": "mg/dL",
    "weight": "kg",
    "height": "cm",
    "creatinine": "mg/dL",
    "egfr": "mL/min/1.73m2",
    "hmgcr": "U",  # lab arbitrary units, no conversion between them (rules.md)
}

USABLE_STATUSES = frozenset({"final", "amended", "corrected", "preliminary"})
# rules.md "Active statin", "Statin stop date", "IVIG ongoing": a MedicationRequest active or
# on-hold is in force (the patient is on it).
ACTIVE_ORDER_STATUSES = frozenset({"active", "on-hold"})
# A Condition the clinician refuted or entered in error is not a fact about the patient.
VOID_VERIFICATION = frozenset({"refuted", "entered-in-error"})
# rules.md "Conditions" (r2): "active" = clinicalStatus active, recurrence or relapse (or none).
ACTIVE_CLINICAL_STATUSES = frozenset({"active", "recurrence", "relapse"})
# rules.md "Order intent" (r2): a MedicationRequest that is not drafted counts only with one of
# these intents (or none); proposal, plan, directive and option are not orders.
ORDER_INTENTS = frozenset(
    {"order", "original-order", "reflex-order", "filler-order", "instance-order"}
)


@quick_init
@dataclass(frozen=True)
class LabValue:
    """One usable Observation converted to the rule's unit."""

    kind: str  # key of RULE_UNITS
    value: Decimal  # in RULE_UNITS[kind] (hmgcr: the lab's number as written)
    comparator: str | None
    unit: str  # RULE_UNITS[kind]; for hmgcr the lab's own unit text
    time: datetime
    status: str  # final | amended | corrected | preliminary
    resource_id: str | None
    original: str  # as the lab wrote it, e.g. "0.07 g/L", "<5 mg/dL", "5200 U/L"
    converted: bool  # True when a unit factor other than 1 was applied
    ref_low: Decimal | None = None  # referenceRange.low in the rule's unit
    ref_high: Decimal | None = None  # referenceRange.high in the rule's unit
    interpretation: tuple[str, ...] = ()  # v3 ObservationInterpretation codes, e.g. ("POS",)
    # Anti-HMGCR only: a result with no number ("Positive") kept for its interpretation codes
    # (rules.md "Anti-HMGCR positive": "whatever the value"); ``value`` is then 0 and meaningless.
    qualitative: bool = False
    # Anti-HMGCR without a number (rules.md "Usable observation", r2): "positive" or "negative",
    # from its interpretation or from a valueString / valueCodeableConcept saying so.
    finding: str | None = None

    @property
    def day(self) -> date:
        return self.time.date()

    @property
    def preliminary(self) -> bool:
        return self.status == "preliminary"

    def meets_below(self, threshold: Decimal, inclusive: bool = False) -> bool:
        """Does this value meet ``x < threshold`` (or ``x <= threshold`` when inclusive)?"""
        return meets_below(self.value, self.comparator, threshold, inclusive)

    def meets_above(self, threshold: Decimal, inclusive: bool = False) -> bool:
        """Does this value meet ``x > threshold`` (or ``x >= threshold`` when inclusive)?"""
        return meets_above(self.value, self.comparator, threshold, inclusive)

    def number_text(self) -> str:
        """The number with its comparator, no unit, e.g. "<5", "6,950"."""
        return f"{self.comparator or ''}{format_number(self.value)}"

    def display(self) -> str:
        """Value with comparator in the rule unit, e.g. "<5 mg/dL", "6,950 U/L"."""
        if self.qualitative:
            return self.original
        return f"{self.number_text()} {self.unit}"


@quick_init
@dataclass(frozen=True)
class CkValue(LabValue):
    """A CK result with the ULN it is judged against."""

    uln: Decimal = Decimal("0")
    uln_assumed: bool = False  # True: sex default from settings, not the lab's referenceRange.high

    @property
    def times_uln(self) -> Decimal:
        return self.value / self.uln

    def times_uln_text(self) -> str:
        """×ULN for display: one decimal, half up, with the value's comparator ("22.6", "13.0",
        ">16.2"). The decimal is kept so 10.0 reads as rounded, not as exactly 10; decisions
        compare exact values (rules.md "CK ULN")."""
        rounded = self.times_uln.quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
        if rounded == 0 and self.value > 0:
            return "<0.1"
        return f"{self.comparator or ''}{rounded:,}"

    def above_uln_multiple(self, k: Decimal | int, inclusive: bool = False) -> bool:
        """CK > k×ULN (bound-aware); exact comparison, only display is rounded."""
        return self.meets_above(Decimal(k) * self.uln, inclusive)

    def at_most_uln_multiple(self, k: Decimal | int) -> bool:
        """CK <= k×ULN (bound-aware)."""
        return self.meets_below(Decimal(k) * self.uln, inclusive=True)


@quick_init
@dataclass(frozen=True)
class UnusableResult:
    """An Observation of a known kind the rules cannot use (unit not recognised, no value...)."""

    kind: str
    resource_id: str | None
    time: datetime | None
    reason: str  # e.g. "unit 'mmol/h' not recognised"


@quick_init
@dataclass(frozen=True)
class Medication:
    """What a MedicationRequest / Statement / Administration is of (classified)."""

    display: str
    is_statin: bool = False
    is_ivig: bool = False
    is_estrogen: bool = False
    matched_by_name: bool = False  # classified only by the name fallback: the card says so
    identified: bool = True  # False: medicationReference could not be resolved
    codes: tuple[str, ...] = ()  # "system|code"
    concentration_g_per_ml: Decimal | None = None  # IVIG strength when known (10% = 0.1)


@quick_init
@dataclass(frozen=True)
class OrderedDose:
    """doseAndRate.doseQuantity of an order with its day count (rules.md "Ordered IVIG dose")."""

    amount: Decimal
    unit: str  # "g", "mg", "mL" or "g/kg" (normalised)
    days: int  # timing.repeat.count, or boundsDuration in days; 1 when neither
    original: str  # as written, e.g. "40 g daily for 2 days"


@quick_init
@quick_init
@dataclass(frozen=True)
class MedicationUse:
    """A MedicationRequest or MedicationStatement (current, historical or drafted)."""

    resource_type: str  # "MedicationRequest" | "MedicationStatement"
    resource_id: str | None
    status: str
    intent: str | None
    medication: Medication
    authored_on: date | None
    # Latest of dispenseRequest.validityPeriod.end,
    # dosageInstruction.timing.repeat.boundsPeriod.end, MedicationStatement.effectivePeriod.end
    # (rules.md "Statin stop date").
    end_date: date | None
    drafted: bool = False  # rules.md "Drafted" for this hook
    subcutaneous: bool = False  # route SNOMED 34206005 or SC/SQ/subcut text: not IVIG
    dose: OrderedDose | None = None
    # The resource as received (R4 JSON), for update/delete suggestions of drafts.
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)

    @property
    def is_order(self) -> bool:
        """rules.md "Order intent" (r2): a drafted request counts whatever its intent; any other
        MedicationRequest only with an order intent or none. A MedicationStatement has no
        intent and always counts."""
        if self.drafted or self.resource_type != "MedicationRequest" or self.intent is None:
            return True
        return self.intent.strip().lower() in ORDER_INTENTS


@quick_init
@dataclass(frozen=True)
class IvigGiven:
    """One IVIG dose given (rules.md "IVIG given")."""

    time: datetime
    grams: Decimal | None
    resource_type: str  # "MedicationAdministration" | "MedicationRequest"
    resource_id: str | None
    status: str

    @property
    def day(self) -> date:
        return self.time.date()


@dataclass(frozen=True)
class ConditionFact:
    resource_id: str | None
    clinical_status: str | None  # active | recurrence | relapse | inactive | remission | resolved
    verification_status: str | None
    codes: tuple[str, ...]  # "system|code"
    text: str  # code.text and every coding.display, joined
    onset: date | None  # onsetDateTime (or onsetPeriod.start)
    recorded: date | None  # recordedDate
    # What the terminology recognises it as (fhir_mappings ValueSets): "diabetes", "vte",
    # "hmgcr-myopathy" (rules.md Definitions "Renal and thrombosis risk codes", "Anti-HMGCR
    # positive"); status is not judged here.
    kinds: tuple[str, ...] = ()

    @property
    def day(self) -> date | None:
        """rules.md: a Condition's date is ``onsetDateTime`` (or ``onsetPeriod.start``), else
        ``recordedDate``."""
        return self.onset or self.recorded

    @property
    def active(self) -> bool:
        """rules.md "Conditions" (r2): clinicalStatus active, recurrence or relapse, or none."""
        return self.clinical_status is None or self.clinical_status in ACTIVE_CLINICAL_STATUSES

    @property
    def void(self) -> bool:
        """Refuted or entered in error: not a diagnosis at all."""
        return self.verification_status in VOID_VERIFICATION


@dataclass(frozen=True)
class PatientRecord:
    patient_id: str
    gender: str | None  # male | female | other | unknown | None
    birth_date: date | None
    hook: str
    ck: tuple[CkValue, ...] = ()
    iga: tuple[LabValue, ...] = ()
    hmgcr: tuple[LabValue, ...] = ()
    weight: tuple[LabValue, ...] = ()
    height: tuple[LabValue, ...] = ()
    creatinine: tuple[LabValue, ...] = ()
    egfr: tuple[LabValue, ...] = ()
    unusable: tuple[UnusableResult, ...] = ()
    # Every statin / IVIG / estrogen MedicationRequest and MedicationStatement, drafts included
    # (a draft has drafted=True). Other medications are not kept.
    statin_uses: tuple[MedicationUse, ...] = ()
    ivig_uses: tuple[MedicationUse, ...] = ()
    estrogen_uses: tuple[MedicationUse, ...] = ()
    ivig_given: tuple[IvigGiven, ...] = ()  # sorted by time
    # Drafted orders of this hook whose medication could not be identified (display text each).
    unidentified_drafts: tuple[str, ...] = ()
    conditions: tuple[ConditionFact, ...] = ()
    # Malformed resources skipped by the fhir layer: (resourceType, count).
    skipped: tuple[tuple[str, int], ...] = ()
    # Prefetch keys whose fallback search stopped at the page cap: their data is partial, so every
    # card says so (older results or orders may be missing).
    truncated: tuple[str, ...] = ()

    def age_on(self, today: date) -> int | None:
        if self.birth_date is None:
            return None
        years = today.year - self.birth_date.year
        if (today.month, today.day) < (self.birth_date.month, self.birth_date.day):
            years -= 1
        return years

    @property
    def drafted_statins(self) -> tuple[MedicationUse, ...]:
        return tuple(u for u in self.statin_uses if u.drafted)

    @property
    def drafted_ivig(self) -> tuple[MedicationUse, ...]:
        return tuple(u for u in self.ivig_uses if u.drafted)


def meets_below(
    value: Decimal, comparator: str | None, threshold: Decimal, inclusive: bool
) -> bool:
    """rules.md "Value": does (comparator, value) meet x < T (x <= T when inclusive)?"""
    if comparator in (">", ">="):
        return False  # a lower bound never meets an upper-bound condition
    if comparator == "<":
        return value <= threshold
    if comparator == "<=":
        return value <= threshold if inclusive else value < threshold
    return value <= threshold if inclusive else value < threshold


def meets_above(
    value: Decimal, comparator: str | None, threshold: Decimal, inclusive: bool
) -> bool:
    """rules.md "Value": does (comparator, value) meet x > T (x >= T when inclusive)?"""
    if comparator in ("<", "<="):
        return False
    if comparator == ">":
        return value >= threshold
    if comparator == ">=":
        return value >= threshold if inclusive else value > threshold
    return value >= threshold if inclusive else value > threshold


def format_number(value: Decimal, places: int | None = None) -> str:
    """Readable number: thousands separators, no trailing zeros ("6,950", "0.07", "22.6").

    ``places``: rounded half up to that many decimals first (display only, never a comparison:
    0.05 g shows as 0.1 g)."""
    if places is not None:
        value = value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    text = f"{value:,f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text
