"""The project's own scenario set (tests/scenarios) covers the rules: every rule of the catalogue
fires in at least one scenario and is expected silent in another, and every revision-2 point of
the rules has a scenario that names it in ``covers``. A gap, or a misspelt point, fails here."""

from __future__ import annotations

from typing import Any

import pytest

from cds_service.cards_render import load_templates
from tests.conftest import load_scenarios

# The (r2) points of the rules, one name each; a scenario lists the points it shows in `covers`.
R2_POINTS = frozenset({
    "flawed-resource",  # Reading a resource: unknown element, note as string, interpretation object
    "effective-instant",  # Usable observation: time from effectiveInstant
    "future-dated-result",  # a result dated after today is not usable
    "duplicate-results",  # same code, instant, value and unit: one result
    "result-without-value",  # no number or a dataAbsentReason: not usable
    "partial-date",  # a year or year-month is its first day
    "day-of-time-offset",  # the date as written, offset not converted
    "ck-lower-bound-band-edge",  # ">=V" on 4x/10x takes the band above; at or under ULN no card
    "ck-lower-bound-40x",  # ">" vs ">=" at 40x ULN (STAT-02)
    "hmgcr-without-number",  # anti-HMGCR by interpretation or text, negative on file
    "hmgcr-condition-resolved",  # any clinicalStatus forbids a statin
    "condition-refuted",  # refuted / entered-in-error Conditions ignored
    "diabetes-by-text",  # whole word diabetes/diabetic; not prediabetes, not insipidus
    "vte-by-text",  # venous thrombo..., DVT/VTE/PE; "arterial" excludes
    "unit-spelling",  # whitespace removed, superscript two read as 2
    "order-intent",  # plan/proposal/directive/option are not orders
    "statement-on-hold",  # an on-hold MedicationStatement is an active statin
    "ivig-drafts-add-up",  # DOSE-03 adds every IVIG drafted in the call
    "dose-window-28-days",  # G28 is days 0-27
    "iga-under-5",  # IGA-02 and IGA-03 need age > 4
    "ndc-leading-zeros",  # NDC compared on labeler and product in 5-4-2 form
    "unfinished-draft",  # no medication[x]: ignored; no intent: counts
    "no-draft-orders",  # an order hook with no draft at all
    "medication-include",  # Medications brought by the templates' _include
    "medication-contained",  # "#id" resolves to the resource's contained Medication
    "medication-urn-uuid",  # a urn:uuid reference matches an entry's fullUrl
    "one-dose-per-draft",  # DOSE-02 and DOSE-03 suggest the same dose
    "sex-other-unknown",  # ULN, IBW and creatinine ULN for other and unknown sex
})


@pytest.fixture(scope="module")
def own() -> dict[str, dict[str, Any]]:
    found = {k: v for k, v in load_scenarios().items() if k.startswith("own/")}
    assert found, "no own scenarios"
    return found


def test_every_rule_fires_in_one_own_scenario_and_stays_silent_in_another(
    own: dict[str, dict[str, Any]],
) -> None:
    rules = set(load_templates())
    present = {p["topic"] for s in own.values() for p in s["expect"]["present"]}
    absent = {t for s in own.values() for t in s["expect"].get("absent", ())}
    assert sorted(rules - present) == [], "rules never shown firing"
    assert sorted(rules - absent) == [], "rules never shown silent"
    assert sorted((present | absent) - rules) == [], "topics that are not rules of the catalogue"


def test_every_r2_point_has_an_own_scenario(own: dict[str, dict[str, Any]]) -> None:
    covered = {point for s in own.values() for point in s["covers"]}
    assert sorted(covered - R2_POINTS) == [], "unknown r2 point names in covers"
    assert sorted(R2_POINTS - covered) == [], "r2 points without a scenario"


def test_own_scenarios_are_complete(own: dict[str, dict[str, Any]]) -> None:
    """Each file has what the format asks, its numbers in notes, and a scenario judges something."""
    indicators = {"critical", "warning", "info"}
    for key, scenario in own.items():
        assert {"title", "today", "hook", "context", "record", "expect", "notes", "covers"} <= set(
            scenario
        ), key
        assert scenario["hook"] in ("patient-view", "order-select", "order-sign"), key
        expect = scenario["expect"]
        assert expect["present"] or expect["absent"], key
        assert all(p["indicator"] in indicators for p in expect["present"]), key
        both = {p["topic"] for p in expect["present"]} & set(expect["absent"])
        assert not both, (key, both)
        assert any(ch.isdigit() for ch in scenario["notes"]), key
        assert scenario["context"]["patientId"] in {
            e["resource"]["id"] for e in scenario["record"]["entry"]
            if e["resource"]["resourceType"] == "Patient"
        }, key
