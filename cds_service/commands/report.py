"""``myocds feedback-report``: how clinicians answered each rule's cards, from the store.

Issued cards are joined to the feedback on them by card uuid. Per rule topic: cards issued,
cards with feedback, and of those how many were accepted and how many overridden, as counts and
as rates (over the cards with feedback), with the override reasons given. A card counts once per
outcome however often its feedback was sent. Feedback on a card uuid this store never issued
(another deployment, or a store reset) is reported on its own line rather than dropped.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field
from typing import Any, TextIO

from sqlalchemy import func, select

from cds_service.cli import command

NO_TOPIC = "(no topic)"
NOT_ISSUED = "(card not issued by this store)"


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database-url", help="the store (default MYOCDS_DATABASE_URL, else ./var/ SQLite)"
    )
    parser.add_argument("--format", choices=("table", "json"), default="table")


@dataclass
class TopicReport:
    topic: str
    issued: int = 0
    with_feedback: int = 0
    accepted: int = 0
    overridden: int = 0
    override_reasons: dict[str, int] = field(default_factory=dict)

    @property
    def acceptance_rate(self) -> float | None:
        return self.accepted / self.with_feedback if self.with_feedback else None

    @property
    def override_rate(self) -> float | None:
        return self.overridden / self.with_feedback if self.with_feedback else None


def feedback_report(database_url: str) -> list[TopicReport]:
    from cds_service.protocol.store import Store, feedback, issued_cards

    store = Store(database_url)
    try:
        store.ensure_schema()
        reports: dict[str, TopicReport] = {}

        def report(topic: str | None, issued: bool) -> TopicReport:
            name = topic if topic is not None else (NO_TOPIC if issued else NOT_ISSUED)
            return reports.setdefault(name, TopicReport(name))

        joined = feedback.outerjoin(issued_cards, feedback.c.card_uuid == issued_cards.c.card_uuid)
        is_issued = issued_cards.c.card_uuid.is_not(None)
        with store.engine.connect() as connection:
            for topic, count in connection.execute(
                select(issued_cards.c.topic, func.count()).group_by(issued_cards.c.topic)
            ):
                report(topic, True).issued = int(count)
            for topic, issued, count in connection.execute(
                select(issued_cards.c.topic, is_issued, func.count(feedback.c.card_uuid.distinct()))
                .select_from(joined)
                .group_by(issued_cards.c.topic, is_issued)
            ):
                report(topic, bool(issued)).with_feedback = int(count)
            for topic, issued, outcome, count in connection.execute(
                select(issued_cards.c.topic, is_issued, feedback.c.outcome,
                       func.count(feedback.c.card_uuid.distinct()))
                .select_from(joined)
                .group_by(issued_cards.c.topic, is_issued, feedback.c.outcome)
            ):
                entry = report(topic, bool(issued))
                if outcome == "accepted":
                    entry.accepted = int(count)
                elif outcome == "overridden":
                    entry.overridden = int(count)
            for topic, issued, code, count in connection.execute(
                select(issued_cards.c.topic, is_issued, feedback.c.override_code,
                       func.count(feedback.c.card_uuid.distinct()))
                .select_from(joined)
                .where(feedback.c.outcome == "overridden")
                .group_by(issued_cards.c.topic, is_issued, feedback.c.override_code)
            ):
                reasons = report(topic, bool(issued)).override_reasons
                reasons[code or "(no reason given)"] = int(count)
    finally:
        store.dispose()
    special = (NO_TOPIC, NOT_ISSUED)
    ordered = sorted((r for r in reports.values() if r.topic not in special), key=_rule_order)
    return ordered + [reports[name] for name in special if name in reports]


def _rule_order(report: TopicReport) -> tuple[str, int, str]:
    # STAT-02 before STAT-10: the prefix, then the number.
    prefix, _, number = report.topic.rpartition("-")
    return (prefix, int(number), "") if number.isdigit() else (report.topic, 0, "")


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.0f} %"


def print_table(reports: list[TopicReport], out: TextIO) -> None:
    if not reports:
        print("No cards issued and no feedback stored yet.", file=out)
        return
    headers = ("topic", "issued", "feedback", "accepted", "overridden", "acceptance", "override")
    rows = [
        (r.topic, str(r.issued), str(r.with_feedback), str(r.accepted), str(r.overridden),
         _rate(r.acceptance_rate), _rate(r.override_rate))
        for r in reports
    ]
    totals = TopicReport("total", *(
        sum(getattr(r, name) for r in reports)
        for name in ("issued", "with_feedback", "accepted", "overridden")
    ))
    rows.append(("total", str(totals.issued), str(totals.with_feedback), str(totals.accepted),
                 str(totals.overridden), _rate(totals.acceptance_rate),
                 _rate(totals.override_rate)))
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers)]

    def show(cells: tuple[str, ...]) -> str:
        first = cells[0].ljust(widths[0])
        rest = (cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True))
        return "  ".join((first, *rest))

    print(show(headers), file=out)
    print("  ".join("-" * w for w in widths), file=out)
    for row in rows:
        print(show(row), file=out)
    print("\nRates are over the cards with feedback. Override reasons:", file=out)
    for r in reports:
        if r.override_reasons:
            reasons = ", ".join(f"{code} {n}" for code, n in sorted(
                r.override_reasons.items(), key=lambda item: (-item[1], item[0])))
            print(f"  {r.topic}: {reasons}", file=out)


def _as_json(reports: list[TopicReport]) -> list[dict[str, Any]]:
    return [
        {**asdict(r), "acceptance_rate": r.acceptance_rate, "override_rate": r.override_rate}
        for r in reports
    ]


@command("feedback-report", "Acceptance and override rates per rule topic, from the store.",
         _arguments)
def feedback_report_command(args: argparse.Namespace) -> int:
    from cds_service.errors import ConfigurationError, ServiceUnavailable
    from cds_service.settings import Settings

    try:
        url = args.database_url or Settings.from_env().database_url
        reports = feedback_report(url)
    except ConfigurationError as exc:
        print(f"myocds feedback-report: {exc}", file=sys.stderr)
        return 2
    except ServiceUnavailable as exc:
        print(f"myocds feedback-report: {exc}", file=sys.stderr)
        return 1
    if args.format == "json":
        json.dump(_as_json(reports), sys.stdout, indent=2)
        print()
    else:
        print_table(reports, sys.stdout)
    return 0
