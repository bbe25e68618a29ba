"""Hand-built ``PatientRecord`` pieces for pure advice/record tests.

Shared by the statin and IVIG advice tests. Every builder takes plain numbers and dates
(``Decimal`` conversion, midnight-UTC times and resource ids are done here) and the keywords that
matter for a test; everything else has a realistic default. Days are given either as a ``date``
or as an ``int`` number of days before ``TODAY``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from cds_service.record.model import (
    RULE_UNITS,
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

TODAY = date(2025, 7, 1)

Number = int | str | Decimal
Day = date | int


def day_of(day: Day, today: date = TODAY) -> date:
    """A date, or ``today`` minus that many days."""
    return today - timedelta(days=day) if isinstance(day, int) else day


def at(day: Day, hour: int = 9, today: date = TODAY) -> datetime:
    """An aware UTC datetime on that day (09:00 unless told)."""
    d = day_of(day, today)
    return datetime(d.year, d.month, d.day, hour, tzinfo=UTC)


def dec(value: Number) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


def ck(
    value: Number,
    day: Day = 0,
    *,
    uln: Number = 308,
    uln_assumed: bool = False,
    comparator: str | None = None,
    status: str = "final",
    resource_id: str | None = None,
    original: str | None = None,
    converted: bool = False,
    hour: int = 9,
) -> CkValue:
    """A usable CK in U/L judged against ``uln`` (the lab's range unless ``uln_assumed``)."""
    v = dec(value)
    when = at(day, hour)
    return CkValue(
        kind="ck",
        value=v,
        comparator=comparator,
        unit="U/L",
        time=when,
        status=status,
        resource_id=resource_id or f"ck-{when.date().isoformat()}-{hour}",
        original=original or f"{comparator or ''}{v} U/L",
        converted=converted,
        ref_high=None if uln_assumed else dec(uln),
        uln=dec(uln),
        uln_assumed=uln_assumed,
    )


def lab(
    kind: str,
    value: Number,
    day: Day = 0,
    *,
    comparator: str | None = None,
    unit: str | None = None,
    status: str = "final",
    resource_id: str | None = None,
    original: str | None = None,
    converted: bool = False,
    ref_low: Number | None = None,
    ref_high: Number | None = None,
    interpretation: tuple[str, ...] = (),
    hour: int = 9,
) -> LabValue:
    """A usable lab value of ``kind`` (a key of ``RULE_UNITS``) in the rule's unit."""
    v = dec(value)
    when = at(day, hour)
    unit = unit or RULE_UNITS[kind]
    return LabValue(
        kind=kind,
        value=v,
        comparator=comparator,
        unit=unit,
        time=when,
        status=status,
        resource_id=resource_id or f"{kind}-{when.date().isoformat()}-{hour}",
        original=original or f"{comparator or ''}{v} {unit}",
        converted=converted,
        ref_low=None if ref_low is None else dec(ref_low),
        ref_high=None if ref_high is None else dec(ref_high),
        interpretation=interpretation,
    )


def creatinine(value: Number, day: Day = 0, **kw: Any) -> LabValue:
    return lab("creatinine", value, day, **kw)


def hmgcr(value: Number, day: Day = 0, *, unit: str = "U", **kw: Any) -> LabValue:
    return lab("hmgcr", value, day, unit=unit, **kw)


def unusable(
    kind: str, reason: str, day: Day | None = 0, resource_id: str = "bad-1"
) -> UnusableResult:
    return UnusableResult(
        kind=kind,
        resource_id=resource_id,
        time=None if day is None else at(day),
        reason=reason,
    )


def medication(
    display: str,
    *,
    statin: bool = False,
    ivig: bool = False,
    estrogen: bool = False,
    matched_by_name: bool = False,
    identified: bool = True,
    codes: tuple[str, ...] = (),
    concentration: Number | None = None,
) -> Medication:
    return Medication(
        display=display,
        is_statin=statin,
        is_ivig=ivig,
        is_estrogen=estrogen,
        matched_by_name=matched_by_name,
        identified=identified,
        codes=codes,
        concentration_g_per_ml=None if concentration is None else dec(concentration),
    )


ATORVASTATIN = medication(
    "atorvastatin 40 MG Oral Tablet",
    statin=True,
    codes=("http://www.nlm.nih.gov/research/umls/rxnorm|617311",),
)
SIMVASTATIN = medication(
    "simvastatin 40 MG Oral Tablet",
    statin=True,
    codes=("http://www.nlm.nih.gov/research/umls/rxnorm|198211",),
)
GAMUNEX = medication("Gamunex-C 10%", ivig=True, concentration="0.1")


def use(
    med: Medication,
    status: str = "active",
    *,
    resource_type: str = "MedicationRequest",
    resource_id: str | None = None,
    intent: str | None = "order",
    authored: Day | None = 400,
    end: Day | None = None,
    drafted: bool = False,
    subcutaneous: bool = False,
    dose: OrderedDose | None = None,
    raw: Mapping[str, Any] | None = None,
) -> MedicationUse:
    """A MedicationRequest/Statement of ``med``; a draft gets a matching raw R4 resource."""
    rid = resource_id or f"{resource_type[:10].lower()}-{status}-{med.display.split()[0].lower()}"
    if raw is None and drafted:
        raw = request_json(rid, med.display, intent=intent or "order")
    return MedicationUse(
        resource_type=resource_type,
        resource_id=rid,
        status=status,
        intent=intent,
        medication=med,
        authored_on=None if authored is None else day_of(authored),
        end_date=None if end is None else day_of(end),
        drafted=drafted,
        subcutaneous=subcutaneous,
        dose=dose,
        raw=raw or {},
    )


def request_json(
    rid: str, medication_text: str, status: str = "draft", **members: Any
) -> dict[str, Any]:
    """A MedicationRequest of patient p1 as R4 JSON (the ``raw`` a suggestion acts on); ``members``
    add to it or replace its defaults (intent "order")."""
    return {
        "resourceType": "MedicationRequest",
        "id": rid,
        "status": status,
        "intent": "order",
        "subject": {"reference": "Patient/p1"},
        "medicationCodeableConcept": {"text": medication_text},
        **members,
    }


def statin(status: str = "active", med: Medication = ATORVASTATIN, **kw: Any) -> MedicationUse:
    """A statin order (or, with ``resource_type="MedicationStatement"``, a statement)."""
    return use(med, status, **kw)


def drafted_statin(med: Medication = SIMVASTATIN, **kw: Any) -> MedicationUse:
    kw.setdefault("authored", 0)
    return use(med, "draft", drafted=True, **kw)


def condition(
    text: str,
    *,
    codes: tuple[str, ...] = ("http://hl7.org/fhir/sid/icd-10-cm|G72.49",),
    clinical_status: str | None = "active",
    verification_status: str | None = "confirmed",
    onset: Day | None = None,
    recorded: Day | None = None,
    resource_id: str = "cond-1",
) -> ConditionFact:
    return ConditionFact(
        resource_id=resource_id,
        clinical_status=clinical_status,
        verification_status=verification_status,
        codes=codes,
        text=text,
        onset=None if onset is None else day_of(onset),
        recorded=None if recorded is None else day_of(recorded),
    )


def given(
    day: Day,
    grams: Number | None = 40,
    *,
    resource_type: str = "MedicationAdministration",
    status: str = "completed",
    resource_id: str | None = None,
) -> IvigGiven:
    when = at(day)
    return IvigGiven(
        time=when,
        grams=None if grams is None else dec(grams),
        resource_type=resource_type,
        resource_id=resource_id or f"given-{when.date().isoformat()}",
        status=status,
    )


def _by_time(values: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(sorted(values, key=lambda v: v.time))


def record(
    *,
    hook: str = "patient-view",
    gender: str | None = "male",
    birth_date: date | None = date(1960, 5, 19),
    patient_id: str = "p1",
    ck: tuple[CkValue, ...] = (),
    iga: tuple[LabValue, ...] = (),
    hmgcr: tuple[LabValue, ...] = (),
    weight: tuple[LabValue, ...] = (),
    height: tuple[LabValue, ...] = (),
    creatinine: tuple[LabValue, ...] = (),
    egfr: tuple[LabValue, ...] = (),
    ivig_given: tuple[IvigGiven, ...] = (),
    **rest: Any,
) -> PatientRecord:
    """A PatientRecord; value series are sorted oldest → newest as the record contract says."""
    return PatientRecord(
        patient_id=patient_id,
        gender=gender,
        birth_date=birth_date,
        hook=hook,
        ck=_by_time(ck),
        iga=_by_time(iga),
        hmgcr=_by_time(hmgcr),
        weight=_by_time(weight),
        height=_by_time(height),
        creatinine=_by_time(creatinine),
        egfr=_by_time(egfr),
        ivig_given=_by_time(ivig_given),
        **rest,
    )
