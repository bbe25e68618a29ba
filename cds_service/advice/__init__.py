"""The advice: pure functions ``(record, today, clinical, hook) -> list[Advice]``, one module per
advisory area. ``evaluate`` runs every area and keeps the rules the calling service declares."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import date

from cds_service.advice import continuation, dosing, hmgcr, iga, orders, safety, statin
from cds_service.advice.model import INDICATOR_ORDER, Advice
from cds_service.record.model import PatientRecord
from cds_service.settings import ClinicalSettings

Evaluator = Callable[[PatientRecord, date, ClinicalSettings, str], list[Advice]]

# One evaluator per advisory area; each module is independent of the others and of this list.
EVALUATORS: tuple[Evaluator, ...] = (
    statin.evaluate,
    hmgcr.evaluate,
    iga.evaluate,
    dosing.evaluate,
    safety.evaluate,
    continuation.evaluate,
    orders.evaluate,
)


def evaluate(
    record: PatientRecord,
    today: date,
    clinical: ClinicalSettings,
    hook: str,
    rules: Iterable[str],
) -> list[Advice]:
    """Every advice the service's rules give for this record, ordered critical → warning → info.

    One card per rule per call (rules.md "Card identity"): a rule id appears at most once.
    """
    wanted = set(rules)
    seen: set[str] = set()
    advices: list[Advice] = []
    for evaluator in EVALUATORS:
        for advice in evaluator(record, today, clinical, hook):
            if advice.rule_id in wanted and advice.rule_id not in seen:
                seen.add(advice.rule_id)
                advices.append(advice)
    return sorted(advices, key=lambda a: INDICATOR_ORDER[a.indicator])
