"""The rule registry: each rule declared once, on its advice function, with ``@rule``.

``@rule("STAT-01", hooks=ALL_HOOKS)`` says the rule's id and the hooks it answers; its area is
the module it lives in (``statin``, ``dosing``, ...). Nothing else says which hooks a rule answers:
``evaluate`` asks a rule only on its hooks, the card templates' ``hooks`` and the services are
checked against these declarations at start-up (``cds_service.catalogue``), and the gallery and
``myocds rules`` read them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date
from types import MappingProxyType, ModuleType
from typing import Any, TypeVar

from cds_service.advice.model import INDICATOR_ORDER, Advice
from cds_service.record.model import PatientRecord
from cds_service.settings import ClinicalSettings

__all__ = [
    "Area",
    "Evaluator",
    "RuleBook",
    "RuleDeclaration",
    "answers",
    "area_of",
    "declaration",
    "rule",
]

Evaluator = Callable[[PatientRecord, date, ClinicalSettings, str], list[Advice]]
F = TypeVar("F", bound=Callable[..., Any])

_MARK = "__myocds_rule__"


@dataclass(frozen=True)
class RuleDeclaration:
    id: str  # "STAT-01": the card template's name and the card's source.topic code
    area: str  # the advice module: "statin", "dosing", ...
    hooks: frozenset[str]  # the hooks it answers (rules.md "hooks")

    def answers(self, hook: str) -> bool:
        return hook in self.hooks


def rule(rule_id: str, *, hooks: Iterable[str], area: str | None = None) -> Callable[[F], F]:
    """Declare the advice function below as rule ``rule_id`` answering ``hooks``; the function
    itself is returned unchanged."""
    declared = frozenset(hooks)
    if not declared:
        raise ValueError(f"{rule_id}: a rule answers at least one hook")

    def mark(function: F) -> F:
        name = area or function.__module__.rsplit(".", 1)[-1]
        setattr(function, _MARK, RuleDeclaration(rule_id, name, declared))
        return function

    return mark


def declaration(function: Callable[..., Any]) -> RuleDeclaration | None:
    """The ``@rule`` declaration of an advice function (None when it is not a rule)."""
    found = getattr(function, _MARK, None)
    return found if isinstance(found, RuleDeclaration) else None


def answers(function: Callable[..., Any], hook: str) -> bool:
    """Whether the rule ``function`` declares is asked on ``hook``."""
    found = declaration(function)
    if found is None:
        raise TypeError(f"{getattr(function, '__name__', function)} is not declared with @rule")
    return found.answers(hook)


@dataclass(frozen=True)
class Area:
    """One advice module: its ``evaluate`` and the rules declared in it."""

    name: str
    evaluate: Evaluator
    rules: tuple[RuleDeclaration, ...]


def area_of(module: ModuleType) -> Area:
    """The area of an advice module: its ``evaluate`` and every ``@rule`` function in it."""
    found = {
        declared.id: declared
        for value in vars(module).values()
        if (declared := declaration(value)) is not None
        and getattr(value, "__module__", None) == module.__name__
    }
    name = module.__name__.rsplit(".", 1)[-1]
    return Area(name, module.evaluate, tuple(sorted(found.values(), key=lambda r: r.id)))


@dataclass(frozen=True)
class RuleBook:
    """Every rule of an application by id, with the areas that give their advice."""

    areas: tuple[Area, ...]
    _by_id: Mapping[str, RuleDeclaration] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_id: dict[str, RuleDeclaration] = {}
        for area in self.areas:
            for declaration in area.rules:
                if declaration.id in by_id:
                    raise ValueError(f"rule {declaration.id} is declared twice")
                by_id[declaration.id] = declaration
        object.__setattr__(self, "_by_id", MappingProxyType(by_id))

    def __iter__(self) -> Iterator[RuleDeclaration]:
        return iter(self._by_id.values())

    def __contains__(self, rule_id: object) -> bool:
        return rule_id in self._by_id

    def get(self, rule_id: str) -> RuleDeclaration | None:
        return self._by_id.get(rule_id)

    def ids(self) -> tuple[str, ...]:
        return tuple(self._by_id)

    def plus(self, *areas: Area) -> RuleBook:
        """These rules and those of ``areas`` (an application with rules of its own)."""
        return RuleBook((*self.areas, *areas))

    def answering(self, hook: str, rules: Iterable[str]) -> tuple[str, ...]:
        """Of ``rules``, the declared ones that answer ``hook``, in the order given."""
        return tuple(
            r for r in rules if (d := self._by_id.get(r)) is not None and d.answers(hook)
        )

    def evaluate(
        self,
        record: PatientRecord,
        today: date,
        clinical: ClinicalSettings,
        hook: str,
        rules: Iterable[str],
    ) -> list[Advice]:
        """Every advice ``rules`` give for this record in ``hook``, critical → warning → info.

        A rule is asked only on the hooks it declares; an area none of whose wanted rules answers
        the hook is not run. One card per rule per call (rules.md "Card identity").
        """
        wanted = set(self.answering(hook, rules))
        seen: set[str] = set()
        advices: list[Advice] = []
        for area in self.areas:
            if not any(r.id in wanted for r in area.rules):
                continue
            for advice in area.evaluate(record, today, clinical, hook):
                if advice.rule_id in wanted and advice.rule_id not in seen:
                    seen.add(advice.rule_id)
                    advices.append(advice)
        return sorted(advices, key=lambda a: INDICATOR_ORDER[a.indicator])
