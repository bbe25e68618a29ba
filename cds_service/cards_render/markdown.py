"""Markdown building blocks for card ``detail`` (GitHub Flavored Markdown).

Every value that comes from patient data (a medication display, a lab's unit text, a note) goes
through ``escape`` before it reaches Markdown: clients render ``detail`` with raw HTML enabled (the
CDS Hooks Sandbox uses rehype-raw), so an unescaped ``<script>`` in a medication name would run
in the clinician's browser, and a stray ``|`` or ``*`` would break a table or the emphasis.
Template text itself is trusted Markdown, checked for raw HTML when it is loaded.
"""

from __future__ import annotations

import functools
import re
import string
from collections.abc import Iterable, Mapping, Sequence

# Characters with a Markdown meaning inline; a backslash makes each literal (CommonMark allows a
# backslash escape before any ASCII punctuation).
_MARKDOWN_SPECIAL = "\\`*_[]|~"
# HTML-significant characters become entities, Markdown ones get a backslash: one table, one pass
# over the text (each character is replaced on its own, so the order of the two never matters).
_ESCAPES = str.maketrans(
    {"&": "&amp;", "<": "&lt;", ">": "&gt;", **{char: "\\" + char for char in _MARKDOWN_SPECIAL}}
)
_NEEDS_ESCAPE = re.compile("[" + re.escape("&<>" + _MARKDOWN_SPECIAL) + "]")
# Line breaks inside a value would end a table row or a list item: they become spaces. Other
# spacing is kept (" (preliminary)" relies on its leading space).
_LINE_BREAKS = re.compile(r"[\r\n\t\f\v\u2028\u2029\x85]+")
# A value follows only these on its line: it starts the line's content (a paragraph, list item or
# quote), where a leading marker would be read as Markdown structure.
_BLOCK_PREFIX = re.compile(r"^\s*(?:(?:[-+*]|\d+[.)])\s+)*$")
# At the start of a line these would open a list item, a heading or a setext underline; elsewhere
# they are plain text and stay unescaped (EHRs that show detail as plain text show it as is).
_LEADING_BLOCK_MARKER = re.compile(r"^(?:([-+=#])|(\d+)([.)]))")


def escape(value: object, *, line_start: bool = False) -> str:
    """``value`` as literal Markdown text on one line: HTML-significant characters become entities
    (so no tag can form), inline Markdown punctuation is backslash-escaped, line breaks become
    spaces; ``line_start``: also a leading list, heading or underline marker."""
    text = one_line(value)
    if _NEEDS_ESCAPE.search(text):  # most values (dates, numbers, units) have nothing to escape
        text = text.translate(_ESCAPES)
    if line_start:
        text = _LEADING_BLOCK_MARKER.sub(_escape_block_marker, text.lstrip(), count=1)
    return text


def one_line(value: object) -> str:
    text = value if type(value) is str else str(value)
    # Every character _LINE_BREAKS matches is unprintable: a printable text has none to replace.
    return text if text.isprintable() else _LINE_BREAKS.sub(" ", text)


def _escape_block_marker(match: re.Match[str]) -> str:
    if match.group(1):
        return "\\" + match.group(1)
    return match.group(2) + "\\" + match.group(3)


class MissingValue(KeyError):
    """A template placeholder has no value in ``Advice.values``."""


def fill(template: str, values: Mapping[str, str], *, markdown: bool) -> str:
    """Fill ``{placeholders}`` from ``values``; Markdown templates get each value escaped.

    A placeholder missing from ``values`` raises ``MissingValue`` (a programming error: the
    advice and its template disagree, and the card must not go out half-filled).
    """
    out = []
    line = ""  # the text after the last line break written so far (Markdown templates)
    for literal, name in template_pieces(template):
        out.append(literal)
        if markdown:
            line = _last_line(line, literal)
        if name is None:
            continue
        if name not in values:
            raise MissingValue(name)
        value = values[name]
        if markdown:
            text = escape(value, line_start=bool(_BLOCK_PREFIX.match(line)))
            out.append(text)
            line = _last_line(line, text)
        else:
            out.append(one_line(value))
    return "".join(out)


@functools.lru_cache(maxsize=512)  # the card templates' texts: each parsed once, not per card
def template_pieces(template: str) -> tuple[tuple[str, str | None], ...]:
    """``template`` as (literal text, placeholder name or None) pairs, in order. The templates
    were checked when loaded (``templates.placeholder_problems``): a plain name per placeholder,
    no conversion or format spec."""
    return tuple((literal, name) for literal, name, _, _ in string.Formatter().parse(template))


def _last_line(line: str, written: str) -> str:
    """The current line once ``written`` follows ``line``."""
    cut = written.rfind("\n")
    return line + written if cut < 0 else written[cut + 1 :]


def table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A GFM table; header cells are trusted text, every body cell is escaped."""
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    for row in rows:
        lines.append("| " + " | ".join(escape(cell).strip() for cell in row) + " |")
    return "\n".join(lines)


def bullet_list(items: Iterable[object]) -> str:
    return "\n".join(f"- {escape(str(item).strip(), line_start=True)}" for item in items)


def link(label: str, url: str) -> str:
    """``[label](url)``; the URL was checked at load time, parentheses are percent-encoded so the
    link destination cannot end early."""
    destination = url.replace("(", "%28").replace(")", "%29")
    return f"[{escape(label)}]({destination})"
