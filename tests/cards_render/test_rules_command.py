"""``myocds rules`` prints the catalogue from the templates as an aligned table."""

from __future__ import annotations

import copy

import pytest

from cds_service.cli import main
from tests.cards_render.conftest import STAT_01, CardsDir


def test_prints_every_template_in_rules_md_order(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == [
        "RULE", "HOOKS", "INDICATOR", "SOURCES", "VERSION", "STATUS", "REVIEWED", "NAME"
    ]
    rules = [line.split()[0] for line in lines[1:] if line and line[0].isupper() and "-" in line]
    assert rules[:3] == ["STAT-01", "STAT-02", "STAT-03"]
    assert rules.index("HMG-01") < rules.index("IGA-01") < rules.index("DOSE-01")
    assert rules.index("DOSE-04") < rules.index("SAFE-01") < rules.index("CONT-01")
    assert rules[-1] == "ORDER-UNIDENTIFIED"
    assert len(rules) == 24
    stat01 = next(line for line in lines if line.startswith("STAT-01 "))
    assert "patient-view, order-select, order-sign" in stat01
    assert "critical" in stat01 and "ADV02, EAS15, ACC13" in stat01
    cont01 = next(line for line in lines if line.startswith("CONT-01 "))
    assert "warning / info" in cont01
    assert "24 rules" in out


def test_columns_are_aligned(capsys: pytest.CaptureFixture[str]) -> None:
    main(["rules"])
    lines = [line for line in capsys.readouterr().out.splitlines() if line][:-1]
    header = lines[0]
    for column in ("HOOKS", "INDICATOR", "SOURCES", "VERSION", "STATUS", "REVIEWED", "NAME"):
        start = header.index(column)
        for line in lines[1:]:
            # every cell starts exactly under its heading, after a two-space gap
            assert line[start - 2 : start] == "  " and line[start] != " ", (column, line)


def test_broken_template_exits_nonzero_with_the_message(
    cards_dir: CardsDir, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = copy.deepcopy(STAT_01)
    broken["sources"] = ["NOPE99"]
    assert main(["rules", "--cards-dir", str(cards_dir({"STAT-01": broken}))]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "cards/STAT-01.json: source 'NOPE99' is not declared" in captured.err
