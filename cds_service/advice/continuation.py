"""IVIG continuation: remission, CK monitoring after stopping, relapse, no response
(rules.md CONT-01…CONT-04).

Every threshold here comes from one AI-generated seed document (SEED1) or is a design choice;
clinical-evidence.md "Open questions" 6 says they need specialist sign-off, and the cards name the
seed as an AI-generated expert summary. CONT-02, supported by the seed alone, is a local protocol
(rules.md r2): its four day counts are site settings (``ClinicalSettings.ck_monitor_*``).

Day counts are calendar days between ``today`` and a result's or dose's day; a window "in the last
N days" includes day N (the rules.md "Recent" convention).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from itertools import islice

from cds_service.advice.common import (
    ALL_HOOKS,
    CK_LOINC,
    ONLY_PATIENT_VIEW,
    ORDER_SELECT,
    PATIENT_VIEW,
    VIEW_AND_SELECT,
    card_caveats,
    ck_fact,
    ck_values,
    count_text,
    ivig_order_hook,
)
from cds_service.advice.model import Advice, Fact, Indicator, Suggestion
from cds_service.advice.registry import answers, rule
from cds_service.record.ivig import (
    ONGOING_WINDOW_DAYS,
    IvigStatus,
    drafted_ivig,
    ivig_status,
)
from cds_service.record.model import (
    CkValue,
    MedicationUse,
    PatientRecord,
    format_number,
)
from cds_service.record.series import days_between, usable
from cds_service.settings import ClinicalSettings

# CONT-01 remission: the last two non-preliminary CKs ≤ ULN at least 28 days apart (SEED1 "CK every
# 4-8 weeks"; clinical-evidence.md "Biochemical remission", DESIGN) ...
REMISSION_GAP_DAYS = 28  # SEED1 "4-8 weeks"
# ... and no CK above the ULN in the last 182 days (6 months; SEED1 "6-12 months", DESIGN).
REMISSION_WINDOW_DAYS = 182
# CONT-02: CK monitoring after IVIG stops: every 4-8 weeks for 6 months, then quarterly (SEED1);
# the rule watches the first year after the last IVIG. Settings (rules.md r2): early interval 56
# days (SEED1 "every 4-8 weeks": the 8-week end), early phase 182 days (SEED1 "for 6 months"),
# late interval 91 days (SEED1 "then quarterly"), horizon 365 days (DESIGN).
# CONT-03: "If CPK rises above 3x ULN or symptoms recur, reinitiate IVIG promptly" (SEED1).
RELAPSE_ULN_MULTIPLE = 3  # SEED1
# CONT-03 also looks at a course still formally open whose last dose is older than the ongoing
# window (rules.md CONT-03 "last IVIG > 56 days ago" = the "IVIG ongoing" window).
RELAPSE_AFTER_DAYS = ONGOING_WINDOW_DAYS


def evaluate(
    record: PatientRecord, today: date, clinical: ClinicalSettings, hook: str
) -> list[Advice]:
    """CONT-01…04 for this record on ``today``, each asked only on the hooks its ``@rule``
    declares; ``clinical`` holds CONT-02's day counts."""
    status = ivig_status(record, today)
    context = _Context(record, today, status, hook, clinical)
    rules = (remission_on_ivig, ck_monitoring_overdue, possible_relapse, no_ck_response)
    found = (rule(context) for rule in rules if answers(rule, hook))
    return [advice for advice in found if advice is not None]


class _Context:
    """What every CONT rule reads: the record, the IVIG status and the usable CKs."""

    def __init__(
        self,
        record: PatientRecord,
        today: date,
        status: IvigStatus,
        hook: str,
        clinical: ClinicalSettings,
    ) -> None:
        self.record = record
        self.clinical = clinical
        self.today = today
        self.status = status
        self.hook = hook
        self.cks: tuple[CkValue, ...] = usable(record.ck)
        self.ivig_drafts: tuple[MedicationUse, ...] = drafted_ivig(record)

    @property
    def latest_ck(self) -> CkValue | None:
        return self.cks[-1] if self.cks else None

    def days_ago(self, day: date) -> int:
        return days_between(day, self.today)

    def window_start(self, days: int) -> date:
        """The first day "in the last ``days`` days" (day ``days`` included, a day after today
        too: ``record.series.within_last`` is ``day >=`` it), worked out once for a scan of the
        whole CK series."""
        return self.today - timedelta(days=days)

    def cks_since(self, day: date) -> tuple[CkValue, ...]:
        """The usable CKs of ``day`` or later, oldest → newest, read from the newest back.

        The CKs are in time order as instants, and a day as written is less than a day from the
        instant's UTC day (an offset is under 24 hours), so every CK before the first one more
        than a day before ``day`` in UTC is of an earlier day: the scan stops there instead of
        reading the whole series."""
        stop = datetime.combine(day, time(), UTC) - timedelta(days=1)
        found = []
        for ck in reversed(self.cks):
            if ck.time < stop:
                break
            if ck.day >= day:
                found.append(ck)
        found.reverse()
        return tuple(found)


