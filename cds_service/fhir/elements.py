"""Reading elements of R4 JSON without trusting their shape.

Resources are read liberally, not validated (rules.md r2 "Reading a resource"), so the readers
(``fhir.terminology``, ``record.values``, ``record.build``) meet elements of the wrong JSON type
(a flawed EHR resource, a DSTU2 client, a ``contained`` resource, an extension). These four
accessors turn anything unexpected into "absent", so one odd element never fails a call.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from cds_service.codes import FHIR_ID  # noqa: F401 - re-exported: the readers' id pattern


# These run tens of thousands of times a call (every element the rules read passes one): a
# parsed JSON value is a ``dict``, ``list`` or ``str`` itself, so the exact type is tried first
# and the abstract ``Mapping`` check only for anything else.
def as_text(value: object) -> str | None:
    """A non-blank string, trimmed; None for anything else."""
    if type(value) is str or isinstance(value, str):
        text = value.strip()
        return text or None
    return None


def as_dict(value: object) -> Mapping[str, Any]:
    """A JSON object, or an empty one."""
    if type(value) is dict:
        return value
    # An absent element (None) is the next most common: answered before the abstract Mapping
    # check, which costs several times a dict's.
    if value is not None and isinstance(value, Mapping):
        return value
    return {}


def as_list(value: object) -> Sequence[Any]:
    """A JSON array (as it is, never to be changed by the reader); a lone object as a list of
    one; anything else as empty."""
    if type(value) is list or isinstance(value, list | tuple):
        return value
    if value is None:  # absent: without the abstract Mapping check
        return ()
    return [value] if isinstance(value, Mapping) else ()


# No quantity the rules read (CK, IgA, weight, height, creatinine, eGFR, doses, strengths) comes
# within six orders of magnitude of these in any unit accepted; beyond them a ratio of two values
# no longer fits Decimal's 28 digits and display rounding fails (the fuzzer sent a CK of 1e54).
_LARGEST = Decimal("1e12")
_SMALLEST = Decimal("1e-12")


def to_decimal(value: object) -> Decimal | None:
    """A JSON number (or numeric string) as an exact Decimal; floats via their shortest repr.
    Absurd magnitudes (beyond 1e12 or, other than zero, below 1e-12) count as absent."""
    kind = type(value)
    if kind is int:  # exact already (bool, a subclass of int, is not ``int`` itself)
        number = Decimal(value)  # type: ignore[arg-type]
        return number if -_LARGEST < number < _LARGEST else None
    if kind is bool or not isinstance(value, int | float | str | Decimal):
        return None
    try:
        number = Decimal(repr(value) if kind is float else str(value).strip())
    except InvalidOperation:
        return None
    if not number.is_finite():
        return None
    if number and not _SMALLEST <= abs(number) < _LARGEST:
        return None
    return number
