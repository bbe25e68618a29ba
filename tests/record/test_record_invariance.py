"""The record depends on what the resources say, not on their ids or on how often they came.

Guards the record builder's fast paths (one pass by resource type, per-call memos of
classification and route): the benchmark's realistic record under other ids (bench/record.py
variants, both hooks, through the real ``gather``) must give the same record with the ids
renamed back, and every project scenario must give the same record when each resource arrives
twice (two feeds) or its drafts also come back from a search (``scenario``: each scenario,
parametrized by tests/conftest.py).
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import date
from typing import Any

import pytest

from bench.record import TODAY, hook_body
from cds_service.fhir.data import FhirData
from cds_service.fhir.gather import gather
from cds_service.record.build import build_record
from cds_service.record.model import PatientRecord
from cds_service.services import SERVICES
from cds_service.settings import Settings

# The services bench/profile_call.py calls.
SERVICES_OF_BENCH = {
    s.hook: s for s in SERVICES if s.id in ("ivig-order-check", "myopathy-review")
}


def bench_record(hook: str, variant: int) -> PatientRecord:
    settings = Settings().with_overrides(today=TODAY)
    body = hook_body(hook, variant=variant)
    service = SERVICES_OF_BENCH[hook]
    data = gather(service, body, settings)
    return build_record(data, body, settings, TODAY)


def without_variant(text: str, variant: int) -> str:
    """The repr of a variant's record with its ids as variant 0 has them."""
    text = text.replace(f"-v{variant}'", "'")
    return re.sub(r"draft-ivig-\d+", "draft-ivig-1", text)


@pytest.mark.parametrize("hook", ["order-sign", "patient-view"])
@pytest.mark.parametrize("variant", [1, 2, 7, 13])
def test_benchmark_record_is_the_same_under_other_ids(hook: str, variant: int) -> None:
    base = bench_record(hook, 0)
    other = bench_record(hook, variant)
    # The record is not trivially empty: the checks below compare something.
    assert base.ck and base.statin_uses and base.ivig_uses and base.ivig_given
    assert f"-v{variant}'" in repr(other)
    assert without_variant(repr(other), variant) == without_variant(repr(base), 0)

def record_of(scenario: dict[str, Any], repeat_resources: bool) -> PatientRecord:
    context = scenario["context"]
    drafts = tuple(e["resource"] for e in context.get("draftOrders", {}).get("entry", []))
    resources = tuple(e["resource"] for e in scenario["record"]["entry"])
    selections = tuple(context.get("selections", ()))
    data = FhirData(resources=resources, drafts=drafts, selections=selections)
    if repeat_resources:
        # Every resource twice (the second copy is dropped) and the drafts among the resources
        # too (a draft that also came back from a search is read as the draft).
        data = replace(data, resources=(*resources, *drafts, *resources))
    body = {"hook": scenario["hook"], "hookInstance": "test", "context": context}
    return build_record(data, body, Settings(), date.fromisoformat(scenario["today"]))


def test_scenario_record_is_the_same_when_resources_repeat(scenario: dict[str, Any]) -> None:
    assert repr(record_of(scenario, True)) == repr(record_of(scenario, False))
