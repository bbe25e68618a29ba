"""``Advice`` + card template → CDS Hooks 2.0 card (``render``).

One card per advice. The card carries what rules.md "What every card must show" asks: a summary
with the key value (at most 139 characters), a Markdown ``detail`` (reasoning, the values used
with dates and units, what was converted or assumed, calculation lines, the CK trend, the
monitoring plan, the sources, verified ones first, a seed named as an AI-generated expert summary
and a seed-only rule as a local protocol), ``source.topic`` = the rule id in the advice
CodeSystem, absolute ``links`` to the non-seed sources, ``overrideReasons`` with display, and
suggestions as FHIR R4 resources.

No card's text can fail a call: a summary that would pass 139 characters is shortened (the
longest values it quotes first, at a word boundary, with an ellipsis; the full values stay in the
detail). Shortening is done here only: the advice passes free text (a lab's own wording, an
order's name) in full, and ``fill_summary`` fits it to the summary. A suggestion whose
resource would not be valid FHIR R4 (an update of an unfinished draft) is left out, and the
card's detail says so.

A disagreement between an advice and its template (a missing placeholder, a suggestion kind the
template has no label for, an indicator or hook the template does not declare) is a programming
error: ``render_card`` raises ``CardRenderError``, never a half-filled card. ``render`` renders
each card on its own: one card that cannot be rendered is logged (rule id and error, no patient
data), counted in ``failures``, and left out; the other cards are still returned, so a broken
info card never takes a critical one down with it.
"""

from __future__ import annotations

import logging
import re
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
    SEED_CAUTION,
    CardTemplate,
    Templates,
    absolute_https_problem,
    placeholder_names,
)
from cds_service.cards_render.templates import (
    LOCAL_PROTOCOL_NOTE as LOCAL_PROTOCOL_NOTE,  # re-exported: render names what it writes
)
from cds_service.record.model import CkValue, PatientRecord, format_number

log = logging.getLogger(__name__)

SOURCE_LABEL_PREFIX = "myocds — "
SUMMARY_MAX = 139  # CDS Hooks: "<140-character summary" (cds-hooks-2.0.md 4.4)
CK_TREND_ROWS = 8  # compact: the recent CK results a clinician scans, newest first
SEED_NOTE = SEED_CAUTION  # how the detail names a seed source (rules.md r2)
ELLIPSIS = "…"
_FOLDED_SPACE = re.compile(r"\s+")
# A value quoted in a summary is not shortened below this (UTF-16 units, the ellipsis included):
# enough for its key part ("POSITIVE (>200 U)" is 17); the whole summary is cut after that.
MIN_VALUE_CHARS = 14


class CardRenderError(RuntimeError):
    """An advice cannot be rendered with its template (see the module docstring)."""


def render(
    advices: Iterable[Advice],
    record: PatientRecord,
    templates: Templates,
    hook: str,
    *,
    source_url: str | None = None,
    failures: list[str] | None = None,
) -> list[dict[str, Any]]:
    """The cards for ``advices`` (ordered critical, warning, info; one per rule).

    ``source_url``: optional absolute URL about the service, put in ``card.source.url``.
    ``failures``: receives the rule id of every card that could not be rendered (left out and
    logged; the other cards are returned).
    """
    ordered = sorted(advices, key=lambda a: INDICATOR_ORDER.get(a.indicator, len(INDICATOR_ORDER)))
    seen: set[str] = set()
    cards = []
    for advice in ordered:
        try:
            if advice.rule_id in seen:
                raise CardRenderError(f"{advice.rule_id}: more than one advice (one card per rule)")
            seen.add(advice.rule_id)
            cards.append(render_card(advice, record, templates, hook, source_url=source_url))
        except Exception as exc:  # one card that cannot be rendered never takes the others down
            _render_failed(advice.rule_id, exc, failures)
    return cards


def _render_failed(rule: str, exc: Exception, failures: list[str] | None) -> None:
    # A CardRenderError's message names rules, members and placeholders, never values; any other
    # exception may carry patient data in its message, so only its type is logged.
    reason = str(exc) if isinstance(exc, CardRenderError) else type(exc).__name__
    log.error("card %s left out, it could not be rendered: %s", _safe_rule(rule), reason)
    if failures is not None:
        failures.append(_safe_rule(rule))


