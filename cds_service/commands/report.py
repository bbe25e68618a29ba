"""``myocds feedback-report``: how clinicians answered each rule's cards, per site, rule and rule
version, from the store: what a CDS committee reviews (issue 15).

A site is the caller an issued card or a feedback came from: its JWT issuer and tenant (none when
authentication is off). Each issued card row carries its site and rule version; each feedback row
carries the rule and version of the card it answers (looked up from the issued cards when it was
stored) and the site that sent it. Per site × rule × version: cards shown, cards answered, of
those accepted and overridden (the override reasons with their counts), cards with no answer, and
the acceptance rate (accepted over answered). A card counts once per outcome however often its
feedback was sent. Feedback on a card uuid this store never issued (another deployment, or a store
reset) is reported on its own line rather than dropped.

The same report is the try-it report page (``cds_service.tryit.report``) and, as counters per rule
and outcome, ``myocds_feedback_total`` on ``/metrics``.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

from sqlalchemy import and_, func, select, true

from cds_service.cli import command

if TYPE_CHECKING:
    from cds_service.protocol.store import Store

NO_TOPIC = "(no topic)"
NOT_ISSUED = "(card not issued by this store)"
NO_SITE = "(no site: authentication off)"
NO_VERSION = "-"
FORMATS = ("table", "csv", "json")
CSV_COLUMNS = (
    "site", "issuer", "tenant", "topic", "version", "shown", "answered", "accepted",
    "overridden", "no_answer", "acceptance_rate", "override_reasons",
)


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database-url", help="the store (default MYOCDS_DATABASE_URL, else ./var/ SQLite)"
    )
    parser.add_argument("--format", choices=FORMATS, default="table")


def site_label(issuer: str | None, tenant: str | None) -> str:
    """How a site is named in the report: its issuer, and tenant when it has one."""
    if issuer is None:
        return NO_SITE
    return f"{issuer} tenant {tenant}" if tenant else issuer


@dataclass
class TopicReport:
    """One site × rule × version line."""

    topic: str
    issuer: str | None = None
    tenant: str | None = None
    version: str = NO_VERSION
    issued: int = 0  # cards shown
    with_feedback: int = 0  # cards answered
    accepted: int = 0
    overridden: int = 0
    no_answer: int = 0
    override_reasons: dict[str, int] = field(default_factory=dict)

    @property
    def site(self) -> str:
        return site_label(self.issuer, self.tenant)

    @property
    def acceptance_rate(self) -> float | None:
        return self.accepted / self.with_feedback if self.with_feedback else None

    @property
    def override_rate(self) -> float | None:
        return self.overridden / self.with_feedback if self.with_feedback else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "site": self.site,
            "issuer": self.issuer,
            "tenant": self.tenant,
            "topic": self.topic,
            "version": self.version,
            "issued": self.issued,
            "with_feedback": self.with_feedback,
            "accepted": self.accepted,
            "overridden": self.overridden,
            "no_answer": self.no_answer,
            "override_reasons": dict(self.override_reasons),
            "acceptance_rate": self.acceptance_rate,
            "override_rate": self.override_rate,
        }


Site = tuple[str | None, str | None]


def collect(store: Store, site: Site | None = None) -> list[TopicReport]:
    """The report from an open store; ``site`` = (issuer, tenant) keeps that site's lines only
    (tenant None: every tenant of the issuer)."""
    from cds_service.protocol.store import feedback, issued_cards

    store.ensure_schema()
    reports: dict[tuple[str | None, str | None, str, str], TopicReport] = {}

    def line(issuer: str | None, tenant: str | None, topic: str | None, version: str | None,
             issued: bool) -> TopicReport:
        name = topic if topic is not None else (NO_TOPIC if issued else NOT_ISSUED)
        key = (issuer, tenant, name, version or NO_VERSION)
        if key not in reports:
            reports[key] = TopicReport(name, issuer, tenant, version or NO_VERSION)
        return reports[key]

    def only_site(table: Any) -> Any:
        if site is None:
            return true()
        issuer, tenant = site
        condition = table.c.site_issuer == issuer if issuer is not None else (
            table.c.site_issuer.is_(None))
        return and_(condition, table.c.site_tenant == tenant) if tenant else condition

    card = (issued_cards.c.site_issuer, issued_cards.c.site_tenant, issued_cards.c.topic,
            issued_cards.c.rule_version)
    answer = (feedback.c.site_issuer, feedback.c.site_tenant, feedback.c.topic,
              feedback.c.rule_version)
    is_issued = issued_cards.c.card_uuid.is_not(None)
    cards = func.count(feedback.c.card_uuid.distinct())
    joined = feedback.outerjoin(issued_cards, feedback.c.card_uuid == issued_cards.c.card_uuid)
    unanswered = issued_cards.outerjoin(feedback, feedback.c.card_uuid == issued_cards.c.card_uuid)
    with store.engine.connect() as connection:
        for issuer, tenant, topic, version, count in connection.execute(
            select(*card, func.count()).where(only_site(issued_cards)).group_by(*card)
        ):
            line(issuer, tenant, topic, version, True).issued = int(count)
        for issuer, tenant, topic, version, count in connection.execute(
            select(*card, func.count()).select_from(unanswered)
            .where(feedback.c.id.is_(None), only_site(issued_cards)).group_by(*card)
        ):
            line(issuer, tenant, topic, version, True).no_answer = int(count)
        for issuer, tenant, topic, version, issued, count in connection.execute(
            select(*answer, is_issued, cards).select_from(joined)
            .where(only_site(feedback)).group_by(*answer, is_issued)
        ):
            line(issuer, tenant, topic, version, bool(issued)).with_feedback = int(count)
        for issuer, tenant, topic, version, issued, outcome, code, count in connection.execute(
            select(*answer, is_issued, feedback.c.outcome, feedback.c.override_code, cards)
            .select_from(joined).where(only_site(feedback))
            .group_by(*answer, is_issued, feedback.c.outcome, feedback.c.override_code)
        ):
            entry = line(issuer, tenant, topic, version, bool(issued))
            if outcome == "accepted":
                entry.accepted += int(count)
            elif outcome == "overridden":
                entry.overridden += int(count)
                reason = code or "(no reason given)"
                entry.override_reasons[reason] = entry.override_reasons.get(reason, 0) + int(count)
    return sorted(reports.values(), key=_order)


def feedback_report(database_url: str, site: Site | None = None) -> list[TopicReport]:
    from cds_service.protocol.store import Store

    store = Store(database_url)
    try:
        return collect(store, site)
    finally:
        store.dispose()


def _order(report: TopicReport) -> tuple[Any, ...]:
    # Sites in name order (no site first); in each, STAT-02 before STAT-10 (prefix, then number),
    # the lines without a rule last; versions in order.
    special = report.topic in (NO_TOPIC, NOT_ISSUED)
    prefix, _, number = report.topic.rpartition("-")
    rule = (prefix, int(number), "") if number.isdigit() else (report.topic, 0, "")
    return (report.issuer or "", report.tenant or "", special, rule, report.version)


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.0f} %"


def _reasons(report: TopicReport) -> str:
    ordered = sorted(report.override_reasons.items(), key=lambda item: (-item[1], item[0]))
    return ", ".join(f"{code} {n}" for code, n in ordered)


TABLE_HEADERS = ("rule", "version", "shown", "answered", "accepted", "overridden", "no answer",
                 "acceptance")


def table_rows(reports: list[TopicReport]) -> list[tuple[str, ...]]:
    return [
        (r.topic, r.version, str(r.issued), str(r.with_feedback), str(r.accepted),
         str(r.overridden), str(r.no_answer), _rate(r.acceptance_rate))
        for r in reports
    ]


def by_site(reports: list[TopicReport]) -> dict[str, list[TopicReport]]:
    sites: dict[str, list[TopicReport]] = {}
    for report in reports:
        sites.setdefault(report.site, []).append(report)
    return sites


def print_table(reports: list[TopicReport], out: TextIO) -> None:
    if not reports:
        print("No cards issued and no feedback stored yet.", file=out)
        return
    rows = table_rows(reports)
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(TABLE_HEADERS)]

    def show(cells: tuple[str, ...]) -> str:
        first = [cells[0].ljust(widths[0]), cells[1].ljust(widths[1])]
        rest = (cell.rjust(width) for cell, width in zip(cells[2:], widths[2:], strict=True))
        return "  ".join((*first, *rest))

    for number, (site, lines) in enumerate(by_site(reports).items()):
        print(("\n" if number else "") + f"site: {site}", file=out)
        print(show(TABLE_HEADERS), file=out)
        print("  ".join("-" * w for w in widths), file=out)
        for row in table_rows(lines):
            print(show(row), file=out)
        overridden = [r for r in lines if r.override_reasons]
        if overridden:
            print("override reasons:", file=out)
        for r in overridden:
            print(f"  {r.topic}: {_reasons(r)} (version {r.version})", file=out)
    print("\nAcceptance is over the cards answered (accepted or overridden).", file=out)


def print_csv(reports: list[TopicReport], out: TextIO) -> None:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in reports:
        rate = "" if r.acceptance_rate is None else f"{r.acceptance_rate:.4f}"
        reasons = ";".join(f"{code}={n}" for code, n in sorted(r.override_reasons.items()))
        writer.writerow((r.site, r.issuer or "", r.tenant or "", r.topic, r.version, r.issued,
                         r.with_feedback, r.accepted, r.overridden, r.no_answer, rate, reasons))


def as_json(reports: list[TopicReport]) -> list[dict[str, Any]]:
    return [r.as_dict() for r in reports]


@command("feedback-report",
         "Cards shown, accepted, overridden (by reason) and unanswered per site, rule and rule "
         "version, from the store.", _arguments)
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
        json.dump(as_json(reports), sys.stdout, indent=2)
        print()
    elif args.format == "csv":
        print_csv(reports, sys.stdout)
    else:
        print_table(reports, sys.stdout)
    return 0
