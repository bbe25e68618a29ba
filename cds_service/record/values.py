"""One Observation → one ``LabValue``/``CkValue``, an ``UnusableResult``, or nothing.

rules.md Definitions, "Reading a resource", "Usable observation", "Day of a time", "Value",
"Units" and "CK ULN", to the letter:

- status ``final``, ``amended``, ``corrected`` or ``preliminary`` (read trimmed, any case) is
  usable; any other status is ignored everywhere (``None`` here: not even an "unusable" note).
- time = ``effectiveDateTime``, else ``effectiveInstant``, else ``effectivePeriod.start``, else
  ``issued``, kept in the offset it was written with (its day is the date as written); a
  date-only value is midnight UTC, a partial date its first day.
- value = ``valueQuantity`` with its comparator, or a ``valueString`` "[<|<=|≤|>|>=|≥] number
  [unit]" (no unit → the rule's unit); no number, or a ``dataAbsentReason``, is no value (r2).
  An anti-HMGCR result with no number is read for a positive/negative finding instead (r2).
- unit and factors: ``cds_service.record.units``; an unknown or missing unit makes the result
  unusable with the reason "unit '‹u›' not recognised".
- ``referenceRange.low/high`` convert with their own unit, else the value's.
- CK ULN: the result's own ``referenceRange.high`` (converted), else the sex default from settings,
  flagged ``uln_assumed``.

A result dated after today and a duplicate of another are the record builder's to drop
(``record.build``): both need the other results or today.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from functools import partial
from typing import Any, NamedTuple

from cds_service.fhir.elements import as_dict, as_list, as_text, to_decimal
from cds_service.record.model import (
    RULE_UNITS,
    USABLE_STATUSES,
    CkValue,
    LabValue,
    UnusableResult,
)
from cds_service.record.units import Factor, factor_for, quantity_unit, unreadable_unit
from cds_service.settings import ClinicalSettings

# FHIR comparators (R4 QuantityComparator) and the typographic forms labs also write.
_COMPARATORS = {"<": "<", "<=": "<=", ">": ">", ">=": ">=", "≤": "<=", "≥": ">="}

# rules.md "Value": "[<|<=|≤|>|>=|≥] number [unit]". A decimal comma or thousands separator is
# not a number here: "0,07 g/L" could be 0.07 or 7, so it is refused rather than guessed.
# Matched on the trimmed text, so the unit is simply the rest: no lazy group before trailing
# blanks (that form backtracks quadratically on a long run of inner spaces).
_VALUE_STRING = re.compile(
    r"^(?P<cmp><=|>=|≤|≥|<|>)?\s*(?P<num>\d+(?:\.\d*)?|\.\d+)(?:\s*(?P<unit>\S.*))?$"
)

_DATETIME = re.compile(
    r"^(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<H>\d{2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?P<f>\.\d+)?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)

# A whole date, YYYY-MM-DD, ASCII digits only: the form most FHIR dates take.
_DATE_ONLY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}\Z")

_INTERPRETATION_SYSTEMS = frozenset(
    {
        "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
        "http://hl7.org/fhir/v3/ObservationInterpretation",  # STU3
        "http://hl7.org/fhir/v2/0078",  # DSTU2
    }
)


# --- time ------------------------------------------------------------------------------------


def parse_datetime(value: object) -> datetime | None:
    """A FHIR date/dateTime/instant as an aware datetime in the offset it was written with
    (rules.md "Day of a time", r2: the calendar date as written, never converted to UTC; a value
    without a time or offset is read as UTC). Partial dates are their first day. Aware datetimes
    compare as instants, offsets included ("Latest", rules.md).

    Every value the FHIR grammar allows parses, the ends of the range included
    (``9999-12-31T23:59:59-00:01`` is after year 9999 in UTC): nothing is converted, so nothing
    overflows. A leap second (``:60``, allowed by the grammar) is read as ``:59``. Anything else
    (month 13, 30 February, an offset of 24 hours) is None."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    # The two forms nearly every value has are read by datetime.fromisoformat, in C, once their
    # grammar is checked (it reads them as the general path below does: fraction truncated to
    # microseconds, "Z" as UTC, the offset kept; an impossible date, hour or offset refused).
    if _DATE_ONLY.match(text):  # a date: midnight UTC
        try:
            return datetime.fromisoformat(f"{text}T00:00:00+00:00")
        except ValueError:
            return None
    m = _DATETIME.match(text)
    if m is None:
        return None
    seconds = m["S"]
    if seconds is not None and seconds != "60" and m["tz"] is not None:  # a whole dateTime
        try:
            return datetime.fromisoformat(text)
        except ValueError:
            return None
    try:
        fraction = m["f"] or ""
        micro = int((fraction[1:] + "000000")[:6]) if fraction else 0
        tz = UTC
        if m["tz"] and m["tz"] != "Z":
            sign = 1 if m["tz"][0] == "+" else -1
            hours, minutes = int(m["tz"][1:3]), int(m["tz"][4:6])
            tz = timezone(sign * timedelta(hours=hours, minutes=minutes))
        return datetime(
            int(m["y"]),
            int(m["m"] or 1),
            int(m["d"] or 1),
            int(m["H"] or 0),
            int(m["M"] or 0),
            59 if m["S"] == "60" else int(m["S"] or 0),
            micro,
            tzinfo=tz,
        )
    except ValueError:  # year 0, month 13, hour 25, offset out of range...
        return None


