"""The patient scenarios (own set, and the shared set when present), judged on the statin,
anti-HMGCR and order topics.

Each scenario's record is built per service as a hook call builds it (``tests.advice.scenarios``)
and run through the advice registry with that service's rules; the topics of these rules must be
present with their indicator, or absent, as the scenario expects. The full HTTP path is judged
elsewhere; this pins the advice on real FHIR input.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from cds_service import advice
from cds_service.services import ALL_RULES_STATIN, ORDER_UNIDENTIFIED
from cds_service.settings import Settings
from tests.advice.scenarios import service_records
from tests.conftest import scenario_paths

MY_TOPICS = frozenset(ALL_RULES_STATIN) | {ORDER_UNIDENTIFIED}


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def _mine(scenario: dict[str, Any]) -> bool:
    expect = scenario["expect"]
    topics = {p["topic"] for p in expect.get("present", ())} | set(expect.get("absent", ()))
    return bool(topics & MY_TOPICS)


# Test id ("own/<name>", "shared/<name>") -> file, for the scenarios that judge these topics.
SCENARIO_FILES = {key: path for key, path in scenario_paths().items() if _mine(_load(path))}


def topics_for(scenario: dict[str, Any]) -> dict[str, str]:
    """topic -> indicator over every service declared for the scenario's hook."""
    hook = scenario["hook"]
    today = date.fromisoformat(scenario["today"])
    settings = Settings(auth="off", today=today)
    found: dict[str, str] = {}
    for service, record in service_records(scenario, settings):
        for item in advice.evaluate(record, today, settings.clinical, hook, service.rules):
            found[item.rule_id] = item.indicator
    return found


def test_scenarios_found() -> None:
    # Guards against a moved directory silently leaving nothing to test.
    assert {"own/stat02-ck-over-40x-no-statin", "own/stat06-rechallenge-ck-still-raised"} <= set(
        SCENARIO_FILES
    )


@pytest.mark.parametrize("path", list(SCENARIO_FILES.values()), ids=list(SCENARIO_FILES))
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
