"""``build_record``: the resources of one hook call → the normalized ``PatientRecord``.

Reads plain R4 JSON (``FhirData``, already validated by the ``fhir`` layer) and applies the
rules.md Definitions that are about reading data: usable observations and units
(``record.values``), medication classes (``fhir.terminology``), "Medication of an order",
"Drafted", "IVIG" (subcutaneous products excluded), "IVIG given" and "Ordered IVIG dose". What
the rules derive from the record (active statin, stop date, IVIG course...) lives in
``record.statin`` and ``record.ivig``.

Nothing here raises on odd content: a resource that cannot be read is left out (or kept as an
``UnusableResult`` when it is a lab of a known kind), so one bad entry never fails the call.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import orjson

from cds_service.errors import Unprocessable
from cds_service.fhir.data import FhirData
from cds_service.fhir.elements import FHIR_ID, as_dict, as_list, as_text, to_decimal
from cds_service.fhir.terminology import (
    classify_medication,
    concept_texts,
    condition_kinds,
    is_subcutaneous,
    observation_kind,
    unidentified_medication,
)
from cds_service.hooks import HOOKS, Drafted, Hooks
from cds_service.record.dosing import dose_grams
from cds_service.record.model import (
    VOID_VERIFICATION,
    CkValue,
    ConditionFact,
    IvigGiven,
    LabValue,
    Medication,
    MedicationUse,
    OrderedDose,
    PatientRecord,
    UnusableResult,
)
from cds_service.record.units import normalise_unit, quantity_unit
from cds_service.record.values import (
    Reading,
    parse_date,
    parse_datetime,
    read_code,
    read_observation,
    read_value,
)
from cds_service.settings import Settings

# rules.md "IVIG given": administrations with these statuses count (not-done, entered-in-error
# and unknown are ignored).
GIVEN_ADMINISTRATION_STATUSES = frozenset({"completed", "in-progress", "stopped"})
# rules.md "IVIG given": an IVIG order with these statuses counts when no administration is
# dated on or after its authoredOn.
GIVEN_REQUEST_STATUSES = frozenset({"completed", "active"})

# rules.md "Ordered IVIG dose": dose units, normalised → (OrderedDose unit, factor to it).
_DOSE_UNITS: dict[str, tuple[str, Decimal]] = {
    "g": ("g", Decimal(1)),
    "gram": ("g", Decimal(1)),
    "grams": ("g", Decimal(1)),
    "mg": ("mg", Decimal(1)),
    "ml": ("mL", Decimal(1)),
    "g/kg": ("g/kg", Decimal(1)),
    "mg/kg": ("g/kg", Decimal("0.001")),
}
# timing.repeat.boundsDuration → days.
_DURATION_DAYS: dict[str, int] = {"d": 1, "day": 1, "days": 1, "wk": 7, "week": 7, "weeks": 7}


def build_record(
    data: FhirData,
    body: Mapping[str, Any],
    settings: Settings,
    today: date | None = None,
    *,
    hooks: Hooks = HOOKS,
) -> PatientRecord:
    """The record of one call. ``today`` is the clinical date of the call (a result dated after
    it is not usable, rules.md r2); by default ``settings.today``, else the clock's date. Which
    drafts count as drafted is the call's hook's declaration (``hooks``)."""
    today = today or settings.today or date.today()
    context = as_dict(body.get("context"))
    patient_id = as_text(context.get("patientId")) or ""
    hook = as_text(body.get("hook")) or ""

    drafts = tuple(r for r in data.drafts if isinstance(r, Mapping))
    draft_keys = {key for key in map(_key, drafts) if key is not None}
    # A draft that also came back from a search is read once, as the draft.
    resources = _Resources(data.resources, draft_keys)
    _refuse_other_patients([*resources.all, *drafts], patient_id)

    patient = next((r for r in resources.of("Patient") if r.get("id") == patient_id), None)
    # rules.md "Reading a resource" (r2): codes the rules compare are read trimmed, any case.
    gender = read_code(as_dict(patient).get("gender"))
    birth_date = parse_date(as_dict(patient).get("birthDate"))

    labs = _read_labs(resources.of("Observation"), gender, settings, today)
    resolver = _MedicationResolver(data, resources.of("Medication"))
    drafted = _drafted_keys(hooks.drafted(hook), drafts, data.selections)

    uses: list[MedicationUse] = []
    unidentified: list[str] = []
    for resource in resources.orders:
        use = _medication_use(resource, resolver, drafted=False)
        if use is not None:
            uses.append(use)
    for draft in drafts:
        if draft.get("resourceType") != "MedicationRequest":
            continue
        if all(draft.get(k) is None for k in ("medicationCodeableConcept", "medicationReference")):
            continue  # rules.md r2: order entry just opened, nothing picked yet: no card
        is_drafted = _key(draft) in drafted
        use = _medication_use(draft, resolver, drafted=is_drafted)
        if use is None:
            continue
        if is_drafted and not use.medication.identified:
            unidentified.append(use.medication.display)
        uses.append(use)

    statin_uses = tuple(u for u in uses if u.medication.identified and u.medication.is_statin)
    ivig_uses = tuple(
        u for u in uses if u.medication.identified and u.medication.is_ivig and not u.subcutaneous
    )
    estrogen_uses = tuple(u for u in uses if u.medication.identified and u.medication.is_estrogen)

    return PatientRecord(
        patient_id=patient_id,
        gender=gender,
        birth_date=birth_date,
        hook=hook,
        ck=labs.ck,
        iga=labs.of("iga"),
        hmgcr=labs.of("hmgcr"),
        weight=labs.of("weight"),
        height=labs.of("height"),
        creatinine=labs.of("creatinine"),
        egfr=labs.of("egfr"),
        unusable=labs.unusable,
        statin_uses=statin_uses,
        ivig_uses=ivig_uses,
        estrogen_uses=estrogen_uses,
        ivig_given=_ivig_given(resources.of("MedicationAdministration"), ivig_uses, resolver),
        unidentified_drafts=tuple(unidentified),
        conditions=_conditions(resources.of("Condition")),
        skipped=tuple(sorted((str(k), int(v)) for k, v in data.skipped.items())),
        truncated=tuple(data.stats.truncated),
    )


# --- observations ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Labs:
    values: Mapping[str, tuple[LabValue, ...]]
    ck: tuple[CkValue, ...]
    unusable: tuple[UnusableResult, ...]

    def of(self, kind: str) -> tuple[LabValue, ...]:
        return self.values.get(kind, ())


def _read_labs(
    observations: Iterable[Mapping[str, Any]], gender: str | None, settings: Settings, today: date
) -> _Labs:
    """Every Observation of a kind the rules read, as rules.md "Usable observation" says (r2):
    a result dated after today is not usable (a data error, said on the card), and results with
    the same code, instant, value and unit count once (two feeds filing one result)."""
    by_kind: dict[str, list[LabValue]] = {}
    unusable: list[UnusableResult] = []
    # Per key, the ``code`` of each result kept; their codings are compared only when another
    # result has the same key (rare: two feeds filing one result), never for the others.
    seen: dict[tuple[object, ...], list[object]] = {}
    kinds: dict[object, str | None] = {}  # the same code on every result: classified once
    for obs in sorted(observations, key=_duplicate_preference):
        code = obs.get("code")
        key = _code_key(code)
        if key is None:
            kind = observation_kind(code)
        elif key in kinds:
            kind = kinds[key]
        else:
            kind = kinds[key] = observation_kind(code)
        if kind is None:
            continue
        reading = read_value(obs)
        result = read_observation(obs, kind, gender, settings.clinical, reading=reading)
        if result is None:
            continue  # not a usable status: ignored everywhere
        if isinstance(result, UnusableResult):
            unusable.append(result)
            continue
        if result.day > today:
            unusable.append(
                UnusableResult(kind, result.resource_id, result.time, "dated after today")
            )
            continue
        duplicate_key = _duplicate_key(result, reading)
        kept = seen.get(duplicate_key)
        if kept is None:
            seen[duplicate_key] = [code]
        else:
            codes = _codes(code)
            if any(_same_code(codes, _codes(other)) for other in kept):
                continue
            kept.append(code)
        bucket = by_kind.get(kind)
        if bucket is None:
            by_kind[kind] = [result]
        else:
            bucket.append(result)
    values = {
        kind: tuple(sorted(items, key=lambda v: (v.time, v.resource_id or "")))
        for kind, items in by_kind.items()
    }
    ck = tuple(v for v in values.get("ck", ()) if isinstance(v, CkValue))
    epoch = datetime.min.replace(tzinfo=UTC)
    unusable.sort(key=lambda u: (u.time or epoch, u.kind, u.resource_id or ""))
    return _Labs(values, ck, tuple(unusable))


def _code_key(code: object) -> tuple[object, ...] | None:
    """The codings of an Observation.code as written, hashable, or None (anything but strings,
    which the classification reads as written anyway)."""
    if type(code) is not dict:
        return None
    codings = code.get("coding")
    if type(codings) is not list:
        return None
    key: list[object] = []
    for coding in codings:
        if type(coding) is not dict:
            return None
        system, value = coding.get("system"), coding.get("code")
        if not (
            (system is None or type(system) is str) and (value is None or type(value) is str)
        ):
            return None
        key.append((system, value))
    return tuple(key)


def _duplicate_preference(obs: Mapping[str, Any]) -> tuple[bool, str]:
    """Of duplicates the first read is kept: a final result before a preliminary copy (a card
    that says "preliminary" when a final copy exists would understate it), then by id."""
    return read_code(obs.get("status")) == "preliminary", as_text(obs.get("id")) or ""


def _duplicate_key(value: LabValue, reading: Reading | str) -> tuple[object, ...]:
    """rules.md "Usable observation" (r2): results with the same code, instant, value and unit
    are one. The key holds the kind, the instant (compared with its offset), and the value and
    unit as the lab wrote them (``reading``: ``read_value`` of the Observation); the codes are
    compared apart (``_codes``, ``_same_code``)."""
    if isinstance(reading, str):  # a result kept without a number (anti-HMGCR finding)
        written: tuple[object, ...] = (value.finding, " ".join(value.original.lower().split()))
    else:
        unit = normalise_unit(reading.unit) if reading.unit else None
        written = (reading.number, reading.comparator, unit)
    # The instant as its distance from the epoch: equal exactly when the instants are (offsets
    # included), and far cheaper to hash than an aware datetime.
    return (value.kind, value.time - _EPOCH, *written)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _codes(code: object) -> frozenset[str]:
    found = set()
    for coding in as_list(as_dict(code).get("coding")):
        c = as_dict(coding)
        value = as_text(c.get("code"))
        if value is not None:
            system = (as_text(c.get("system")) or "").rstrip("/").lower()
            found.add(f"{system}|{value}")
    return frozenset(found)


def _same_code(codes: frozenset[str], other: frozenset[str]) -> bool:
    """Two results have the same code when they share a coding (one feed may add a local code),
    or when neither is coded (both classified by their text)."""
    return bool(codes & other) or not (codes or other)


# --- medications -----------------------------------------------------------------------------


_Key = bytes | str


def _json_key(value: Any) -> _Key:
    """A key for parsed JSON values: their JSON text, exact (the same text, the same values of
    the same JSON kinds) and ~7x cheaper than ``repr`` (orjson: 8 against 59 us for the 70
    medication concepts of the benchmark's record). What orjson does not write (an integer
    beyond 64 bits, a lone surrogate: values ``json.loads`` read) is keyed by ``repr``, and so
    is a text with ``null`` in it: orjson writes an infinity (1e400, which ``json.loads`` reads)
    as null too. ``None`` (an absent element) is ``b""``, which no JSON text is."""
    if value is None:
        return b""
    try:
        text = orjson.dumps(value)
    except orjson.JSONEncodeError:
        return repr(value)
    return repr(value) if b"null" in text else text


class _MedicationResolver:
    """rules.md "Medication of an order": the medication of a resource, classified.

    ``#id`` → the resource's ``contained``; ``Medication/id`` → ``FhirData.medications`` (filled by
    the fhir layer from draftOrders, prefetch and reads, in that order) or a Medication among the
    gathered resources; an absolute or ``urn:uuid:`` reference → by ``fullUrl``
    (``FhirData.medications`` keys). Anything else is unidentified.
    """

    def __init__(self, data: FhirData, medications: Iterable[Mapping[str, Any]]) -> None:
        self._medications = data.medications
        self._by_id = {
            f"Medication/{r['id']}": r for r in medications if isinstance(r.get("id"), str)
        }
        self._classified: dict[tuple[_Key, _Key], Medication] = {}
        self._subcutaneous: dict[tuple[_Key, _Key], bool] = {}

    def medication(self, resource: Mapping[str, Any]) -> Medication:
        concept = resource.get("medicationCodeableConcept")
        if isinstance(concept, Mapping):
            return self._classify(concept, None)
        reference = as_dict(resource.get("medicationReference"))
        target = self._resolve(resource, reference)
        if target is None:
            display = (
                as_text(reference.get("display")) or as_text(reference.get("reference"))
                or "medication not stated"
            )
            return unidentified_medication(display)
        return self._classify(None, target)

    def _classify(
        self, concept: Mapping[str, Any] | None, medication: Mapping[str, Any] | None
    ) -> Medication:
        # A chart repeats one product on every administration: classify each one once per call
        # (keyed by the JSON as written, ``_json_key``; the same product with its members in
        # another order is merely classified again).
        key = (_json_key(concept), _json_key(medication))
        found = self._classified.get(key)
        if found is None:
            found = self._classified[key] = classify_medication(concept, medication)
        return found

    def subcutaneous(self, dosages: Iterable[Mapping[str, Any]]) -> bool:
        """rules.md "IVIG": is any of ``dosages`` for subcutaneous use (``is_subcutaneous``)?

        A chart gives one product by one route on every administration and order: each
        dosage's verdict is worked out once per call, keyed by the only two elements it reads
        (``route`` and ``text``, as written)."""
        for dosage in dosages:
            key = (_json_key(dosage.get("route")), _json_key(dosage.get("text")))
            verdict = self._subcutaneous.get(key)
            if verdict is None:
                verdict = self._subcutaneous[key] = is_subcutaneous([dosage])
            if verdict:
                return True
        return False

    def _resolve(
        self, resource: Mapping[str, Any], reference: Mapping[str, Any]
    ) -> Mapping[str, Any] | None:
        ref = as_text(reference.get("reference"))
        if ref is None:
            return None
        if ref.startswith("#"):
            for contained in as_list(resource.get("contained")):
                c = as_dict(contained)
                if c.get("resourceType") == "Medication" and c.get("id") == ref[1:]:
                    return c
            return None
        found = self._medications.get(ref)
        if _is_medication(found):
            return found
        if "/_history/" in ref:
            found = self._medications.get(ref.split("/_history/")[0])
            if _is_medication(found):
                return found
        relative = ref.split("/_history/")[0]
        if relative.startswith("Medication/") and relative.count("/") == 1:
            return self._by_id.get(relative)
        return None


def _medication_use(
    resource: Mapping[str, Any], resolver: _MedicationResolver, *, drafted: bool
) -> MedicationUse | None:
    """A MedicationRequest/Statement with a statin, IVIG or estrogen (or, drafted, an
    unidentified medication); None for anything else."""
    medication = resolver.medication(resource)
    if not medication.identified and not drafted:
        return None
    if medication.identified and not (
        medication.is_statin or medication.is_ivig or medication.is_estrogen
    ):
        return None
    resource_type = str(resource.get("resourceType"))
    dosages = _dosages(resource)
    return MedicationUse(
        resource_type=resource_type,
        resource_id=as_text(resource.get("id")),
        # rules.md "Reading a resource" (r2): status and intent read trimmed, any case.
        status=read_code(resource.get("status")) or "unknown",
        intent=read_code(resource.get("intent")) if resource_type == "MedicationRequest" else None,
        medication=medication,
        authored_on=_authored_on(resource),
        end_date=_end_date(resource, dosages),
        drafted=drafted,
        subcutaneous=resolver.subcutaneous(dosages),
        dose=ordered_dose(dosages[0]) if dosages else None,
        raw=resource,
    )


def _dosages(resource: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    field = "dosageInstruction" if resource.get("resourceType") == "MedicationRequest" else "dosage"
    return [as_dict(d) for d in as_list(resource.get(field))]


def _authored_on(resource: Mapping[str, Any]) -> date | None:
    if resource.get("resourceType") == "MedicationRequest":
        return parse_date(resource.get("authoredOn"))
    # A MedicationStatement has no authoredOn: when the use started, else when it was asserted.
    return _date(_start(resource, "effective")) or parse_date(resource.get("dateAsserted"))


def _end_date(resource: Mapping[str, Any], dosages: list[Mapping[str, Any]]) -> date | None:
    """rules.md "Statin stop date": the latest of dispenseRequest.validityPeriod.end,
    dosageInstruction.timing.repeat.boundsPeriod.end and MedicationStatement.effectivePeriod.end
    (``dosages``: the resource's, as ``_dosages`` reads them)."""
    ends = [
        parse_date(as_dict(as_dict(resource.get("dispenseRequest")).get("validityPeriod")).get("end")),
        parse_date(as_dict(resource.get("effectivePeriod")).get("end")),
    ]
    # dosageInstruction is a MedicationRequest's; a MedicationStatement ends with its
    # effectivePeriod (its dosage bounds are not one of the three ends rules.md names).
    if resource.get("resourceType") != "MedicationRequest":
        dosages = []
    for dosage in dosages:
        repeat = as_dict(as_dict(dosage.get("timing")).get("repeat"))
        ends.append(parse_date(as_dict(repeat.get("boundsPeriod")).get("end")))
    known = [d for d in ends if d is not None]
    return max(known) if known else None


def ordered_dose(dosage: Mapping[str, Any]) -> OrderedDose | None:
    """rules.md "Ordered IVIG dose": doseAndRate[0].doseQuantity and the number of days
    (timing.repeat.count, else boundsDuration in days, else 1)."""
    dose_and_rate = as_list(dosage.get("doseAndRate"))
    quantity = as_dict(as_dict(dose_and_rate[0]).get("doseQuantity")) if dose_and_rate else {}
    dose = _dose_quantity(quantity)
    if dose is None:
        return None
    amount, unit = dose
    days = _days(as_dict(as_dict(dosage.get("timing")).get("repeat")))
    written = as_text(dosage.get("text"))
    if written is None:
        unit_text = as_text(quantity.get("unit")) or quantity_unit(quantity)
        written = f"{quantity.get('value')} {unit_text}"
        if days > 1:
            written += f" daily for {days} days"
    return OrderedDose(amount=amount, unit=unit, days=days, original=written)


def _dose_quantity(quantity: Mapping[str, Any]) -> tuple[Decimal, str] | None:
    """A dose Quantity in a rules.md "Ordered IVIG dose" unit: (amount, unit) with unit g, mg, mL
    or g/kg (mg/kg read as g/kg); None for no positive amount or any other unit."""
    amount = to_decimal(quantity.get("value"))
    unit = quantity_unit(quantity)
    if amount is None or amount <= 0 or unit is None:
        return None
    known = _DOSE_UNITS.get(normalise_unit(unit))
    if known is None:
        return None
    dose_unit, factor = known
    return amount * factor, dose_unit


def _days(repeat: Mapping[str, Any]) -> int:
    # rules.md "Reading a resource" (r2): a count written 2.0 or "2" is still two days.
    count = to_decimal(repeat.get("count"))
    if count is not None and count >= 1 and count == count.to_integral_value():
        return int(count)
    duration = as_dict(repeat.get("boundsDuration"))
    value = to_decimal(duration.get("value"))
    unit = quantity_unit(duration)
    per = _DURATION_DAYS.get(normalise_unit(unit)) if unit else None
    if value is not None and per is not None and value > 0:
        days = value * per
        if days == days.to_integral_value():
            return int(days)
    return 1


# --- IVIG given ------------------------------------------------------------------------------


def _ivig_given(
    administrations: Iterable[Mapping[str, Any]],
    ivig_uses: tuple[MedicationUse, ...],
    resolver: _MedicationResolver,
) -> tuple[IvigGiven, ...]:
    """rules.md "IVIG given": administrations (completed, in-progress, stopped) of IVIG; a
    completed/active IVIG order counts (dose × days, dated authoredOn) only when no
    administration is dated on or after its authoredOn; a draft is never given."""
    given: list[IvigGiven] = []
    for resource in administrations:
        status = read_code(resource.get("status"))
        if status not in GIVEN_ADMINISTRATION_STATUSES:
            continue
        medication = resolver.medication(resource)
        dosage = as_dict(resource.get("dosage"))
        if not (medication.identified and medication.is_ivig) or resolver.subcutaneous([dosage]):
            continue
        time = _start(resource, "effective")
        if time is None:
            continue
        given.append(
            IvigGiven(
                time=time,
                grams=_administered_grams(dosage, medication),
                resource_type="MedicationAdministration",
                resource_id=as_text(resource.get("id")),
                status=status,
            )
        )
    # An order counts only when no administration is dated on or after its authoredOn: when the
    # latest one is before it.
    last_administered = max((g.day for g in given), default=None)
    for use in ivig_uses:
        if (
            use.drafted
            or use.resource_type != "MedicationRequest"
            or not use.is_order  # rules.md r2 "Order intent": a plan or proposal gave nothing
            or use.status not in GIVEN_REQUEST_STATUSES
            or use.authored_on is None
        ):
            continue
        authored = use.authored_on
        if last_administered is not None and last_administered >= authored:
            continue
        grams = dose_grams(use.dose, use.medication)
        given.append(
            IvigGiven(
                time=datetime(authored.year, authored.month, authored.day, tzinfo=UTC),
                grams=grams * use.dose.days if grams is not None and use.dose else None,
                resource_type="MedicationRequest",
                resource_id=use.resource_id,
                status=use.status,
            )
        )
    given.sort(key=lambda g: (g.time, g.resource_id or ""))
    return tuple(given)


def _administered_grams(dosage: Mapping[str, Any], medication: Medication) -> Decimal | None:
    dose = _dose_quantity(as_dict(dosage.get("dose")))
    if dose is None:
        return None
    amount, unit = dose
    # No dosing weight here: a dose given in g/kg has no grams (dose_grams says None).
    return dose_grams(OrderedDose(amount=amount, unit=unit, days=1, original=""), medication)


# --- drafts ----------------------------------------------------------------------------------


def _drafted_keys(
    drafted: Drafted, drafts: tuple[Mapping[str, Any], ...], selections: tuple[str, ...]
) -> set[tuple[str, str] | None]:
    """rules.md "Drafted", as the hook declares it: the MedicationRequests among ``selections``
    (all drafts when the client sends none; order-select), every MedicationRequest of the drafts
    (order-sign), or none (patient-view)."""
    requests = [d for d in drafts if d.get("resourceType") == "MedicationRequest"]
    if drafted is Drafted.ALL:
        return {_key(d) for d in requests}
    if drafted is Drafted.SELECTED:
        selected = {_selection_key(s) for s in selections}
        selected.discard(None)
        if not selected:
            return {_key(d) for d in requests}
        return {_key(d) for d in requests if _key(d) in selected}
    return set()


def _selection_key(selection: object) -> tuple[str, str] | None:
    """"MedicationRequest/123" (or a URL ending so) → ("MedicationRequest", "123")."""
    if not isinstance(selection, str):
        return None
    parts = [p for p in selection.strip().split("/") if p]
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    if len(parts) < 2:
        return None
    return parts[-2], parts[-1]


# --- conditions ------------------------------------------------------------------------------


def _conditions(conditions: Iterable[Mapping[str, Any]]) -> tuple[ConditionFact, ...]:
    facts: list[ConditionFact] = []
    for resource in conditions:
        verification = _status_code(resource.get("verificationStatus"))
        if verification in VOID_VERIFICATION:
            continue
        code = resource.get("code")
        keys = []
        for coding in as_list(as_dict(code).get("coding")):
            c = as_dict(coding)
            if as_text(c.get("code")):
                keys.append(f"{as_text(c.get('system')) or ''}|{as_text(c.get('code'))}")
        facts.append(
            ConditionFact(
                resource_id=as_text(resource.get("id")),
                clinical_status=_status_code(resource.get("clinicalStatus")),
                verification_status=verification,
                codes=tuple(keys),
                text=" | ".join(dict.fromkeys(t.strip() for t in concept_texts(code))),
                onset=_date(_start(resource, "onset")),
                recorded=parse_date(resource.get("recordedDate")),
                kinds=condition_kinds(code),
            )
        )
    return tuple(facts)


def _status_code(value: object) -> str | None:
    """An R4 status CodeableConcept (or a DSTU2-style plain code) → its code, trimmed and lower
    case (rules.md "Reading a resource")."""
    if isinstance(value, str):
        return read_code(value)
    for coding in as_list(as_dict(value).get("coding")):
        code = read_code(as_dict(coding).get("code"))
        if code:
            return code
    return None


# --- helpers ---------------------------------------------------------------------------------


def _start(resource: Mapping[str, Any], element: str) -> datetime | None:
    """When an R4 dateTime-or-Period choice (``effective[x]``, ``onset[x]``) starts: the dateTime,
    else the Period's start."""
    return parse_datetime(resource.get(f"{element}DateTime")) or parse_datetime(
        as_dict(resource.get(f"{element}Period")).get("start")
    )


def _date(moment: datetime | None) -> date | None:
    return moment.date() if moment is not None else None


# "Patient/<id>", a full URL ending so, or with a version: the id of the patient it names.
_PATIENT_REFERENCE = re.compile(rf"(?:^|/)Patient/({FHIR_ID})(?:/_history/[^/]+)?$")


def _refuse_other_patients(resources: Iterable[Mapping[str, Any]], patient_id: str) -> None:
    """Refuse a request that mixes in another patient's data (a Patient resource with another
    id, or a resource whose subject/patient names another Patient): advice built on it would be
    silently wrong. References that do not name a Patient id (urn:uuid, contained) are kept."""
    foreign: dict[str, int] = {}
    own = f"Patient/{patient_id}"
    for resource in resources:
        rtype = resource.get("resourceType")
        if rtype == "Patient":
            other = resource.get("id") not in (None, patient_id)
        else:
            subject = resource.get("subject") or resource.get("patient")
            if type(subject) is dict or isinstance(subject, Mapping):
                reference = subject.get("reference")
                if reference == own:
                    continue  # the usual case, without the pattern
            else:
                reference = None
            match = _PATIENT_REFERENCE.search(reference) if isinstance(reference, str) else None
            other = match is not None and match.group(1) != patient_id
        if other:
            foreign[str(rtype)] = foreign.get(str(rtype), 0) + 1
    if foreign:
        # Counts and types only: no identifier of either patient goes into the message or logs.
        found = ", ".join(f"{count} {rtype}" for rtype, count in sorted(foreign.items()))
        raise Unprocessable(
            f"the request carries data of a patient other than context.patientId ({found}); "
            "no advice is given on a mixed record",
            expression="prefetch",
        )


class _Resources:
    """The gathered resources, each once, sorted by ``resourceType`` in one pass (every reader
    then walks only its own type, in the order the resources came).

    Each resource is kept once by type and id (the first one; resources without id are all
    kept), and none whose key is in ``exclude`` (a draft that also came back from a search is
    read as the draft)."""

    def __init__(self, resources: Iterable[object], exclude: set[tuple[str, str]]) -> None:
        seen = set(exclude)
        self.all: list[Mapping[str, Any]] = []
        self._by_type: dict[str, list[Mapping[str, Any]]] = {}
        # MedicationRequests and MedicationStatements together, in their order: the record's
        # medication uses keep it.
        self.orders: list[Mapping[str, Any]] = []
        by_type = self._by_type
        for resource in resources:
            if not (type(resource) is dict or isinstance(resource, Mapping)):
                continue
            key = _key(resource)
            if key is not None:
                if key in seen:
                    continue
                seen.add(key)
            self.all.append(resource)
            rtype = resource.get("resourceType")
            if isinstance(rtype, str):
                bucket = by_type.get(rtype)
                if bucket is None:
                    by_type[rtype] = [resource]
                else:
                    bucket.append(resource)
                if rtype in ("MedicationRequest", "MedicationStatement"):
                    self.orders.append(resource)

    def of(self, resource_type: str) -> list[Mapping[str, Any]]:
        return self._by_type.get(resource_type, [])


def _key(resource: Mapping[str, Any]) -> tuple[str, str] | None:
    rtype, rid = resource.get("resourceType"), resource.get("id")
    if isinstance(rtype, str) and isinstance(rid, str) and rid:
        return rtype, rid
    return None


def _is_medication(value: object) -> bool:
    return isinstance(value, Mapping) and value.get("resourceType") == "Medication"
