"""``myocds rules``: the rule catalogue (rule id, hooks, indicator, sources, short name), read
from the card templates, so what is printed is what the service will show; ``--markdown`` prints
the rules as documentation (``docs/rules.md``, see ``rules_doc``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from cds_service.cards_render import CARDS_DIR_ENV, Templates, load_templates
from cds_service.cli import command
from cds_service.errors import ConfigurationError

# rules.md order of the advisory areas; anything else (ORDER-UNIDENTIFIED) after them.
_AREA_ORDER = ("STAT", "HMG", "IGA", "DOSE", "SAFE", "CONT")
HEADER = ("RULE", "HOOKS", "INDICATOR", "SOURCES", "NAME")


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cards-dir",
        help=f"card templates directory (default {CARDS_DIR_ENV}, else the shipped cards/)",
    )
    parser.add_argument(
        "--markdown", action="store_true",
        help="print the rules as Markdown documentation (docs/rules.md is this output)",
    )


def _sort_key(rule: str) -> tuple[int, str, int, str]:
    area, _, number = rule.partition("-")
    rank = _AREA_ORDER.index(area) if area in _AREA_ORDER else len(_AREA_ORDER)
    return (rank, area, int(number) if number.isdigit() else 0, rule)


def catalogue(templates: Templates) -> list[tuple[str, ...]]:
    """One row per rule: id, hooks, indicator(s), sources, short name."""
    rows: list[tuple[str, ...]] = []
    for rule in sorted(templates, key=_sort_key):
        template = templates[rule]
        rows.append(
            (
                rule,
                ", ".join(template.hooks),
                template.indicator_text,
                ", ".join(template.sources),
                template.display,
            )
        )
    return rows


def format_table(rows: Sequence[Sequence[str]], header: Sequence[str] = HEADER) -> str:
    """Columns padded to their widest cell; the last column is not padded."""
    table = [tuple(header), *(tuple(row) for row in rows)]
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    lines = []
    for row in table:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines)


@command(
    "rules",
    "Print the rule catalogue (id, hooks, indicator, sources) from the card templates.",
    _arguments,
)
def rules(args: argparse.Namespace) -> int:
    try:
        templates = load_templates(args.cards_dir)
    except ConfigurationError as exc:
        print(f"myocds rules: {exc.message}", file=sys.stderr)
        return 1
    if args.markdown:
        from cds_service.commands.rules_doc import rules_markdown

        print(rules_markdown(templates), end="")
        return 0
    print(format_table(catalogue(templates)))
    print(f"\n{len(templates)} rules, {len(templates.sources)} sources ({templates.directory})")
    return 0