def parse_date(value: object) -> date | None:
    """A FHIR date or dateTime as the calendar date written in it (rules.md "Day of a time")."""
    moment = parse_datetime(value)
    return moment.date() if moment else None


def read_code(value: object) -> str | None:
    """A code the rules compare (``status``, ``intent``, comparators, unit codes): trimmed and
    lower case (rules.md "Reading a resource", r2: "FINAL" is final); None when absent or not a
    string."""
    if type(value) is str:  # nearly every code: as_text's answer without the call
        text: str | None = value.strip() or None
    else:
        text = as_text(value)
    return text.lower() if text is not None else None


def observation_time(obs: Mapping[str, Any]) -> datetime | None:
    """rules.md "Usable observation": effectiveDateTime, else effectivePeriod.start, else issued.

    ``effectiveInstant`` is the same R4 element (effective[x]) as a precise instant, read with
    effectiveDateTime."""
    moment = parse_datetime(obs.get("effectiveDateTime"))
    if moment is None:
        moment = (
            parse_datetime(obs.get("effectiveInstant"))
            or parse_datetime(as_dict(obs.get("effectivePeriod")).get("start"))
            or parse_datetime(obs.get("issued"))
        )
    return moment


# --- values ----------------------------------------------------------------------------------


class Reading(NamedTuple):
    """A value as the lab wrote it, before conversion (a tuple: one is made per result read)."""

    number: Decimal
    comparator: str | None
    unit: str | None  # as written
    unit_text: str | None  # for display: Quantity.unit, else its code
    original: str
    # rules.md "Value": only a valueString may omit its unit (it is then in the rule's unit);
    # a valueQuantity without one is not usable.
    unit_optional: bool = False
    # A unit shown in the field rules.md "Units" does not read ("'g/L' not recognised (UCUM
    # quantity without a code)"), for the card's reason.
    unreadable: str | None = None


# A Reading made from a tuple of all its fields, without NamedTuple's keyword-reading ``__new__``
# (a third of the cost; one is made per result read).
_reading = partial(tuple.__new__, Reading)


def read_value(obs: Mapping[str, Any]) -> Reading | str:
    """The Observation's value, or the reason it has none we can read."""
    quantity = obs.get("valueQuantity")
    if type(quantity) is dict or isinstance(quantity, Mapping):
        number = to_decimal(quantity.get("value"))
        if number is None:
            return "no numeric value"
        raw_cmp = quantity.get("comparator")
        comparator = None
        if raw_cmp is not None:
            comparator = _COMPARATORS.get(str(raw_cmp).strip())
            if comparator is None:
                return f"comparator '{_clip(str(raw_cmp))}' not recognised"
        unit = quantity_unit(quantity)
        unit_text = as_text(quantity.get("unit")) or as_text(quantity.get("code"))
        original = str(number) if comparator is None else comparator + str(number)
        if unit_text:
            original += " " + unit_text
        if number < 0:
            return f"value '{original}' not recognised"
        unreadable = unreadable_unit(quantity) if unit is None else None
        return _reading((number, comparator, unit, unit_text, original, False, unreadable))
    text = obs.get("valueString")
    if isinstance(text, str):
        m = _VALUE_STRING.match(text.strip())
        if m is None:
            return f"value '{_clip(text)}' not recognised"
        number = Decimal(m["num"])
        unit = m["unit"]
        comparator = _COMPARATORS[m["cmp"]] if m["cmp"] else None
        # (the pattern has no sign: a valueString number is never negative)
        return Reading(number, comparator, unit, unit, text.strip(), True)
    return "no numeric value"


# rules.md "Anti-HMGCR positive": these v3 ObservationInterpretation codes count whatever the value.
HMGCR_POSITIVE_INTERPRETATIONS = frozenset({"POS", "H", "HH", "A"})
# rules.md "Usable observation" (r2): an anti-HMGCR result with no number is usable with one of
# these (negative: "on file" for HMG-01) or with a positive one above.
HMGCR_NEGATIVE_INTERPRETATIONS = frozenset({"NEG", "N", "L"})
# SNOMED CT qualifier values a lab may put in valueCodeableConcept: Positive, Negative.
_SNOMED_FINDINGS = {"10828004": "positive", "260385009": "negative"}
_FINDING_WORD = re.compile(r"\b(positive|negative)\b", re.IGNORECASE)


