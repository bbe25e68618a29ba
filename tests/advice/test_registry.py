"""The rule registry: ``@rule`` declarations, the rule book, and asking a rule only on its hooks."""

from __future__ import annotations

from datetime import date

import pytest

from cds_service.advice import RULES, evaluate
from cds_service.advice.model import Advice
from cds_service.advice.registry import Area, RuleBook, answers, declaration, rule
from cds_service.advice.statin import minor_ck_rise, stop_statin
from cds_service.record.model import PatientRecord
from cds_service.settings import ClinicalSettings
from tests.advice import builders as b

CLINICAL = ClinicalSettings()


def test_a_rule_is_declared_on_its_function_and_its_area_is_its_module() -> None:
    found = declaration(stop_statin)
    assert found is not None
    assert (found.id, found.area) == ("STAT-01", "statin")
    assert found.hooks == {"patient-view", "order-select", "order-sign"}
    assert RULES.get("STAT-04") == declaration(minor_ck_rise)
    assert answers(minor_ck_rise, "patient-view") and not answers(minor_ck_rise, "order-sign")


def test_every_shipped_area_declares_its_rules() -> None:
    by_area = {area.name: [r.id for r in area.rules] for area in RULES.areas}
    assert by_area["statin"] == [f"STAT-0{n}" for n in range(1, 7)]
    assert by_area["orders"] == ["ORDER-UNIDENTIFIED"]
    assert len(RULES.ids()) == 24


def test_an_undeclared_function_is_refused() -> None:
    with pytest.raises(TypeError, match="not declared with @rule"):
        answers(lambda: None, "patient-view")
    with pytest.raises(ValueError, match="answers at least one hook"):
        rule("X-01", hooks=())


def test_a_rule_declared_twice_is_refused() -> None:
    twice = Area("statin-again", lambda *a: [], (RULES.get("STAT-01"),))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="rule STAT-01 is declared twice"):
        RULES.plus(twice)


def test_a_rule_is_asked_only_on_its_hooks() -> None:
    calls: list[str] = []

    @rule("TOY-01", hooks={"order-sign"}, area="toy")
    def toy(record: PatientRecord, today: date, clinical: ClinicalSettings, hook: str) -> Advice:
        return Advice(rule_id="TOY-01", indicator="info")

    def evaluate_toy(
        record: PatientRecord, today: date, clinical: ClinicalSettings, hook: str
    ) -> list[Advice]:
        calls.append(hook)
        return [toy(record, today, clinical, hook)]  # says TOY-01 whatever the hook

    book = RuleBook((Area("toy", evaluate_toy, (declaration(toy),)),))  # type: ignore[arg-type]
    record = b.record()
    assert evaluate(record, b.TODAY, CLINICAL, "patient-view", ["TOY-01"], book) == []
    assert calls == []  # the area was not even run: none of its wanted rules answers
    [advice] = evaluate(record, b.TODAY, CLINICAL, "order-sign", ["TOY-01"], book)
    assert advice.rule_id == "TOY-01" and calls == ["order-sign"]
    assert evaluate(record, b.TODAY, CLINICAL, "order-sign", [], book) == []
