"""The advice: pure functions ``(record, today, clinical, hook) -> list[Advice]``, one module per
advisory area, each rule declared once with ``@rule(id, hooks=...)`` (``advice.registry``).

``RULES`` is the rule book of the shipped areas; ``evaluate`` asks the rules a service runs, each
on the hooks it declares.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

from cds_service.advice import continuation, dosing, hmgcr, iga, orders, safety, statin
from cds_service.advice.model import INDICATOR_ORDER, Advice, Fact, Indicator, Suggestion
from cds_service.advice.registry import (
    Area,
    Evaluator,
    RuleBook,
    RuleDeclaration,
    area_of,
    rule,
)
from cds_service.record.model import PatientRecord
from cds_service.settings import ClinicalSettings

__all__ = [
    "EVALUATORS",
    "INDICATOR_ORDER",
    "RULES",
    "Advice",
    "Area",
    "Evaluator",
    "Fact",
    "Indicator",
    "RuleBook",
    "RuleDeclaration",
    "Suggestion",
    "area_of",
    "evaluate",
    "rule",
]

# One area per advisory module; each module is independent of the others and of this list.
RULES = RuleBook(
    tuple(area_of(m) for m in (statin, hmgcr, iga, dosing, safety, continuation, orders))
)
EVALUATORS: tuple[Evaluator, ...] = tuple(area.evaluate for area in RULES.areas)


def evaluate(
    record: PatientRecord,
    today: date,
    clinical: ClinicalSettings,
    hook: str,
    rules: Iterable[str],
    rulebook: RuleBook = RULES,
) -> list[Advice]:
    """Every advice the service's ``rules`` give for this record, ordered critical → warning →
    info; a rule is asked only on the hooks it declares.

    One card per rule per call (rules.md "Card identity"): a rule id appears at most once.
    """
    return rulebook.evaluate(record, today, clinical, hook, rules)
