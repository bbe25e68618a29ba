"""``Advice`` + card template → CDS Hooks 2.0 card (``render``).

One card per advice. The card carries what rules.md "What every card must show" asks: a summary
with the key value (at most 139 characters), a Markdown ``detail`` (reasoning, the values used
with dates and units, what was converted or assumed, calculation lines, the CK trend, the
monitoring plan, the sources, and "expert summary, not a guideline" for seed sources),
``source.topic`` = the rule id in the advice CodeSystem, absolute ``links`` to the sources,
``overrideReasons`` with display, and suggestions as FHIR R4 resources.

A disagreement between an advice and its template (a missing placeholder, a suggestion kind the
template has no label for, an indicator or hook the template does not declare, a summary over 139
characters) is a programming error: ``CardRenderError`` is raised, never a half-filled card.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Mapping
from datetime import date
from typing import Any

from cds_service.advice.model import INDICATOR_ORDER, Advice, Fact, Suggestion
from cds_service.cards_render import markdown
from cds_service.cards_render.suggestions import (
    SuggestionError,
    UnbuildableResource,
    build_actions,
    label_key,
    label_values,
)
from cds_service.cards_render.templates import (
    ADVICE_SYSTEM,
    OVERRIDE_REASON_SYSTEM,
    CardTemplate,
    Templates,
    absolute_https_problem,
)
from cds_service.record.model import CkValue, PatientRecord, format_number

log = logging.getLogger(__name__)

SOURCE_LABEL_PREFIX = "myocds — "
SUMMARY_MAX = 139  # CDS Hooks: "<140-character summary" (cds-hooks-2.0.md 4.4)
CK_TREND_ROWS = 8  # compact: the recent CK results a clinician scans, newest first
SEED_NOTE = "expert summary, not a guideline"


class CardRenderError(RuntimeError):
    """An advice cannot be rendered with its template (see the module docstring)."""


def render(
    advices: Iterable[Advice],
    record: PatientRecord,
    templates: Templates,
    hook: str,
    *,
    source_url: str | None = None,
) -> list[dict[str, Any]]:
    """The cards for ``advices`` (ordered critical, warning, info; one per rule).

    ``source_url``: optional absolute URL about the service, put in ``card.source.url``.
    """
    ordered = sorted(advices, key=lambda a: INDICATOR_ORDER.get(a.indicator, len(INDICATOR_ORDER)))
    seen: set[str] = set()
    cards = []
    for advice in ordered:
        if advice.rule_id in seen:
            raise CardRenderError(f"{advice.rule_id}: more than one advice (one card per rule)")
        seen.add(advice.rule_id)
        cards.append(render_card(advice, record, templates, hook, source_url=source_url))
    return cards


def render_card(
    advice: Advice,
    record: PatientRecord,
    templates: Templates,
    hook: str,
    *,
    source_url: str | None = None,
) -> dict[str, Any]:
    if advice.rule_id not in templates:
        raise CardRenderError(f"{advice.rule_id}: no card template")
    template = templates[advice.rule_id]
    rule = template.rule
    if advice.indicator not in template.indicators:
        raise CardRenderError(
            f"{rule}: indicator {advice.indicator!r} not among the template's "
            f"{template.indicator_text}"
        )
    if hook not in template.hooks:
        raise CardRenderError(f"{rule}: fired on {hook}, not among the template's hooks")

    card: dict[str, Any] = {
        "uuid": str(uuid.uuid4()),
        "summary": _summary(template, advice),
        "indicator": advice.indicator,
        "detail": _detail(template, advice, record, templates),
        "source": _source(template, source_url),
    }
    suggestions = _suggestions(template, advice, record)
    if suggestions:
        if sum(1 for s in suggestions if s.get("isRecommended")) > 1:
            # at-most-one allows at most one recommended suggestion (CDS Hooks cds-resp-1).
            raise CardRenderError(f"{rule}: more than one recommended suggestion")
        card["suggestions"] = suggestions
        card["selectionBehavior"] = "at-most-one"
    card["overrideReasons"] = [
        {"code": reason.code, "system": OVERRIDE_REASON_SYSTEM, "display": reason.display}
        for reason in template.override_reasons
    ]
    card["links"] = _links(template, templates)
    _assert_no_empty(card, rule)
    return card


# --- summary and source ----------------------------------------------------------------------


def _summary(template: CardTemplate, advice: Advice) -> str:
    summary = _fill(template, "summary", template.summary, advice.values, is_markdown=False)
    length = utf16_length(summary)
    if length > SUMMARY_MAX:
        raise CardRenderError(
            f"{template.rule}: summary is {length} characters, over the {SUMMARY_MAX} allowed "
            "(shorten the template or the values it uses)"
        )
    return summary


def utf16_length(text: str) -> int:
    """Length as a JavaScript client counts it (UTF-16 code units): the 140 limit is theirs."""
    return len(text.encode("utf-16-le")) // 2


def _source(template: CardTemplate, source_url: str | None) -> dict[str, Any]:
    source: dict[str, Any] = {
        "label": SOURCE_LABEL_PREFIX + template.display,
        "topic": {"system": ADVICE_SYSTEM, "code": template.rule, "display": template.display},
    }
    if source_url and absolute_https_problem(source_url) is None:
        source["url"] = source_url
    return source


def _links(template: CardTemplate, templates: Templates) -> list[dict[str, str]]:
    links: list[dict[str, str]] = []
    urls: set[str] = set()
    for source in templates.sources_of(template):
        if source.url in urls:
            continue  # two keys for one page (the two captures of the AmeriPharma page)
        urls.add(source.url)
        links.append({"label": source.title, "url": source.url, "type": "absolute"})
    return links


# --- detail ----------------------------------------------------------------------------------


def _record_caveats(record: PatientRecord) -> tuple[str, ...]:
    """Caveats about the whole record, true of every card (not of one rule's values)."""
    if not record.truncated:
        return ()
    keys = ", ".join(record.truncated)
    return (
        f"Only the first pages of {keys} could be read from the EHR's FHIR server (page cap): "
        "older results or orders may be missing from this advice",
    )


def _detail(
    template: CardTemplate, advice: Advice, record: PatientRecord, templates: Templates
) -> str:
    sections = [_fill(template, "reasoning", template.reasoning, advice.values, is_markdown=True)]
    if advice.facts:
        sections.append("**Values used**\n\n" + _facts_table(advice.facts))
    caveats = tuple(
        dict.fromkeys(c for c in (*advice.caveats, *_record_caveats(record)) if c.strip())
    )
    if caveats:
        sections.append("**Note:**\n\n" + markdown.bullet_list(caveats))
    if advice.rows:
        sections.append("**Calculation**\n\n" + markdown.table(("Step", "Value"), advice.rows))
    if advice.ck_trend:
        sections.append(ck_trend(record.ck))
    if template.plan:
        plan = _fill(template, "plan", template.plan, advice.values, is_markdown=True)
        sections.append("**Monitoring plan**\n\n" + plan)
    sections.append(_sources_line(template, templates))
    return "\n\n".join(sections)


def _facts_table(facts: Iterable[Fact]) -> str:
    return markdown.table(
        ("Value", "Result", "Date", "Note"),
        ((f.label, f.value, _day(f.day), f.note or "") for f in facts),
    )


def ck_trend(cks: Iterable[CkValue]) -> str:
    """The recent CK results as a compact table, newest first (at most ``CK_TREND_ROWS``)."""
    recent = sorted(cks, key=lambda ck: ck.time, reverse=True)[:CK_TREND_ROWS]
    if not recent:
        return "**CK trend**\n\nNo usable CK result on file."
    rows = [(ck.day.isoformat(), _ck_cell(ck), _times_uln_cell(ck)) for ck in recent]
    title = f"**CK trend** (last {len(recent)}, newest first)"
    return title + "\n\n" + markdown.table(("Date", "CK U/L", "×ULN"), rows)


def _ck_cell(ck: CkValue) -> str:
    text = ck.number_text()
    notes = []
    if ck.converted:
        notes.append(f"from {ck.original}")
    if ck.preliminary:
        notes.append("preliminary")
    return f"{text} ({'; '.join(notes)})" if notes else text


def _times_uln_cell(ck: CkValue) -> str:
    if ck.uln <= 0:
        return "ULN unknown"
    text = ck.times_uln_text()
    if ck.uln_assumed:
        text += f" (assumed ULN {format_number(ck.uln)})"
    return text


def _sources_line(template: CardTemplate, templates: Templates) -> str:
    cited = []
    for source in templates.sources_of(template):
        entry = markdown.link(source.title, source.url)
        if source.is_seed:
            entry += f" ({SEED_NOTE})"
        elif source.kind == "design":
            entry += " (service design choice, configurable)"
        elif source.verified == "UNVERIFIED":
            entry += " (not verified)"
        cited.append(entry)
    return "**Sources:**\n\n" + "\n".join(f"- {entry}" for entry in cited)


def _day(day: date | None) -> str:
    return day.isoformat() if day else "—"


# --- suggestions -----------------------------------------------------------------------------


def _suggestions(
    template: CardTemplate, advice: Advice, record: PatientRecord
) -> list[dict[str, Any]]:
    out = []
    for suggestion in advice.suggestions:
        built = _suggestion(template, suggestion, advice.values, record)
        if built is not None:
            out.append(built)
    return out


def _suggestion(
    template: CardTemplate,
    suggestion: Suggestion,
    advice_values: Mapping[str, str],
    record: PatientRecord,
) -> dict[str, Any] | None:
    key = label_key(suggestion)
    if key not in template.suggestions:
        raise CardRenderError(f"{template.rule}: no label for suggestion {key!r} in the template")
    try:
        actions = build_actions(suggestion, record.patient_id, template.display)
    except SuggestionError as exc:
        raise CardRenderError(f"{template.rule}: suggestion {key!r}: {exc}") from exc
    except UnbuildableResource as exc:
        # The client's own draft did not validate once updated: leave this button out (the card
        # still says what to do) rather than hand the EHR a resource it would reject.
        log.warning("%s: suggestion %s left out: %s", template.rule, key, exc)
        return None
    # A label may use the advice's values and the suggestion's own ({medication}, {dose_g}...).
    values = {**advice_values, **label_values(suggestion)}
    member = f"suggestions[{key!r}]"
    label = _fill(template, member, template.suggestions[key], values, is_markdown=False)
    built: dict[str, Any] = {"label": label, "uuid": str(uuid.uuid4())}
    if suggestion.recommended:
        built["isRecommended"] = True
    built["actions"] = actions
    return built


# --- helpers ---------------------------------------------------------------------------------


def _fill(
    template: CardTemplate, member: str, text: str, values: Mapping[str, str], *, is_markdown: bool
) -> str:
    try:
        return markdown.fill(text, values, markdown=is_markdown)
    except markdown.MissingValue as exc:
        raise CardRenderError(
            f"{template.rule}: {member} uses {{{exc.args[0]}}} but the advice has no such value"
        ) from None


def _assert_no_empty(value: Any, rule: str, path: str = "card") -> None:
    """CDS Hooks: no member may be null or empty (cds-hooks-2.0.md 1)."""
    if value is None or value == "" or value == [] or value == {}:
        raise CardRenderError(f"{rule}: {path} is empty")
    if isinstance(value, dict):
        for key, item in value.items():
            _assert_no_empty(item, rule, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _assert_no_empty(item, rule, f"{path}[{index}]")