def positive_flag(interpretation: tuple[str, ...]) -> bool:
    """rules.md "Anti-HMGCR positive": interpretation POS, H, HH or A."""
    return bool(HMGCR_POSITIVE_INTERPRETATIONS.intersection(interpretation))


def interpretation_codes(obs: Mapping[str, Any]) -> tuple[str, ...]:
    """The v3 ObservationInterpretation codes of the result, trimmed and upper case (the code
    system's own case: "pos" is POS); codings of other systems are not read."""
    interpretation = obs.get("interpretation")
    if not interpretation:
        return ()
    codes: list[str] = []
    for concept in as_list(interpretation):
        for coding in as_list(as_dict(concept).get("coding")):
            c = as_dict(coding)
            system, code = c.get("system"), as_text(c.get("code"))
            if code and (system is None or _system(system) in _INTERPRETATION_SYSTEMS):
                codes.append(code.upper())
    return tuple(dict.fromkeys(codes))


def _system(system: object) -> str:
    text = as_text(system)
    return text.rstrip("/") if text else ""


def qualitative_finding(obs: Mapping[str, Any], interpretation: tuple[str, ...]) -> str | None:
    """rules.md "Usable observation" (r2), anti-HMGCR without a number: "positive" or
    "negative" from its interpretation (POS, H, HH, A / NEG, N, L), else from a
    ``valueString`` or ``valueCodeableConcept`` saying so; None when nothing says either, or the
    text says both. A positive interpretation wins ("whatever the value")."""
    if positive_flag(interpretation):
        return "positive"
    if HMGCR_NEGATIVE_INTERPRETATIONS.intersection(interpretation):
        return "negative"
    concept = as_dict(obs.get("valueCodeableConcept"))
    said: set[str] = set()
    texts = [obs.get("valueString"), concept.get("text")]
    for coding in as_list(concept.get("coding")):
        c = as_dict(coding)
        texts.append(c.get("display"))
        code = as_text(c.get("code"))
        if code is None:
            continue
        if code in _SNOMED_FINDINGS:
            said.add(_SNOMED_FINDINGS[code])
        elif code.upper() in HMGCR_POSITIVE_INTERPRETATIONS:
            said.add("positive")
        elif code.upper() in HMGCR_NEGATIVE_INTERPRETATIONS:
            said.add("negative")
    for text in texts:
        if isinstance(text, str):
            said.update(word.lower() for word in _FINDING_WORD.findall(text))
    return said.pop() if len(said) == 1 else None


# --- one observation -------------------------------------------------------------------------


def read_observation(
    obs: Mapping[str, Any],
    kind: str,
    gender: str | None,
    clinical: ClinicalSettings,
    *,
    reading: Reading | str | None = None,
) -> LabValue | UnusableResult | None:
    """rules.md Definitions for one Observation of ``kind`` (a key of RULE_UNITS).

    None: not a usable status (ignored everywhere). UnusableResult: a usable status whose value,
    unit or time cannot be used; the card of that area says why. ``reading``: the result of
    ``read_value(obs)`` when the caller has it already (the record's duplicate check reads it
    too: read once).
    """
    status = read_code(obs.get("status"))
    if status not in USABLE_STATUSES:
        return None
    resource_id = as_text(obs.get("id"))
    time = observation_time(obs)
    if time is None:
        return UnusableResult(kind, resource_id, None, "no effective time")
    if _present(obs.get("dataAbsentReason")):
        # rules.md "Usable observation" (r2): a dataAbsentReason says there is no value, whatever
        # else the result carries.
        return UnusableResult(kind, resource_id, time, "no value (dataAbsentReason)")
    interpretation = interpretation_codes(obs)
    if reading is None:
        reading = read_value(obs)
    if isinstance(reading, str):
        finding = qualitative_finding(obs, interpretation) if kind == "hmgcr" else None
        if finding is not None:
            return _qualitative_hmgcr(obs, resource_id, time, status, interpretation, finding)
        return UnusableResult(kind, resource_id, time, reading)
    if reading.unit is None and reading.unit_optional:
        factor: Factor | None = Factor()  # valueString without unit: the rule's unit
    else:
        factor = factor_for(kind, reading.unit)
    if (
        factor is None
        and kind == "hmgcr"
        and qualitative_finding(obs, interpretation) == "positive"
    ):
        # rules.md "Anti-HMGCR positive": a positive interpretation counts "whatever the value",
        # so a number in an unlisted unit is kept for its flag (its number is not compared).
        return _qualitative_hmgcr(
            obs, resource_id, time, status, interpretation, "positive", written=reading.original
        )
    if factor is None:
        if reading.unreadable:
            reason = f"unit {reading.unreadable}"
        elif reading.unit:
            reason = f"unit '{_clip(reading.unit)}' not recognised"
        else:
            reason = "unit (none) not recognised"
        return UnusableResult(kind, resource_id, time, reason)

    ref_low, ref_high = reference_range(obs, kind, reading.unit)
    value = factor.apply(reading.number)
    converted = not factor.identity
    if kind == "ck":
        if ref_high is not None and ref_high > 0:
            uln, assumed = ref_high, False
        else:
            uln, assumed = default_ck_uln(gender, clinical), True
        return CkValue(
            kind, value, reading.comparator, RULE_UNITS["ck"], time, status, resource_id,
            reading.original, converted, ref_low, ref_high, interpretation, False, None, uln,
            assumed,
        )
    unit_label = (reading.unit_text or RULE_UNITS[kind]) if kind == "hmgcr" else RULE_UNITS[kind]
    return LabValue(
        kind, value, reading.comparator, unit_label, time, status, resource_id, reading.original,
        converted, ref_low, ref_high, interpretation,
    )


