"""The patient scenarios as the advice sees them, for the scenario tests of every area.

Each scenario's record is turned into the prefetch each service of its hook would get (the EHR
running that service's prefetch templates on it), gathered (no network: the prefetch is
complete) and built into a ``PatientRecord`` exactly as a hook call does.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import date
from typing import Any

import pytest

from cds_service.advice import Evaluator
from cds_service.advice.model import Advice
from cds_service.demo.search import build_prefetch
from cds_service.fhir.gather import gather
from cds_service.record.build import build_record
from cds_service.record.model import PatientRecord
from cds_service.services import ServiceDeclaration, services_for_hook
from cds_service.settings import Settings
from tests.conftest import load_scenarios

HOOK_INSTANCE = "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea"


def service_records(
    scenario: dict[str, Any], settings: Settings
) -> Iterator[tuple[ServiceDeclaration, PatientRecord]]:
    """Each service declared for the scenario's hook, with the record its own prefetch gives."""
    hook = scenario["hook"]
    for service in services_for_hook(hook):
        body = {
            "hook": hook,
            "hookInstance": HOOK_INSTANCE,
            "context": scenario["context"],
            "prefetch": build_prefetch(service, scenario["context"], scenario["record"]),
        }
        yield service, build_record(gather(service, body, settings), body, settings)


def advice_by_rule(
    scenario: dict[str, Any], settings: Settings, evaluators: Iterable[Evaluator]
) -> dict[str, Advice]:
    """The advice of each rule the ``evaluators`` give across the services of the scenario's hook,
    each service keeping the rules it declares (the first service's advice when two give one)."""
    today = date.fromisoformat(scenario["today"])
    hook = scenario["hook"]
    found: dict[str, Advice] = {}
    for service, record in service_records(scenario, settings):
        for evaluate in evaluators:
            for advice in evaluate(record, today, settings.clinical, hook):
                if advice.rule_id in service.rules:
                    found.setdefault(advice.rule_id, advice)
    return found


def named_scenario(name: str) -> dict[str, Any]:
    """One scenario by test id (``own/<stem>``, ``shared/<stem>``; a bare stem is the shared
    set's); the test is skipped when it is not there (the shared set is optional)."""
    key = name if "/" in name else f"shared/{name}"
    scenarios = load_scenarios()
    if key not in scenarios:
        pytest.skip(f"scenario {key} not found")
    return scenarios[key]