def _safe_rule(rule: object) -> str:
    text = str(rule)
    return text if len(text) <= 40 and text.replace("-", "").isalnum() else "unknown-rule"


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

    summary = _summary(template, advice)
    suggestions, left_out = _suggestions(template, advice, record)
    card: dict[str, Any] = {
        "uuid": str(uuid.uuid4()),
        "summary": summary,
        "indicator": advice.indicator,
        "detail": _detail(template, advice, record, templates, left_out),
        "source": _source(template, source_url, templates.catalogue_version),
    }
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
    links = _links(template, templates)
    if links:  # a rule supported by seeds only (CONT-02) links to nothing
        card["links"] = links
    _assert_no_empty(card, rule)
    return card


# --- summary and source ----------------------------------------------------------------------


def _summary(template: CardTemplate, advice: Advice) -> str:
    try:
        summary, shortened = _fitted_summary(template.summary, advice.values)
    except markdown.MissingValue as exc:
        raise CardRenderError(
            f"{template.rule}: summary uses {{{exc.args[0]}}} but the advice has no such value"
        ) from None
    if shortened:
        log.info("%s: summary shortened to fit %d characters", template.rule, SUMMARY_MAX)
    return summary


def fill_summary(text: str, values: Mapping[str, str]) -> str:
    """The summary template ``text`` filled with ``values``, shortened to ``SUMMARY_MAX`` when it
    would be longer.

    Shortening for display is the card's job, not the advice's: an advice passes a lab's or an
    order's own text in full (the detail shows it whole). Here the longest value the summary
    quotes is shortened first (its start, where the key value is, kept, cut at a word boundary),
    then the next, down to ``MIN_VALUE_CHARS`` each; only then the summary itself. A placeholder
    without a value raises ``markdown.MissingValue``."""
    return _fitted_summary(text, values)[0]


def _fitted_summary(text: str, values: Mapping[str, str]) -> tuple[str, bool]:
    """``fill_summary`` and whether it had to shorten."""
    names = placeholder_names(text)
    missing = next((name for name in names if name not in values), None)
    if missing is not None:
        raise markdown.MissingValue(missing)
    # One line of plain text: a lab's "POSITIVE  (>200 U)\n" shows as "POSITIVE (>200 U) ".
    shown = {name: _FOLDED_SPACE.sub(" ", str(values[name])) for name in names}
    summary = markdown.fill(text, shown, markdown=False)
    if utf16_length(summary) <= SUMMARY_MAX:
        return summary, False
    while utf16_length(summary) > SUMMARY_MAX:
        longest = max(shown, key=lambda name: utf16_length(shown[name]))
        length = utf16_length(shown[longest])
        if length <= MIN_VALUE_CHARS:
            break
        excess = utf16_length(summary) - SUMMARY_MAX
        per_use = -(-excess // names.count(longest))  # ceiling: every use of it shrinks
        shown[longest] = shorten(shown[longest], max(MIN_VALUE_CHARS, length - per_use))
        summary = markdown.fill(text, shown, markdown=False)
    return shorten(summary, SUMMARY_MAX), True


def shorten(text: str, limit: int) -> str:
    """``text`` in at most ``limit`` UTF-16 units: cut at the last word boundary that keeps at
    least half of it (else mid-word), trailing punctuation dropped, an ellipsis added."""
    if utf16_length(text) <= limit:
        return text
    room = limit - utf16_length(ELLIPSIS)
    kept, used = [], 0
    for char in text:
        size = utf16_length(char)
        if used + size > room:
            break
        kept.append(char)
        used += size
    cut = "".join(kept)
    boundary = cut.rfind(" ")
    if boundary >= len(cut) // 2:
        cut = cut[:boundary]
    return cut.rstrip(" ,;:-–—(/" + ELLIPSIS) + ELLIPSIS  # one ellipsis, even after another


def utf16_length(text: str) -> int:
    """Length as a JavaScript client counts it (UTF-16 code units): the 140 limit is theirs."""
    if text.isascii():  # one unit per character; so is every character below U+10000
        return len(text)
    return len(text.encode("utf-16-le")) // 2


def _source(
    template: CardTemplate, source_url: str | None, catalogue_version: str | None
) -> dict[str, Any]:
    topic = {"system": ADVICE_SYSTEM, "code": template.rule, "display": template.display}
    if catalogue_version:
        # Coding.version: the version of the advice CodeSystem, i.e. of the rule catalogue.
        topic["version"] = catalogue_version
    source: dict[str, Any] = {"label": SOURCE_LABEL_PREFIX + template.display, "topic": topic}
    if source_url and absolute_https_problem(source_url) is None:
        source["url"] = source_url
    return source


def _links(template: CardTemplate, templates: Templates) -> list[dict[str, str]]:
    """Absolute links to the rule's sources, verified first; a seed is never a link (rules.md
    r2): it is named in the detail only. Worked out when the templates were loaded; each card
    gets its own copies."""
    return [dict(link) for link in templates.citations(template).links]


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
    template: CardTemplate,
    advice: Advice,
    record: PatientRecord,
    templates: Templates,
    left_out: Iterable[str] = (),
) -> str:
    sections = [_fill(template, "reasoning", template.reasoning, advice.values, is_markdown=True)]
    if advice.facts:
        sections.append("**Values used**\n\n" + _facts_table(advice.facts))
    notes = (*advice.caveats, *_record_caveats(record), *map(_left_out_note, left_out))
    caveats = tuple(dict.fromkeys(c for c in notes if c.strip()))
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