# --- CONT-01 ---------------------------------------------------------------------------------


def remission_pair(context: _Context) -> tuple[CkValue, CkValue] | None:
    """rules.md CONT-01 "remission": the last two usable non-preliminary CKs (older, newer) when
    both are ≤ ULN, at least 28 days apart, and no usable CK (preliminary included) is > ULN in
    the last 182 days; else None."""
    # The last two: read from the newest back, the older results are not needed.
    last_two = tuple(islice((c for c in reversed(context.cks) if not c.preliminary), 2))
    if len(last_two) < 2:
        return None
    newer, older = last_two
    if not (older.at_most_uln_multiple(1) and newer.at_most_uln_multiple(1)):
        return None
    if days_between(older.day, newer.day) < REMISSION_GAP_DAYS:
        return None
    window_start = context.window_start(REMISSION_WINDOW_DAYS)
    if any(c.above_uln_multiple(1) for c in context.cks_since(window_start)):
        return None
    return older, newer


@rule("CONT-01", hooks=ALL_HOOKS)
def remission_on_ivig(context: _Context) -> Advice | None:
    status = context.status
    indicator: Indicator
    if context.hook == PATIENT_VIEW:
        indicator = "info"
    elif ivig_order_hook(context.record, context.hook):
        indicator = "warning"
    else:
        return None
    if not (status.ongoing and status.course_six_months):
        return None
    pair = remission_pair(context)
    if pair is None:
        return None
    older, newer = pair

    suggestions: tuple[Suggestion, ...] = ()
    if indicator == "warning":
        suggestions = tuple(Suggestion("delete-draft", target=d) for d in context.ivig_drafts) + (
            Suggestion("order-lab", loinc=CK_LOINC),
        )
    excluded = tuple(c for c in context.cks_since(older.day) if c.preliminary)
    caveats = [
        f"Preliminary CK {c.display()} of {c.day.isoformat()} not counted in the remission test"
        for c in excluded
    ]
    return Advice(
        rule_id="CONT-01",
        indicator=indicator,
        values={
            **ck_values(newer),
            **ck_values(older, "ck_prev"),
            "gap_days": count_text(days_between(older.day, newer.day)),
            "window_days": str(REMISSION_WINDOW_DAYS),
            **_course_values(context),
        },
        facts=(
            _ck_fact(older, context),
            _ck_fact(newer, context),
            *_course_facts(context),
        ),
        caveats=_caveats(context, (older, newer), caveats),
        suggestions=suggestions,
        ck_trend=True,
    )


# --- CONT-02 ---------------------------------------------------------------------------------


def monitoring_interval_days(days_since_last_ivig: int, clinical: ClinicalSettings) -> int:
    """SEED1 plan after stopping: 4-8-weekly CKs for 6 months, then quarterly (settings)."""
    if days_since_last_ivig <= clinical.ck_monitor_phase_days:
        return clinical.ck_monitor_early_days
    return clinical.ck_monitor_late_days


@rule("CONT-02", hooks=ONLY_PATIENT_VIEW)
def ck_monitoring_overdue(context: _Context) -> Advice | None:
    status = context.status
    if not status.stopped or status.stop_date is None:
        return None
    since = context.days_ago(status.stop_date)
    clinical = context.clinical
    if since > clinical.ck_monitor_horizon_days:
        return None
    interval = monitoring_interval_days(since, clinical)
    window_start = context.window_start(interval)
    if any(c.day >= window_start for c in context.cks):
        return None

    latest = context.latest_ck
    # The CK was due one interval after the later of the last CK and the stop; the rule fires only
    # once that day is past (both are more than one interval ago).
    anchor = max(latest.day, status.stop_date) if latest else status.stop_date
    due = anchor + timedelta(days=interval)
    values = {
        "stop_date": status.stop_date.isoformat(),
        "days_since_last": count_text(since),
        "interval_days": str(interval),
        "interval_words": (
            f"at least every {clinical.ck_monitor_early_days} days for the first "
            f"{clinical.ck_monitor_phase_days} days after stopping"
            if since <= clinical.ck_monitor_phase_days
            else f"at least every {clinical.ck_monitor_late_days} days after the first "
            f"{clinical.ck_monitor_phase_days} days"
        ),
        "due_date": due.isoformat(),
        "overdue_days": count_text(context.days_ago(due)),
        "last_ck_clause": f"last CK {latest.day.isoformat()}" if latest else "no CK on file",
        "last_ck": f"{latest.display()} ({latest.day.isoformat()})" if latest else "none on file",
        "horizon_days": str(clinical.ck_monitor_horizon_days),
        "early_interval_days": str(clinical.ck_monitor_early_days),
        "late_interval_days": str(clinical.ck_monitor_late_days),
        "phase_days": str(clinical.ck_monitor_phase_days),
    }
    facts = [*_course_facts(context)]
    if latest is not None:
        facts.insert(0, _ck_fact(latest, context))
    else:
        facts.insert(0, Fact(label="CK", value="none on file"))
    return Advice(
        rule_id="CONT-02",
        indicator="warning",
        values=values,
        facts=tuple(facts),
        caveats=_caveats(context, (latest,) if latest else ()),
        suggestions=(Suggestion("order-lab", loinc=CK_LOINC, recommended=True),),
        ck_trend=True,
    )


