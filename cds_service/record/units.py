"""Units and their factors to the rule's unit (rules.md Definitions "Units").

The unit of a Quantity is its ``code`` when ``system`` is UCUM, else its ``unit`` text; either is
compared with all whitespace removed, ² read as 2, µ/μ read as u, and case-insensitively (r2).
Conversion is exact decimal arithmetic (0.07 g/L is exactly 7 mg/dL); the one division
(creatinine µmol/L ÷ 88.4) is rounded to 6 significant digits, which rules.md allows. Any unit
not in a table is not recognised: the caller marks the result unusable and the card says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Context, Decimal
from functools import lru_cache
from typing import Any

UCUM = "http://unitsofmeasure.org"

# Division results keep 6 significant digits (rules.md "Units": "or round to 6 significant
# digits").
_DIVISION = Context(prec=6)


@dataclass(frozen=True)
class Factor:
    """value × multiply ÷ divide; ``divide`` is only for factors that are not exact decimals."""

    multiply: Decimal = Decimal(1)
    divide: Decimal = Decimal(1)
    # Worked out once (a factor is a constant of the tables below; one is applied per result).
    identity: bool = field(init=False, compare=False, repr=False)
    exact: bool = field(init=False, compare=False, repr=False)  # nothing to divide by

    def __post_init__(self) -> None:
        object.__setattr__(self, "identity", self.multiply == 1 and self.divide == 1)
        object.__setattr__(self, "exact", self.divide == 1)

    def apply(self, value: Decimal) -> Decimal:
        product = value * self.multiply
        if self.exact:
            return product
        return _DIVISION.divide(product, self.divide)


_ONE = Factor()
_LB = Factor(Decimal("0.45359237"))  # international avoirdupois pound, exact
_INCH = Factor(Decimal("2.54"))  # international inch, exact

# rules.md "Units": factors to the rule's unit, keyed by normalised unit (lower case, µ→u).
# UCUM codes and the unit texts rules.md names share one table per kind.
FACTORS: dict[str, dict[str, Factor]] = {
    "ck": {  # → U/L
        "u/l": _ONE,
        "[iu]/l": _ONE,
        "iu/l": _ONE,
        "ukat/l": Factor(Decimal(60)),  # 1 µkat/L = 60 U/L (clinical-evidence.md §5.1)
        "nkat/l": Factor(Decimal("0.06")),
    },
    "iga": {  # → mg/dL
        "mg/dl": _ONE,
        "g/l": Factor(Decimal(100)),  # 0.07 g/L = 7 mg/dL [ESID]
        "mg/l": Factor(Decimal("0.1")),
    },
    "weight": {  # → kg
        "kg": _ONE,
        "[lb_av]": _LB,
        "lb": _LB,
        "lbs": _LB,
        "g": Factor(Decimal("0.001")),
    },
    "height": {  # → cm
        "cm": _ONE,
        "[in_i]": _INCH,
        "in": _INCH,
        "m": Factor(Decimal(100)),
    },
    "creatinine": {  # → mg/dL
        "mg/dl": _ONE,
        "umol/l": Factor(divide=Decimal("88.4")),  # µmol/L ÷ 88.4 (clinical-evidence.md §5.1)
    },
    "egfr": {  # → mL/min/1.73m2
        "ml/min/{1.73_m2}": _ONE,
        "ml/min/1.73m2": _ONE,
    },
}

# rules.md "Anti-HMGCR positive": the labs' arbitrary units, taken as written, no conversion
# between them [LABHMG].
HMGCR_UNITS = frozenset(
    {"[arb'u]", "[arb'u]/ml", "{u}", "{cu}", "{units}", "u", "u/ml", "cu", "units"}
)


@lru_cache(maxsize=1024)  # units repeat on every result; bounded, since a unit is the lab's word
def normalise_unit(unit: str) -> str:
    """rules.md "Units": all whitespace removed (r2), superscript two read as 2 (r2), micro sign
    and Greek mu read as u, lower case: "mL/min/1.73 m²" is ``ml/min/1.73m2``, "µmol/L" is
    ``umol/l``."""
    joined = "".join(unit.split())
    return joined.replace("\u00b2", "2").replace("\u00b5", "u").replace("\u03bc", "u").lower()


def quantity_unit(quantity: Mapping[str, Any]) -> str | None:
    """The unit a Quantity is in, as written: its ``code`` when ``system`` is UCUM, else its
    ``unit`` text (rules.md "Units"), or None.

    The other field is never read in its place: a UCUM quantity without a code, or a non-UCUM one
    without unit text, has no unit, so its result is not usable (``unreadable_unit`` says why).
    """
    chosen = quantity.get("code") if is_ucum(quantity) else quantity.get("unit")
    if isinstance(chosen, str):
        return chosen.strip() or None
    return None


def unreadable_unit(quantity: Mapping[str, Any]) -> str | None:
    """Why a Quantity whose ``quantity_unit`` is None still shows a unit, for the card:
    "'g/L' ... (UCUM quantity without a code)"; None when it carries no unit at all."""
    if quantity_unit(quantity) is not None:
        return None
    code, text = quantity.get("code"), quantity.get("unit")
    if is_ucum(quantity) and _present(text):
        return f"'{str(text).strip()}' not recognised (UCUM quantity without a code)"
    if not is_ucum(quantity) and _present(code):
        return f"'{str(code).strip()}' not recognised (code without unit text, system not UCUM)"
    return None


def is_ucum(quantity: Mapping[str, Any]) -> bool:
    system = quantity.get("system")
    if system == UCUM:  # as nearly every lab writes it: no need to trim and fold it
        return True
    return isinstance(system, str) and system.strip().rstrip("/").lower() == UCUM


@lru_cache(maxsize=1024)  # pure, and asked once per result; bounded (the unit is the lab's word)
def factor_for(kind: str, unit: str | None) -> Factor | None:
    """The factor from ``unit`` to the rule's unit for ``kind``, or None if not recognised."""
    if unit is None:
        return None
    if kind == "hmgcr":
        return _ONE if normalise_unit(unit) in HMGCR_UNITS else None
    return FACTORS.get(kind, {}).get(normalise_unit(unit))


def _present(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip())
