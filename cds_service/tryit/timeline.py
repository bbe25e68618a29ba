"""The CK timeline: CK ÷ ULN over time on a log axis, drawn on the server as plain SVG.

What is drawn comes from the normalized record (``record.build.build_record``), so "usable" means
exactly what the rules mean: one point per usable CK (rules.md "Usable observation", converted to
U/L, judged against its own ULN: the lab's ``referenceRange.high`` or the assumed sex default).
Horizontal lines mark 1×, 4×, 10× and 40× ULN, the thresholds of STAT-01…04 and CONT-03 (rules.md
Rules table). Statin orders are bands along the top, IVIG doses given are marks along the bottom,
a drafted order is a mark at today, and the CK values the cards used (their "Values used" facts)
are highlighted.

Every point carries ``data-`` attributes (value, ULN, ×ULN, date, status, whether a card used it)
so tests and scripts can read the chart. All text is XML-escaped; the SVG uses presentation
attributes only (no ``style``), so it renders under a strict Content-Security-Policy.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from html import escape

from cds_service.advice.model import Advice
from cds_service.record.model import CkValue, MedicationUse, PatientRecord, format_number
from cds_service.record.statin import usable
from cds_service.record.values import parse_date

# rules.md Rules: STAT-04 (ULN < CK ≤ 4×), STAT-03 (4× < CK ≤ 10×), STAT-01 (> 10×),
# STAT-02 (> 40×).
THRESHOLDS: tuple[tuple[int, str], ...] = (
    (1, "#5b6b7b"),
    (4, "#b7791f"),
    (10, "#c2410c"),
    (40, "#9b1c1c"),
)
# Statuses of an order that is running today (rules.md "Active statin").
_RUNNING = frozenset({"active", "on-hold"})

WIDTH = 760
HEIGHT = 340
_LEFT, _RIGHT, _TOP, _BOTTOM = 58, 64, 58, 64
_MIN_SPAN_DAYS = 60


@dataclass(frozen=True)
class CkPoint:
    ck: CkValue
    used: bool

    @property
    def ratio(self) -> float:
        return float(self.ck.times_uln)


@dataclass(frozen=True)
class Band:
    label: str
    start: date
    end: date
    running: bool  # still running today (drawn to today, open-ended)
    kind: str  # "statin" | "ivig-order"


@dataclass(frozen=True)
class Mark:
    label: str
    day: date
    grams: Decimal | None
    drafted: bool = False


@dataclass(frozen=True)
class Timeline:
    today: date
    points: tuple[CkPoint, ...]
    bands: tuple[Band, ...]
    ivig: tuple[Mark, ...]
    drafts: tuple[Mark, ...]


def ck_number(ck: CkValue) -> str:
    return f"{ck.comparator or ''}{format_number(ck.value)}"


def used_ck_values(record: PatientRecord, advices: Iterable[Advice]) -> frozenset[int]:
    """Indexes (in ``usable(record.ck)``) of the CK values the advices show as used: a fact whose
    label names CK, dated on the value's day, whose text starts with the value as the cards write
    it ("4,800 U/L (25×ULN)")."""
    facts = [
        f for a in advices for f in a.facts if "CK" in f.label and f.day is not None
    ]
    used = set()
    for index, ck in enumerate(usable(record.ck)):
        number = ck_number(ck)
        if any(f.day == ck.day and f.value.startswith(number + " ") for f in facts):
            used.add(index)
    return frozenset(used)


def build_timeline(
    record: PatientRecord, today: date, advices: Iterable[Advice] = ()
) -> Timeline:
    advices = tuple(advices)
    used = used_ck_values(record, advices)
    points = tuple(CkPoint(ck, i in used) for i, ck in enumerate(usable(record.ck)))
    bands: list[Band] = []
    drafts: list[Mark] = []
    for use in record.statin_uses + record.ivig_uses:
        kind = "statin" if use in record.statin_uses else "ivig-order"
        if use.drafted:
            drafts.append(Mark(f"drafted: {use.medication.display}", today, None, drafted=True))
            continue
        if kind == "ivig-order":
            continue  # IVIG is drawn as the doses given, below
        start = _course_start(use)
        if start is None:
            continue
        running = use.status in _RUNNING
        end = today if running else use.end_date
        if end is None or end < start:
            continue
        bands.append(Band(use.medication.display, start, end, running, kind))
    marks = tuple(
        Mark(f"IVIG {format_number(g.grams)} g" if g.grams is not None else "IVIG", g.day, g.grams)
        for g in record.ivig_given
    )
    return Timeline(today, points, tuple(bands), marks, tuple(drafts))


def _course_start(use: MedicationUse) -> date | None:
    """When this order's current course began: the validity period's start when the order gives
    one (a renewal of an order first written years ago), else ``authoredOn``."""
    validity = use.raw.get("dispenseRequest", {}).get("validityPeriod", {})
    start = parse_date(validity.get("start")) if isinstance(validity, dict) else None
    if start is not None and (use.authored_on is None or start >= use.authored_on):
        return start
    return use.authored_on


# --- drawing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Scale:
    start: date
    end: date
    low: float  # log10 of the lowest ×ULN shown
    high: float

    def x(self, day: date) -> float:
        span = (self.end - self.start).days or 1
        inner = WIDTH - _LEFT - _RIGHT
        return _LEFT + inner * (day - self.start).days / span

    def y(self, ratio: float) -> float:
        inner = HEIGHT - _TOP - _BOTTOM
        value = math.log10(max(ratio, 10**self.low))
        return _TOP + inner * (self.high - value) / (self.high - self.low)


def _scale(timeline: Timeline) -> _Scale:
    days = [p.ck.day for p in timeline.points] + [m.day for m in timeline.ivig]
    days += [b.end for b in timeline.bands if not b.running]
    days.append(timeline.today)
    start = min(days)
    if (timeline.today - start).days < _MIN_SPAN_DAYS:
        start = timeline.today - timedelta(days=_MIN_SPAN_DAYS)
    span = (timeline.today - start).days
    pad = max(7, span // 20)
    ratios = [p.ratio for p in timeline.points if p.ratio > 0]
    # Always show the 1×…40× lines; widen the axis when a value lies outside them.
    low = math.floor(math.log10(min([0.3, *[r / 1.5 for r in ratios]])) * 2) / 2
    high = math.ceil(math.log10(max([80.0, *[r * 1.5 for r in ratios]])) * 2) / 2
    return _Scale(start - timedelta(days=pad), timeline.today + timedelta(days=pad), low, high)


def _month_ticks(scale: _Scale) -> list[date]:
    months = (scale.end.year - scale.start.year) * 12 + scale.end.month - scale.start.month
    step = max(1, math.ceil(months / 7))
    ticks: list[date] = []
    year, month = scale.start.year, scale.start.month
    while True:
        month += 1
        if month > 12:
            year, month = year + 1, 1
        tick = date(year, month, 1)
        if tick > scale.end:
            return ticks
        if (tick.month - 1) % step == 0:
            ticks.append(tick)


def _attrs(**values: object) -> str:
    return " ".join(
        f'{name.rstrip("_").replace("_", "-")}="{escape(str(value), quote=True)}"'
        for name, value in values.items()
        if value is not None
    )


def render_svg(timeline: Timeline, *, title: str = "CK ÷ ULN over time") -> str:
    """The timeline as a standalone SVG document (also valid inline in HTML)."""
    scale = _scale(timeline)
    out: list[str] = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="ck-timeline" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" '
        f'aria-labelledby="tl-title tl-desc" '
        f'font-family="system-ui, -apple-system, Segoe UI, Roboto, sans-serif" font-size="11" '
        f'{_attrs(data_points=len(timeline.points), data_today=timeline.today.isoformat())}>',
        f'<title id="tl-title">{escape(title)}</title>',
        f'<desc id="tl-desc">{escape(_description(timeline))}</desc>',
        f'<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>',
    ]
    top, bottom = _TOP, HEIGHT - _BOTTOM
    left, right = _LEFT, WIDTH - _RIGHT
    out.append(
        f'<rect x="{left}" y="{top}" width="{right - left}" height="{bottom - top}" '
        f'fill="#fbfcfd" stroke="#d5dbe1"/>'
    )
    out.extend(_statin_bands(timeline, scale, top, bottom))
    out.extend(_grid(scale, top, bottom, left, right))
    out.extend(_today(timeline, scale, top, bottom))
    out.extend(_series(timeline, scale))
    out.extend(_ivig_marks(timeline, scale, bottom))
    out.extend(_legend(bottom))
    if not timeline.points:
        out.append(
            f'<text x="{(left + right) / 2:.1f}" y="{(top + bottom) / 2:.1f}" text-anchor="middle" '
            f'fill="#5b6b7b" font-size="13">No usable CK on file</text>'
        )
    out.append("</svg>")
    return "\n".join(out)


def _description(timeline: Timeline) -> str:
    if not timeline.points:
        return "No usable CK on file."
    parts = [
        f"{p.ck.day.isoformat()}: {ck_number(p.ck)} U/L = {p.ratio:.1f}×ULN"
        + (" (used by a card)" if p.used else "")
        for p in timeline.points
    ]
    return "CK values: " + "; ".join(parts) + "."


def _grid(scale: _Scale, top: float, bottom: float, left: float, right: float) -> list[str]:
    out = []
    decade = math.floor(scale.low)
    while decade <= scale.high:
        ratio = 10.0**decade
        if scale.low <= decade <= scale.high:
            y = scale.y(ratio)
            label = format_number(Decimal(str(ratio)).normalize())
            out.append(
                f'<line x1="{left}" x2="{right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eef1f4"/>'
                f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#5b6b7b">'
                f"{label}×</text>"
            )
        decade += 1
    for multiple, colour in THRESHOLDS:
        y = scale.y(float(multiple))
        out.append(
            f'<line class="uln-line" {_attrs(data_multiple=multiple)} x1="{left}" x2="{right}" '
            f'y1="{y:.1f}" y2="{y:.1f}" stroke="{colour}" stroke-width="1.2" '
            f'stroke-dasharray="{"none" if multiple == 1 else "5 4"}"/>'
            f'<text x="{right + 6}" y="{y + 4:.1f}" fill="{colour}" font-weight="600">'
            f"{multiple}× ULN</text>"
        )
    for tick in _month_ticks(scale):
        x = scale.x(tick)
        label = tick.strftime("%b %Y") if tick.month == 1 or tick == _month_ticks(scale)[0] else (
            tick.strftime("%b")
        )
        out.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{bottom}" y2="{bottom + 4}" stroke="#8795a1"/>'
            f'<text x="{x:.1f}" y="{bottom + 15}" text-anchor="middle" fill="#5b6b7b">'
            f"{escape(label)}</text>"
        )
    out.append(
        f'<text x="14" y="{(top + bottom) / 2:.1f}" fill="#334155" text-anchor="middle" '
        f'transform="rotate(-90 14 {(top + bottom) / 2:.1f})">CK ÷ ULN (log scale)</text>'
    )
    return out


def _today(timeline: Timeline, scale: _Scale, top: float, bottom: float) -> list[str]:
    x = scale.x(timeline.today)
    out: list[str] = [
        f'<line class="today" x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{bottom + 4}" '
        f'stroke="#1e3a5f" stroke-width="1" stroke-dasharray="2 3"/>',
        # At the foot of the line (below 0.3×ULN, where hardly any CK falls), clear of the labels.
        f'<text x="{x - 4:.1f}" y="{bottom - 6}" text-anchor="end" fill="#1e3a5f" '
        f'font-weight="600">today {timeline.today.isoformat()}</text>',
    ]
    for index, draft in enumerate(timeline.drafts):
        y = top - 10 - index * 14
        out.append(
            f'<g {_attrs(class_="draft-mark", data_label=draft.label)}>'
            f'<rect x="{x - 5:.1f}" y="{y - 5}" width="10" height="10" fill="#ffffff" '
            f'stroke="#6d28d9" stroke-width="1.6" stroke-dasharray="2 1.5"/>'
            f'<text x="{x - 9:.1f}" y="{y + 4}" text-anchor="end" fill="#6d28d9">'
            f"{escape(_short(draft.label, 42))}</text></g>"
        )
    return out


def _statin_bands(timeline: Timeline, scale: _Scale, top: float, bottom: float) -> list[str]:
    out = []
    for index, band in enumerate(timeline.bands):
        start = max(band.start, scale.start)
        x1, x2 = scale.x(start), scale.x(band.end)
        if x2 <= x1:
            continue
        lane = top - 22 - (index % 2) * 16
        clipped = band.start < scale.start
        label = ("◂ " if clipped else "") + _short(band.label, 48) + (
            f" (since {band.start.isoformat()})" if clipped else ""
        )
        attrs = _attrs(
            class_="statin-band",
            data_start=band.start.isoformat(),
            data_end=band.end.isoformat(),
            data_running=str(band.running).lower(),
            data_label=band.label,
        )
        until = "today (active)" if band.running else band.end.isoformat()
        out.append(
            f"<g {attrs}>"
            f"<title>{escape(band.label)}: {band.start.isoformat()} → {until}</title>"
            f'<rect x="{x1:.1f}" y="{top}" width="{x2 - x1:.1f}" height="{bottom - top}" '
            f'fill="#2563eb" fill-opacity="0.07"/>'
            f'<rect x="{x1:.1f}" y="{lane}" width="{x2 - x1:.1f}" height="6" rx="2" '
            f'fill="#2563eb" fill-opacity="0.75"/>'
            f'<text x="{x1 + 2:.1f}" y="{lane - 2}" fill="#1d4ed8">{escape(label)}</text></g>'
        )
    return out


def _series(timeline: Timeline, scale: _Scale) -> list[str]:
    out = []
    if len(timeline.points) > 1:
        path = " ".join(
            f"{'M' if i == 0 else 'L'}{scale.x(p.ck.day):.1f},{scale.y(p.ratio):.1f}"
            for i, p in enumerate(timeline.points)
        )
        out.append(f'<path class="ck-line" d="{path}" fill="none" stroke="#334155" '
                   f'stroke-width="1.4" stroke-opacity="0.7"/>')
    last_label_x: float | None = None
    below = False
    for point in timeline.points:
        ck = point.ck
        x, y = scale.x(ck.day), scale.y(point.ratio)
        colour = _zone_colour(point.ratio)
        ratio_text = f"{point.ratio:.1f}"
        tooltip = (
            f"{ck.day.isoformat()}: CK {ck_number(ck)} U/L = {ratio_text}×ULN "
            f"(ULN {format_number(ck.uln)} U/L{', assumed' if ck.uln_assumed else ', lab'})"
            + (" — preliminary" if ck.preliminary else "")
            + (" — used by a card" if point.used else "")
        )
        attrs = _attrs(
            class_="ck-point used" if point.used else "ck-point",
            data_ck=format_number(ck.value),
            data_comparator=ck.comparator,
            data_uln=format_number(ck.uln),
            data_x_uln=ratio_text,
            data_date=ck.day.isoformat(),
            data_status=ck.status,
            data_used=str(point.used).lower(),
            data_resource=ck.resource_id,
        )
        out.append(f"<g {attrs}><title>{escape(tooltip)}</title>")
        if point.used:
            out.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="9" fill="none" stroke="{colour}" '
                f'stroke-width="2"/>'
            )
        fill = "#ffffff" if ck.preliminary else colour
        out.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{5 if point.used else 4}" fill="{fill}" '
            f'stroke="{colour}" stroke-width="1.5"/>'
        )
        if point.used:
            # Two labels closer than a label's width alternate above and below their points.
            below = last_label_x is not None and x - last_label_x < 80 and not below
            last_label_x = x
            label_y = y + 22 if below else y - 13
            # Near the right edge the label sits left of its point, clear of the ULN labels.
            near_edge = x > WIDTH - _RIGHT - 45
            label_x, anchor = (x - 10, "end") if near_edge else (x, "middle")
            out.append(
                f'<text x="{label_x:.1f}" y="{label_y:.1f}" text-anchor="{anchor}" fill="#0f172a" '
                f'font-weight="600" paint-order="stroke" stroke="#ffffff" stroke-width="3">'
                f"{escape(ck_number(ck))} · {ratio_text}×</text>"
            )
        out.append("</g>")
    return out


def _zone_colour(ratio: float) -> str:
    if ratio > 10:
        return "#b91c1c"
    if ratio > 4:
        return "#c2410c"
    if ratio > 1:
        return "#b7791f"
    return "#15803d"


def _ivig_marks(timeline: Timeline, scale: _Scale, bottom: float) -> list[str]:
    out = []
    y = bottom + 32
    if timeline.ivig:
        out.append(
            f'<text x="{_LEFT - 6}" y="{y + 4}" text-anchor="end" fill="#0f766e">IVIG</text>'
        )
    for mark in timeline.ivig:
        x = scale.x(mark.day)
        grams = format_number(mark.grams) if mark.grams is not None else None
        attrs = _attrs(class_="ivig-mark", data_date=mark.day.isoformat(), data_grams=grams)
        out.append(
            f"<g {attrs}><title>{escape(mark.label)} on {mark.day.isoformat()}</title>"
            f'<path d="M{x:.1f},{y - 6} L{x + 5:.1f},{y + 4} L{x - 5:.1f},{y + 4} Z" '
            f'fill="#0f766e"/></g>'
        )
    return out


def _legend(bottom: float) -> list[str]:
    y = HEIGHT - 8
    items = [
        ('<circle cx="{x}" cy="{cy}" r="4" fill="#c2410c"/>', "CK (usable result)"),
        ('<circle cx="{x}" cy="{cy}" r="7" fill="none" stroke="#0f172a" stroke-width="2"/>',
         "used by a card"),
        ('<rect x="{xm}" y="{ym}" width="12" height="6" fill="#2563eb" fill-opacity="0.75"/>',
         "statin order"),
        ('<path d="M{x},{ym} L{xp},{yp} L{xn},{yp} Z" fill="#0f766e"/>', "IVIG given"),
        ('<rect x="{xm}" y="{ym}" width="10" height="10" fill="#fff" stroke="#6d28d9" '
         'stroke-dasharray="2 1.5"/>', "drafted order"),
    ]
    out = []
    x = _LEFT
    for shape, label in items:
        out.append(
            shape.format(x=x + 6, cy=y - 4, xm=x, ym=y - 9, xp=x + 11, xn=x + 1, yp=y + 1)
            + f'<text x="{x + 18}" y="{y}" fill="#334155">{escape(label)}</text>'
        )
        x += 30 + 6 * len(label)
    return out


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