def default_ck_uln(gender: str | None, clinical: ClinicalSettings) -> Decimal:
    """rules.md "CK ULN": male 308, female 192, other/unknown 192 U/L (settings; [LABCK])."""
    if gender == "male":
        return clinical.ck_uln_male
    if gender == "female":
        return clinical.ck_uln_female
    return clinical.ck_uln_other


def reference_range(
    obs: Mapping[str, Any], kind: str, value_unit: str | None
) -> tuple[Decimal | None, Decimal | None]:
    """(low, high) of the normal range in the rule's unit; each bound converts with its own unit,
    else the value's. A bound whose unit is not recognised is dropped, not guessed."""
    chosen = _normal_range(obs) if obs.get("referenceRange") else None
    if chosen is None:
        return None, None
    return _bound(chosen.get("low"), kind, value_unit), _bound(chosen.get("high"), kind, value_unit)


def _normal_range(obs: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The first referenceRange that is a normal range (type absent or "normal"), preferring one
    not restricted by ``appliesTo``."""
    candidates = []
    for rng in as_list(obs.get("referenceRange")):
        r = as_dict(rng)
        codings = as_list(as_dict(r.get("type")).get("coding"))
        types = [read_code(as_dict(c).get("code")) for c in codings]
        if types and "normal" not in types:
            continue
        if isinstance(r.get("low"), Mapping) or isinstance(r.get("high"), Mapping):
            candidates.append(r)
    unrestricted = [r for r in candidates if not r.get("appliesTo")]
    preferred = unrestricted or candidates
    return preferred[0] if preferred else None


def _bound(quantity: object, kind: str, value_unit: str | None) -> Decimal | None:
    q = as_dict(quantity)
    number = to_decimal(q.get("value"))
    if number is None:
        return None
    if unreadable_unit(q) is not None:
        return None  # it has a unit, just not in the field rules.md reads: never the value's
    unit = quantity_unit(q) or value_unit
    factor = Factor() if unit is None else factor_for(kind, unit)
    return None if factor is None else factor.apply(number)


def _qualitative_hmgcr(
    obs: Mapping[str, Any],
    resource_id: str | None,
    time: datetime,
    status: str,
    interpretation: tuple[str, ...],
    finding: str,
    written: str | None = None,
) -> LabValue:
    """rules.md "Anti-HMGCR positive" and "Usable observation" (r2): a result without a number
    ("Positive", "NEGATIVE (<20 U)"), or with one in an unlisted unit and a positive flag, is
    kept for its ``finding``; its number is never compared."""
    concept = as_dict(obs.get("valueCodeableConcept"))
    written = (
        written
        or as_text(obs.get("valueString"))
        or as_text(concept.get("text"))
        or next((as_text(as_dict(c).get("display")) for c in as_list(concept.get("coding"))), None)
        or (f"interpretation {'/'.join(interpretation)}" if interpretation else finding)
    )
    return LabValue(
        kind="hmgcr",
        value=Decimal(0),
        comparator=None,
        unit=RULE_UNITS["hmgcr"],
        time=time,
        status=status,
        resource_id=resource_id,
        original=written,
        converted=False,
        interpretation=interpretation,
        qualitative=True,
        finding=finding,
    )


def _present(value: object) -> bool:
    """An element that is there at all (any JSON value but null, "", {} or [])."""
    return value is not None and value not in ("", {}, [])


def _clip(text: str, limit: int = 40) -> str:
    """A lab's text quoted in a reason, cut so a card stays readable."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