# --- CONT-03 ---------------------------------------------------------------------------------


@rule("CONT-03", hooks=VIEW_AND_SELECT)
def possible_relapse(context: _Context) -> Advice | None:
    status = context.status
    if context.hook == ORDER_SELECT and not context.ivig_drafts:
        return None
    last = status.last_given
    if last is None or status.days_since_last is None:
        return None
    if not (status.stopped or status.days_since_last > RELAPSE_AFTER_DAYS):
        return None
    latest = context.latest_ck
    # "Dated after the last IVIG": a later calendar day; a CK drawn on an infusion day is
    # usually the pre-infusion sample, so it does not count as after.
    if latest is None or latest.day <= last.day:
        return None
    if not latest.above_uln_multiple(RELAPSE_ULN_MULTIPLE):
        return None
    return Advice(
        rule_id="CONT-03",
        indicator="warning",
        values={
            **ck_values(latest),
            "relapse_multiple": str(RELAPSE_ULN_MULTIPLE),
            "days_after_ivig": count_text(days_between(last.day, latest.day)),
            **_course_values(context),
        },
        facts=(_ck_fact(latest, context), *_course_facts(context)),
        caveats=_caveats(context, (latest,)),
        ck_trend=True,
    )


# --- CONT-04 ---------------------------------------------------------------------------------


@rule("CONT-04", hooks=ONLY_PATIENT_VIEW)
def no_ck_response(context: _Context) -> Advice | None:
    status = context.status
    if not (status.ongoing and status.course_six_months):
        return None
    latest = context.latest_ck
    if latest is None or not latest.above_uln_multiple(1):
        return None
    return Advice(
        rule_id="CONT-04",
        indicator="info",
        values={**ck_values(latest), **_course_values(context)},
        facts=(_ck_fact(latest, context), *_course_facts(context)),
        caveats=_caveats(context, (latest,)),
        ck_trend=True,
    )


# --- shared wording helpers ------------------------------------------------------------------


def _ck_fact(ck: CkValue, context: _Context) -> Fact:
    return ck_fact(ck, days_ago=context.days_ago(ck.day))


def _course_values(context: _Context) -> dict[str, str]:
    status = context.status
    if status.course_start is None or status.last_given is None:
        return {}
    return {
        "course_start": status.course_start.isoformat(),
        "course_days": count_text(status.course_days or 0),
        "course_months": str(_whole_months(status.course_start, context.today)),
        "last_ivig": status.last_given.day.isoformat(),
        "days_since_last": count_text(status.days_since_last or 0),
        "ivig_state": _ivig_state(status),
    }


def _ivig_state(status: IvigStatus) -> str:
    if status.ongoing:
        return "ongoing (" + ", ".join(status.ongoing_because) + ")"
    if status.stopped:
        return "stopped"
    return "not given"


def _course_facts(context: _Context) -> tuple[Fact, ...]:
    status = context.status
    last = status.last_given
    if status.course_start is None or last is None:
        return ()
    course_length = (
        f"{_whole_months(status.course_start, context.today)} months "
        f"({count_text(status.course_days or 0)} days)"
    )
    first_note = "course ≥ 6 months" if status.course_six_months else "course < 6 months"
    last_value = f"{format_number(last.grams)} g" if last.grams is not None else "dose not recorded"
    last_note = f"{count_text(status.days_since_last or 0)} days ago"
    if last.resource_type == "MedicationRequest":
        last_note += "; from the order (no administration recorded)"
    return (
        Fact(
            label="IVIG course (first dose)",
            value=course_length,
            day=status.course_start,
            note=first_note,
        ),
        Fact(label="Last IVIG", value=last_value, day=last.day, note=last_note),
        Fact(label="IVIG status", value=_ivig_state(status)),
    )


def _whole_months(start: date, end: date) -> int:
    months = (end.year - start.year) * 12 + (end.month - start.month)
    if end.day < start.day:
        months -= 1
    return max(months, 0)


def _caveats(
    context: _Context, used: Iterable[CkValue], extra: Iterable[str] = ()
) -> tuple[str, ...]:
    return card_caveats(
        context.record,
        used=used,
        extra=extra,
        medications=context.record.ivig_uses,
        unusable_kinds=("ck",),
    )
