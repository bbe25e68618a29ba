"""Card ``detail`` Markdown → HTML, safely, for the try-it pages.

A card's ``detail`` is shown the way an EHR shows it, but never as raw HTML (the CDS Hooks Sandbox
passes raw HTML through, clients.md §1.2; we do not). Only a GitHub Flavored Markdown subset is
recognised: paragraphs, line breaks, bold and italic, bulleted and numbered lists, tables, and
links whose destination is an absolute ``http``/``https`` URL. Everything else is text: HTML tags
are escaped (``<script>`` shows as the characters ``<script>``), images, headings, code and block
quotes are not interpreted, and a link to ``javascript:``, ``data:``, a relative path or any other
scheme stays plain text. Links open in a new tab without giving the opened page a handle back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from markdown_it import MarkdownIt
from markdown_it.token import Token
from markdown_it.utils import EnvType, OptionsDict

# The rules that make up the subset; "zero" starts with paragraphs and text only.
_BLOCK_RULES = ["list", "table"]
_INLINE_RULES = ["emphasis", "link", "newline", "escape", "entity", "text"]

ALLOWED_SCHEMES = ("http", "https")


def safe_link(url: str) -> bool:
    """Is ``url`` an absolute http(s) URL with a host (the only links a card may carry here)?"""
    if any(ord(c) < 0x20 or c.isspace() for c in url):
        return False
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme.lower() in ALLOWED_SCHEMES and bool(parts.hostname)


def _parser() -> MarkdownIt:
    md = MarkdownIt("zero", {"html": False, "linkify": False, "typographer": False})
    md.enable(_BLOCK_RULES).enable(_INLINE_RULES)
    md.validateLink = safe_link  # type: ignore[method-assign]

    def link_open(
        renderer: Any, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType
    ) -> str:
        token = tokens[idx]
        token.attrSet("target", "_blank")
        token.attrSet("rel", "noopener noreferrer")
        return str(renderer.renderToken(tokens, idx, options, env))

    md.add_render_rule("link_open", link_open)
    return md


_MD = _parser()


def render_markdown(text: Any) -> str:
    """HTML for ``text`` (a card's ``detail``); anything that is not a string renders empty."""
    if not isinstance(text, str) or not text:
        return ""
    return _MD.render(text)
