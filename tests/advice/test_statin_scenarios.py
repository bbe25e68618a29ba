"""The scenarios of ../shared/scenarios, judged on the statin, anti-HMGCR and order topics.

Each scenario's record is searched with every prefetch template of each service of its hook
(``build_prefetch``), gathered (no network: the prefetch is complete), built into a
``PatientRecord`` and run through the advice registry with that service's rules; the topics of
these rules must be present with their indicator, or absent, as the scenario expects. The full
HTTP path is judged elsewhere; this pins the advice on real FHIR input.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from cds_service import advice
from cds_service.fhir.gather import gather
from cds_service.fhir.search import build_prefetch
from cds_service.record.build import build_record
from cds_service.services import ALL_RULES_STATIN, ORDER_UNIDENTIFIED, services_for_hook
from cds_service.settings import Settings

SCENARIOS = Path(__file__).resolve().parents[2].parent / "shared" / "scenarios"
MY_TOPICS = frozenset(ALL_RULES_STATIN) | {ORDER_UNIDENTIFIED}


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def _mine(scenario: dict[str, Any]) -> bool:
    expect = scenario["expect"]
    topics = {p["topic"] for p in expect.get("present", ())} | set(expect.get("absent", ()))
    return bool(topics & MY_TOPICS)


SCENARIO_FILES = sorted(p for p in SCENARIOS.glob("*.json") if _mine(_load(p)))


def topics_for(scenario: dict[str, Any]) -> dict[str, str]:
    """topic -> indicator over every service declared for the scenario's hook."""
    hook = scenario["hook"]
    today = date.fromisoformat(scenario["today"])
    settings = Settings(auth="off", today=today)
    found: dict[str, str] = {}
    for service in services_for_hook(hook):
        body = {
            "hook": hook,
            "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
            "context": scenario["context"],
            "prefetch": build_prefetch(service, scenario["context"], scenario["record"]),
        }
        data = gather(service, body, settings)
        record = build_record(data, body, settings)
        for item in advice.evaluate(record, today, settings.clinical, hook, service.rules):
            found[item.rule_id] = item.indicator
    return found


def test_scenarios_found() -> None:
    # Guards against a moved directory silently leaving nothing to test.
    names = {p.name for p in SCENARIO_FILES}
    assert {"statin-ck-over-40x.json", "statin-rechallenge-too-soon.json"} <= names


@pytest.mark.parametrize("path", SCENARIO_FILES, ids=lambda p: p.stem)
def test_scenario(path: Path) -> None:
    scenario = _load(path)
    found = topics_for(scenario)
    expect = scenario["expect"]
    for present in expect.get("present", ()):
        if present["topic"] in MY_TOPICS:
            assert found.get(present["topic"]) == present["indicator"], (present, found)
    for topic in expect.get("absent", ()):
        if topic in MY_TOPICS:
            assert topic not in found, (topic, found)
