"""``myocds rules --markdown`` and ``docs/rules.md``: the rules documented from what the service
runs on, and a file that cannot go stale unnoticed."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path

import pytest

from cds_service.advice import RULES
from cds_service.cards_render import load_templates
from cds_service.cards_render.templates import DEFAULT_CARDS_DIR
from cds_service.cli import main
from cds_service.commands.rules import catalogue
from cds_service.commands.rules_doc import COMMAND
from cds_service.services import SERVICES
from cds_service.settings import ClinicalSettings

RULES_DOC = Path(__file__).resolve().parents[2] / "docs" / "rules.md"


def generated(capsys: pytest.CaptureFixture[str], cards_dir: Path = DEFAULT_CARDS_DIR) -> str:
    assert main(["rules", "--markdown", "--cards-dir", str(cards_dir)]) == 0
    return capsys.readouterr().out


def test_docs_rules_md_is_the_commands_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert RULES_DOC.is_file(), f"docs/rules.md is missing: generate it with `{COMMAND}`"
    assert RULES_DOC.read_text(encoding="utf-8") == generated(capsys), (
        f"docs/rules.md is stale: regenerate it with `{COMMAND}`"
    )


def test_every_rule_setting_service_and_source_is_documented(
    capsys: pytest.CaptureFixture[str],
) -> None:
    text = generated(capsys)
    templates = load_templates(DEFAULT_CARDS_DIR)
    headings = re.findall(r"^### ([A-Z]+-[A-Z0-9]+): (.+)$", text, re.M)
    # In the order of the `myocds rules` table (pinned in tests/cards_render/test_rules_command.py).
    table_order = [row[0] for row in catalogue(templates)]
    assert headings == [(r, templates[r].display) for r in table_order]
    for rule in templates:
        section = text.split(f"### {rule}: ", 1)[1].split("\n### ", 1)[0]
        assert f"- Indicator: {templates[rule].indicator_text}" in section
        declared = RULES.get(rule)
        assert declared is not None, rule
        module = f"cds_service/advice/{declared.area}.py"
        assert f"- Declared: `@rule` in `{module}`" in section
        assert (RULES_DOC.parents[1] / module).is_file()
        for key in templates[rule].sources:
            assert f"[{key}](#source-{key.lower()})" in section
            assert f'<a id="source-{key.lower()}"></a>**{key}**' in text
    for setting in dataclasses.fields(ClinicalSettings):
        assert re.search(rf"^\| `MYOCDS_{setting.name.upper()}` \| `{setting.default}` \|",
                         text, re.M), setting.name
    for service in SERVICES:
        assert f"| `{service.id}` | `{service.hook}` |" in text


def test_a_template_change_shows_in_the_generated_doc(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cards = tmp_path / "cards"
    shutil.copytree(DEFAULT_CARDS_DIR, cards)
    stat01 = json.loads((cards / "STAT-01.json").read_text(encoding="utf-8"))
    stat01["summary"] = "Reworded by the committee: CK {ck} U/L"
    stat01["overrideReasons"] = stat01["overrideReasons"][:1]
    (cards / "STAT-01.json").write_text(json.dumps(stat01), encoding="utf-8")
    text = generated(capsys, cards)
    assert "> Reworded by the committee: CK {ck} U/L" in text
    assert text != RULES_DOC.read_text(encoding="utf-8")
    section = text.split("### STAT-01: ", 1)[1].split("\n### ", 1)[0]
    assert section.count("(`") == 1  # one override reason left


def test_the_output_does_not_depend_on_the_environment(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    before = generated(capsys)
    monkeypatch.setenv("MYOCDS_RECENT_DAYS", "7")
    monkeypatch.setenv("MYOCDS_TODAY", "2030-01-01")
    assert generated(capsys) == before
