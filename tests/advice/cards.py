"""The repository's card templates and the rules.md rule table, read once for every test that
checks a template against its Advice (every placeholder has a value, the summary as rendered
stays <= 139 characters) or against rules.md (hooks, indicator, sources)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from cds_service.advice.model import Advice
from cds_service.cards_render.render import fill_summary, utf16_length

REPO = Path(__file__).resolve().parents[2]
CARDS = REPO / "cards"
# The team's normative rules.md, an optional cross-check: beside the repository when it is there
# (a clone alone has docs/rules.md, generated from the templates themselves, and skips it).
RULES_MD = REPO.parent / "shared" / "knowledge" / "rules.md"
SUMMARY_MAX = 139  # rules.md "What every card must show"


def template(rule: str) -> dict[str, Any]:
    return json.loads((CARDS / f"{rule}.json").read_text(encoding="utf-8"))


def filled(rule: str, advice: Advice) -> dict[str, str]:
    """The template texts filled with the advice's values (KeyError on a missing value)."""
    data = template(rule)
    return {
        member: data[member].format_map(dict(advice.values))
        for member in ("summary", "reasoning", "plan")
        if member in data
    }


def check_card(advice: Advice) -> str:
    """Assert the advice fills its template; return the summary as the card shows it (the
    renderer shortens a long free text to fit, ``fill_summary``)."""
    data = template(advice.rule_id)
    filled(advice.rule_id, advice)
    summary = fill_summary(data["summary"], advice.values)
    assert utf16_length(summary) <= SUMMARY_MAX, (len(summary), summary)
    assert advice.indicator == data["indicator"]
    kinds = {
        s.kind if s.kind != "order-lab" else f"order-lab:{s.loinc}" for s in advice.suggestions
    }
    assert kinds <= set(data.get("suggestions", {})), kinds
    return summary


def rules_table() -> dict[str, dict[str, Any]]:
    """rule id -> {hooks text, indicator text, indicators (set), sources (list)} from the rules.md
    rule table ("info / warning" is one indicator text of two indicators). Skips the calling test
    when that reference is not beside the repository."""
    if not RULES_MD.is_file():
        pytest.skip(f"optional cross-check: the reference {RULES_MD.name} is not there")
    rows: dict[str, dict[str, Any]] = {}
    for line in RULES_MD.read_text(encoding="utf-8").splitlines():
        # "\|" inside a cell (DOSE-02's |grams − k × kg|) is a literal bar, not a column break
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]
        if len(cells) >= 6 and re.fullmatch(r"[A-Z]+-\d\d", cells[0]):
            rows[cells[0]] = {
                "hooks": cells[1],
                "indicator": cells[3],
                "indicators": {i.strip() for i in cells[3].split("/")},
                "sources": [s.strip() for s in cells[-1].split(",")],
            }
    return rows
