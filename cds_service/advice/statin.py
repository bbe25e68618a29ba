"""Statin and CK: stop, rhabdomyolysis, repeat, minor rise, anti-HMGCR, rechallenge
(rules.md STAT-01…STAT-06).

Each rule is one function ``(record, today, clinical, hook) -> Advice | None`` that reads like its
row in rules.md. "Recent CK" is the latest usable CK when it is within ``recent_days`` of today
(rules.md Definitions); STAT-01…04 judge that single value (read once per call and handed to
them: ``(record, ck, today, clinical)``), placing a CK reported as a lower
bound (">=3080") in its band as rules.md "CK as a lower bound" says (``in_band_above`` /
``in_band_up_to``). Every CK comparison is bound-aware and exact; only the card rounds.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from cds_service.advice.common import (
    ALL_HOOKS,
    CK_LOINC,
    ONLY_PATIENT_VIEW,
    ORDER_HOOKS,
    card_caveats,
    ck_fact,
    ck_values,
    count_text,
    fired,
    lab_fact,
)
from cds_service.advice.model import Advice, Fact, Indicator, Suggestion
from cds_service.advice.registry import answers, rule
from cds_service.advice.statin_facts import (
    evidence_fact,
    evidence_values,
    statin_fact,
    statin_names,
)
from cds_service.record.model import CkValue, LabValue, MedicationUse, PatientRecord
from cds_service.record.series import days_between, latest, usable
from cds_service.record.statin import (
    active_statins,
    creatinine_rise,
    drafted_statins,
    hmgcr_positive,
    recent_ck,
    statin_stop_date,
    stopped_course,
)
from cds_service.settings import ClinicalSettings

# STAT-01: CK > 10×ULN on a statin: stop it [ADV02 "stop when CK >10×ULN"; EAS15 ">10×ULN
# myopathy"; ACC13 Table 5].
STOP_MULTIPLE = 10
# STAT-02: CK > 40×ULN is the rhabdomyolysis band [EAS15 Table 1] ...
RHABDO_MULTIPLE = 40
# ... or CK > 10×ULN (admit, hydrate, monitor renal [PMCT2]) with a creatinine rise of at least
# 0.5 mg/dL over the value before it (NLA14 criterion, UNVERIFIED; rules.md STAT-02).
CREATININE_RISE_MG_DL = Decimal("0.5")
# STAT-03: CK > 4×ULN needs repeating [EAS15 Table 1]; up to 10×ULN (above that STAT-01).
REPEAT_MULTIPLE = 4
# STAT-04: ULN < CK <= 4×ULN, "may be exercise-related" [EAS15]. The ULN itself is 1×ULN.
ULN_MULTIPLE = 1
# STAT-06: the CK > 10×ULN that stopped the course, looked for within 30 days either side of the
# statin stop date (rules.md STAT-06; window DESIGN) ...
RECHALLENGE_PEAK_WINDOW_DAYS = 30
# ... and a rechallenge less than 56 days after the stop is too early [ACC13 Table 5-C: rechallenge
# after CK normalizes and symptoms resolve; "2 months" as in HMG-01].
RECHALLENGE_MIN_DAYS = 56

LOINC_TSH = "3016-3"  # EAS15 "consider thyroid"; ACC13 Table 5-C hypothyroidism as a cause

LOWER_BOUNDS = frozenset({">", ">="})


# --- CK bands (rules.md "CK as a lower bound", r2) -------------------------------------------


def in_band_above(ck: CkValue, multiple: int) -> bool:
    """Is the CK in a STAT-01…04 band above ``multiple``×ULN (the band's lower edge)?

    An exact value or an upper bound: CK > multiple×ULN, bound-aware (rules.md "Value"). A CK
    reported as ">V" or ">=V" is at least V and sits in the band that contains V; V exactly on
    4×ULN or 10×ULN takes the band above, and V at or under the ULN is in no band (no card).
    """
    if ck.comparator in LOWER_BOUNDS:
        edge = multiple * ck.uln
        return ck.value > edge if multiple == ULN_MULTIPLE else ck.value >= edge
    return ck.above_uln_multiple(multiple)


def in_band_up_to(ck: CkValue, multiple: int) -> bool:
    """Is the CK in a band that ends at ``multiple``×ULN (CK <= multiple×ULN)? A lower bound V
    only when V is under that edge: on the edge the band above applies."""
    if ck.comparator in LOWER_BOUNDS:
        return ck.value < multiple * ck.uln
    return ck.at_most_uln_multiple(multiple)


def evaluate(
    record: PatientRecord, today: date, clinical: ClinicalSettings, hook: str
) -> list[Advice]:
    """STAT-01…06 for this record on ``today`` in ``hook``."""
    # STAT-01…04 judge one value, the recent CK: it is read once and handed to each of them.
    ck = recent_ck(record, today, clinical)
    ck_rules = (stop_statin, possible_rhabdomyolysis, repeat_ck, minor_ck_rise)
    found = [rule(record, ck, today, clinical) for rule in ck_rules if answers(rule, hook)]
    other_rules = (hmgcr_positive_on_statin, rechallenge_too_soon)
    return [a for a in found if a is not None] + fired(other_rules, record, today, clinical, hook)


def _statins_on(record: PatientRecord) -> tuple[MedicationUse, ...]:
    """rules.md "Active statin": drafted in this hook, or active / on-hold (drafts first)."""
    return drafted_statins(record) + active_statins(record)


def _stop_suggestions(statins: tuple[MedicationUse, ...]) -> tuple[Suggestion, ...]:
    """Delete each drafted statin; set each active statin order to stopped."""
    suggestions = [
        Suggestion("delete-draft", target=u, recommended=True) for u in statins if u.drafted
    ]
    suggestions += [
        Suggestion("stop-active", target=u)
        for u in statins
        if not u.drafted and u.resource_type == "MedicationRequest"
    ]
    return tuple(suggestions)


def _ck_advice(
    rule_id: str,
    indicator: Indicator,
    record: PatientRecord,
    ck: CkValue,
    statins: tuple[MedicationUse, ...],
    suggestions: tuple[Suggestion, ...] = (),
) -> Advice:
    """The card of a rule driven by one CK result on a statin (STAT-01, 03, 04)."""
    return Advice(
        rule_id=rule_id,
        indicator=indicator,
        values={**ck_values(ck), "statin": statin_names(statins)},
        facts=(ck_fact(ck), *(statin_fact(u) for u in statins)),
        caveats=card_caveats(record, used=(ck,), medications=statins, unusable_kinds=("ck",)),
        suggestions=suggestions,
        ck_trend=True,
    )


# --- STAT-01 --------------------------------------------------------------------------------


@rule("STAT-01", hooks=ALL_HOOKS)
def stop_statin(
    record: PatientRecord, ck: CkValue | None, today: date, clinical: ClinicalSettings
) -> Advice | None:
    """STAT-01 (all hooks): recent CK > 10×ULN and a statin active or drafted → stop it."""
    if ck is None or not in_band_above(ck, STOP_MULTIPLE):
        return None
    statins = _statins_on(record)
    if not statins:
        return None
    return _ck_advice("STAT-01", "critical", record, ck, statins, _stop_suggestions(statins))


# --- STAT-02 --------------------------------------------------------------------------------


@rule("STAT-02", hooks=ALL_HOOKS)
def possible_rhabdomyolysis(
    record: PatientRecord, ck: CkValue | None, today: date, clinical: ClinicalSettings
) -> Advice | None:
    """STAT-02 (all hooks, statin or not): recent CK > 40×ULN, or recent CK > 10×ULN with the
    latest creatinine recent and >= 0.5 mg/dL above the one just before it."""
    if ck is None or not in_band_above(ck, STOP_MULTIPLE):
        return None
    # 40×ULN is no band edge: a bound meets it as rules.md "Value" says (">=V" when V > 40×ULN,
    # ">V" when V >= 40×ULN).
    over_rhabdo_band = ck.above_uln_multiple(RHABDO_MULTIPLE)
    rise = creatinine_rise(record, today, clinical, CREATININE_RISE_MG_DL)
    if not over_rhabdo_band and rise is None:
        return None

    reasons = []
    if over_rhabdo_band:
        reasons.append(f"above {RHABDO_MULTIPLE}×ULN")
    creatinine_clause = ""
    creatinine_facts: tuple[Fact, ...] = ()
    if rise is not None:
        previous, newest = rise
        change = f"{previous.display()} → {newest.display()}"
        creatinine_clause = f", creatinine {change}"
        reasons.append(
            f"creatinine rose from {previous.display()} ({previous.day.isoformat()}) "
            f"to {newest.display()} ({newest.day.isoformat()})"
        )
        creatinine_facts = (lab_fact(previous), lab_fact(newest))
    return Advice(
        rule_id="STAT-02",
        indicator="critical",
        values={
            **ck_values(ck),
            "creatinine_clause": creatinine_clause,
            "reasons": " and ".join(reasons),
        },
        facts=(ck_fact(ck), *creatinine_facts),
        caveats=card_caveats(record, used=(ck, *(rise or ())), unusable_kinds=("ck", "creatinine")),
        ck_trend=True,
    )


# --- STAT-03 --------------------------------------------------------------------------------


@rule("STAT-03", hooks=ALL_HOOKS)
def repeat_ck(
    record: PatientRecord, ck: CkValue | None, today: date, clinical: ClinicalSettings
) -> Advice | None:
    """STAT-03 (all hooks): 4×ULN < recent CK <= 10×ULN and a statin active or drafted."""
    if ck is None:
        return None
    if not (in_band_above(ck, REPEAT_MULTIPLE) and in_band_up_to(ck, STOP_MULTIPLE)):
        return None
    statins = _statins_on(record)
    if not statins:
        return None
    labs = (
        Suggestion("order-lab", loinc=CK_LOINC, recommended=True),
        Suggestion("order-lab", loinc=LOINC_TSH),
    )
    return _ck_advice("STAT-03", "warning", record, ck, statins, labs)


# --- STAT-04 --------------------------------------------------------------------------------


@rule("STAT-04", hooks=ONLY_PATIENT_VIEW)
def minor_ck_rise(
    record: PatientRecord, ck: CkValue | None, today: date, clinical: ClinicalSettings
) -> Advice | None:
    """STAT-04 (patient-view): ULN < recent CK <= 4×ULN and a statin active."""
    if ck is None:
        return None
    if not (in_band_above(ck, ULN_MULTIPLE) and in_band_up_to(ck, REPEAT_MULTIPLE)):
        return None
    statins = active_statins(record)
    if not statins:
        return None
    return _ck_advice("STAT-04", "info", record, ck, statins)


# --- STAT-05 --------------------------------------------------------------------------------


@rule("STAT-05", hooks=ALL_HOOKS)
def hmgcr_positive_on_statin(
    record: PatientRecord, today: date, clinical: ClinicalSettings, hook: str
) -> Advice | None:
    """STAT-05: anti-HMGCR positive (any date) and a statin drafted (order hooks) or active
    (patient-view) → no statin re-exposure."""
    statins = drafted_statins(record) if hook in ORDER_HOOKS else active_statins(record)
    if not statins:
        return None
    evidence = hmgcr_positive(record, today)
    if evidence is None:
        return None
    labs = (evidence,) if isinstance(evidence, LabValue) else ()
    return Advice(
        rule_id="STAT-05",
        indicator="critical",
        values={**evidence_values(evidence), "statin": statin_names(statins)},
        facts=(evidence_fact(evidence), *(statin_fact(u) for u in statins)),
        caveats=card_caveats(record, used=labs, medications=statins, unusable_kinds=("hmgcr",)),
        suggestions=tuple(
            Suggestion("delete-draft", target=u, recommended=True) for u in statins if u.drafted
        ),
    )


# --- STAT-06 --------------------------------------------------------------------------------


def ck_near_stop(record: PatientRecord, stop: date) -> CkValue | None:
    """The highest usable CK > 10×ULN within 30 days either side of the statin stop date."""
    near = [
        ck
        for ck in usable(record.ck)
        if abs(days_between(stop, ck.day)) <= RECHALLENGE_PEAK_WINDOW_DAYS
        and ck.above_uln_multiple(STOP_MULTIPLE)
    ]
    return max(near, key=lambda ck: ck.times_uln, default=None)


@rule("STAT-06", hooks=ORDER_HOOKS)
def rechallenge_too_soon(
    record: PatientRecord, today: date, clinical: ClinicalSettings, hook: str
) -> Advice | None:
    """STAT-06 (order hooks, a statin drafted): the last course ended with CK > 10×ULN around the
    stop, and CK is still above the ULN or the stop was under 56 days ago."""
    drafts = drafted_statins(record)
    if not drafts:
        return None
    stop = statin_stop_date(record)
    if stop is None:
        return None
    peak = ck_near_stop(record, stop)
    if peak is None:
        return None
    current = latest(record.ck)
    still_raised = current is not None and current.above_uln_multiple(ULN_MULTIPLE)
    days_since_stop = days_between(stop, today)
    too_soon = days_since_stop < RECHALLENGE_MIN_DAYS
    if not (still_raised or too_soon):
        return None

    assert current is not None  # peak exists, so there is a latest CK
    if still_raised:
        why = f"CK still {current.times_uln_text()}×ULN on {current.day.isoformat()}"
    else:
        why = f"stopped only {count_text(days_since_stop)} days ago"
    course = stopped_course(record)
    statins = drafts + ((course,) if course is not None else ())
    cks = (peak,) if current is peak else (peak, current)
    return Advice(
        rule_id="STAT-06",
        indicator="warning",
        values={
            **ck_values(peak, "peak"),
            **ck_values(current, "ck"),
            "stop_date": stop.isoformat(),
            "days_since_stop": count_text(days_since_stop),
            "why": why,
            "statin": statin_names(drafts),
            "stopped_statin": statin_names(statins[len(drafts) :]) or "the previous statin",
            "min_days": str(RECHALLENGE_MIN_DAYS),
        },
        facts=(
            ck_fact(peak, "CK around the stop"),
            *((ck_fact(current, "Latest CK"),) if current is not peak else ()),
            *(statin_fact(u) for u in statins),
        ),
        caveats=card_caveats(record, used=cks, medications=statins, unusable_kinds=("ck",)),
        ck_trend=True,
    )
