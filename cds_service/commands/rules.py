"""``myocds rules``: the rule catalogue (rule id, hooks, indicator, sources, short name), read
from the card templates, so what is printed is what the service will show; ``--markdown`` prints
the rules as documentation (``docs/rules.md``, see ``rules_doc``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from cds_service.cards_render import CARDS_DIR_ENV, CardTemplate, Templates, load_templates
from cds_service.cards_render.templates import RULE_STATUSES
from cds_service.cli import command
from cds_service.errors import ConfigurationError

# rules.md order of the advisory areas; anything else (ORDER-UNIDENTIFIED) after them.
_AREA_ORDER = ("STAT", "HMG", "IGA", "DOSE", "SAFE", "CONT")
HEADER = ("RULE", "HOOKS", "INDICATOR", "SOURCES", "VERSION", "STATUS", "REVIEWED", "NAME")


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
    """One row per rule: id, hooks, indicator(s), sources, version, review status, who reviewed
    it and when, short name."""
    rows: list[tuple[str, ...]] = []
    for rule in sorted(templates, key=_sort_key):
        template = templates[rule]
        rows.append(
            (
                rule,
                ", ".join(template.hooks),
                template.indicator_text,
                ", ".join(template.sources),
                template.version or "-",
                template.status,
                review_text(template),
                template.display,
            )
        )
    return rows


def review_text(template: CardTemplate) -> str:
    """"2026-12-04 by …", or "not reviewed"."""
    if template.reviewed_on is None and template.reviewed_by is None:
        return "not reviewed"
    day = template.reviewed_on.isoformat() if template.reviewed_on else "(no date)"
    return f"{day} by {template.reviewed_by or '(nobody named)'}"


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
    "Print the rule catalogue (id, hooks, indicator, sources, version, review status) from the "
    "card templates.",
    _arguments,
)
def rules(args: argparse.Namespace) -> int:
    from cds_service.catalogue import Catalogue

    try:
        templates = load_templates(args.cards_dir)
        Catalogue.shipped().check(templates)  # the rules' own declarations, as at start-up
    except ConfigurationError as exc:
        print(f"myocds rules: {exc.message}", file=sys.stderr)
        return 1
    if args.markdown:
        from cds_service.commands.rules_doc import rules_markdown

        print(rules_markdown(templates), end="")
        return 0
    print(format_table(catalogue(templates)))
    statuses = [templates[rule].status for rule in templates]
    counts = ", ".join(f"{statuses.count(s)} {s}" for s in RULE_STATUSES if s in statuses)
    print(
        f"\n{len(templates)} rules ({counts}), {len(templates.sources)} sources, rule catalogue "
        f"version {templates.catalogue_version or '(none)'} ({templates.directory})"
    )
    return 0
