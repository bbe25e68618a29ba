"""Fixtures for the card loader and renderer: a small, valid cards directory written to tmp_path
(tests break one thing in it at a time) and the repository's own templates."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cds_service.cards_render import Templates, load_templates

REPO = Path(__file__).resolve().parents[2]

SOURCES: dict[str, Any] = {
    "EAS15": {
        "title": "Stroes ES, et al. Statin-associated muscle symptoms. Eur Heart J. 2015",
        "url": "https://pmc.ncbi.nlm.nih.gov/articles/PMC4416140/",
        "kind": "guideline",
        "verified": "V",
    },
    "SEED1": {
        "title": "Dr.Oracle. Is continuation of IVIG medically necessary? 2025",
        "url": "https://www.droracle.ai/articles/520622/is-continuation",
        "kind": "seed",
        "verified": "S",
    },
    "OCTA": {
        "title": "Octagam 10% US prescribing information (dermatomyositis)",
        "url": "https://octagamusa.com/dermatomyositis/hcp/octagam-10-dosing/",
        "kind": "label",
        "verified": "V",
    },
}

STAT_01: dict[str, Any] = {
    "rule": "STAT-01",
    "display": "Statin: CK over 10×ULN",
    "hooks": ["patient-view", "order-select", "order-sign"],
    "indicator": "critical",
    "summary": "Stop the statin: CK {ck} U/L = {ck_x_uln}×ULN ({ck_date})",
    "reasoning": "CK {ck} U/L on {ck_date} is {ck_x_uln}× the upper limit of normal.\n"
    "Statin: {statin}.",
    "plan": "Repeat CK in {repeat_days} days.",
    "sources": ["EAS15", "SEED1"],
    "suggestions": {
        "delete-draft": "Cancel the order for {medication}",
        "stop-active": "Stop {medication}",
        "order-lab:2157-6": "Order a repeat CK",
        "order-lab:3016-3": "Order TSH",
        "update-draft": "Change to {dose_g} g daily for {days} days",
    },
    "overrideReasons": [
        {"code": "other-cause", "display": "CK rise explained by another cause"},
        {"code": "statin-already-stopped", "display": "Statin already stopped"},
    ],
}

CONT_01: dict[str, Any] = {
    "rule": "CONT-01",
    "display": "IVIG: CK in remission after 6+ months",
    "hooks": ["patient-view", "order-select", "order-sign"],
    "indicator": ["info", "warning"],
    "summary": "CK normal on IVIG: {ck} U/L",
    "reasoning": "CK {ck} U/L.",
    "sources": ["OCTA"],
    "overrideReasons": [{"code": "ongoing-weakness", "display": "Strength not recovered"}],
}


CardsDir = Callable[..., Path]


@pytest.fixture
def cards_dir(tmp_path: Path) -> CardsDir:
    """Write a cards directory: ``cards_dir(STAT_01=changed_dict, sources=...)``; a template
    given as ``str`` is written verbatim (for JSON syntax errors), ``None`` leaves it out."""

    def write(
        templates: dict[str, Any] | None = None, sources: dict[str, Any] | str | None = None
    ) -> Path:
        directory = tmp_path / "cards"
        directory.mkdir(exist_ok=True)
        contents: dict[str, Any] = {"STAT-01": STAT_01, "CONT-01": CONT_01}
        contents.update(templates or {})
        for name, content in contents.items():
            if content is None:
                continue
            text = content if isinstance(content, str) else json.dumps(content, indent=2)
            (directory / f"{name}.json").write_text(text, encoding="utf-8")
        source_data = SOURCES if sources is None else sources
        text = source_data if isinstance(source_data, str) else json.dumps(source_data)
        (directory / "sources.json").write_text(text, encoding="utf-8")
        return directory

    return write


@pytest.fixture
def small_templates(cards_dir: CardsDir) -> Templates:
    """The two test templates above, checked against the repository's CodeSystems."""
    return load_templates(cards_dir())


@pytest.fixture(scope="session")
def repo_templates() -> Templates:
    return load_templates()