def _left_out_note(label: str) -> str:
    return (
        f"The suggestion \u201c{label}\u201d is not offered as an action: the resource it would "
        "send to the EHR would not be valid FHIR R4 (for example a drafted order that has no "
        "intent or subject yet). Make the change in the order itself."
    )


def _sources_line(template: CardTemplate, templates: Templates) -> str:
    """The sources by name, verified first; a seed unlinked and named for what it is; a rule
    with seeds only said to be a local protocol (rules.md r2). Worked out when the templates
    were loaded (``Templates.citations``)."""
    return templates.citations(template).section


def _day(day: date | None) -> str:
    return day.isoformat() if day else "—"


# --- suggestions -----------------------------------------------------------------------------


def _suggestions(
    template: CardTemplate, advice: Advice, record: PatientRecord
) -> tuple[list[dict[str, Any]], list[str]]:
    """The suggestions, and the labels of those left out because their resource would not be
    valid FHIR R4 (the card says so in its detail)."""
    out = []
    left_out = []
    for suggestion in advice.suggestions:
        label, built = _suggestion(template, suggestion, advice.values, record)
        if built is None:
            left_out.append(label)
        else:
            out.append(built)
    return out, left_out


def _suggestion(
    template: CardTemplate,
    suggestion: Suggestion,
    advice_values: Mapping[str, str],
    record: PatientRecord,
) -> tuple[str, dict[str, Any] | None]:
    key = label_key(suggestion)
    if key not in template.suggestions:
        raise CardRenderError(f"{template.rule}: no label for suggestion {key!r} in the template")
    # A label may use the advice's values and the suggestion's own ({medication}, {dose_g}...).
    values = {**advice_values, **label_values(suggestion)}
    member = f"suggestions[{key!r}]"
    label = _fill(template, member, template.suggestions[key], values, is_markdown=False)
    try:
        actions = build_actions(suggestion, record.patient_id, template.display)
    except SuggestionError as exc:
        raise CardRenderError(f"{template.rule}: suggestion {key!r}: {exc}") from exc
    except UnbuildableResource as exc:
        # The resource (usually the client's own unfinished draft, updated) would not be valid
        # R4: leave this button out rather than hand the EHR a resource it would reject; the
        # card still shows and says what to do (rules.md "Reading a resource", r2).
        log.warning("%s: suggestion %s left out: %s", template.rule, key, exc)
        return label, None
    built: dict[str, Any] = {"label": label, "uuid": str(uuid.uuid4())}
    if suggestion.recommended:
        built["isRecommended"] = True
    built["actions"] = actions
    return label, built


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
    if _has_empty(value):
        _raise_at_empty(value, rule, path)


def _has_empty(value: Any) -> bool:
    """Is ``value``, or any member in it, null or empty? (the quick look of every card; the path
    is found only for a card that fails)"""
    if isinstance(value, dict):
        members: Iterable[Any] = value.values()
    elif isinstance(value, list):
        members = value
    else:
        return value is None or value == "" or value == [] or value == {}
    if not value:
        return True
    for member in members:
        if type(member) is str:  # most members: a text, empty or not
            if not member:
                return True
        elif _has_empty(member):
            return True
    return False


def _raise_at_empty(value: Any, rule: str, path: str) -> None:
    if value is None or value == "" or value == [] or value == {}:
        raise CardRenderError(f"{rule}: {path} is empty")
    if isinstance(value, dict):
        for key, item in value.items():
            _raise_at_empty(item, rule, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _raise_at_empty(item, rule, f"{path}[{index}]")
