"""Card detail Markdown renders safely: only the GFM subset, never raw HTML, only http(s) links.

Checked on the renderer directly and on whole cards drawn by ``POST /try/cards`` (the browser
test checks the same hostile card in a real Chromium)."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest

from cds_service.tryit.markdown import render_markdown, safe_link
from tests.tryit.test_pages import card

HOSTILE_DETAIL = (
    "Before <script>window.pwned = 1</script> after\n\n"
    "<img src=x onerror=\"window.pwned = 2\">\n\n"
    "[click](javascript:window.pwned=3) [data](data:text/html,<script>alert(1)</script>) "
    "[vb](vbscript:msgbox) [rel](/cds-services) [mixed](JaVaScRiPt:alert(1)) "
    "[spaced]( javascript:alert(1)) [entity](jav&#x61;script:alert(1))\n\n"
    "<a href=\"https://example.org\" onclick=\"window.pwned=4\">raw link</a>\n\n"
    "<iframe src=\"https://example.org\"></iframe><style>body{display:none}</style>\n\n"
    "![pixel](https://tracker.example/p.png)\n\n"
    "[ok](https://example.org/a?b=1&c=2 \"title\")"
)


class Tags(HTMLParser):
    """Every start tag with its attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def tags_of(html: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = Tags()
    parser.feed(html)
    return parser.tags


ALLOWED_TAGS = {"p", "strong", "em", "ul", "ol", "li", "table", "thead", "tbody", "tr", "th",
                "td", "a", "br"}


def assert_inert(html: str) -> None:
    for tag, attrs in tags_of(html):
        assert tag in ALLOWED_TAGS, tag
        for name, value in attrs.items():
            assert not name.startswith("on"), (tag, name)
            if name == "href":
                assert value is not None and safe_link(value), value
            if name == "style":
                raise AssertionError("style attribute")


def test_hostile_detail_renders_inert():
    html = render_markdown(HOSTILE_DETAIL)
    assert_inert(html)
    assert "&lt;script&gt;window.pwned = 1&lt;/script&gt;" in html  # shown, not run
    assert "&lt;img src=x" in html and "&lt;iframe" in html
    hrefs = [attrs["href"] for tag, attrs in tags_of(html) if tag == "a"]
    assert hrefs == ["https://tracker.example/p.png", "https://example.org/a?b=1&c=2"]
    assert "[click](javascript:window.pwned=3)" in html  # left as text


def test_the_subset_is_rendered():
    html = render_markdown(
        "Line **bold** and *italic*.\n\n- one\n- two\n\n1. first\n2. second\n\n"
        "| Value | Result |\n|---|---|\n| CK | 4,800 U/L |\n\n"
        "[source](https://www.example.org/guideline)"
    )
    assert "<strong>bold</strong>" in html and "<em>italic</em>" in html
    assert "<ul>" in html and "<ol>" in html and html.count("<li>") == 4
    assert "<table>" in html and "<td>4,800 U/L</td>" in html
    assert ('<a href="https://www.example.org/guideline" target="_blank" '
            'rel="noopener noreferrer">source</a>') in html


def test_markdown_outside_the_subset_stays_text():
    html = render_markdown("# Heading\n\n> quote\n\n`code`\n\n    indented\n\n---")
    assert_inert(html)
    assert "<h1>" not in html and "<blockquote>" not in html and "<code>" not in html
    assert "# Heading" in html and "`code`" in html


def test_escaped_values_from_the_card_renderer_show_as_written():
    # cards_render escapes patient values as entities and backslash escapes.
    html = render_markdown(r"IgA &lt;5 mg/dL, name \*star\* \| pipe")
    assert "IgA &lt;5 mg/dL, name *star* | pipe" in html


@pytest.mark.parametrize("value", [None, 42, ["x"], ""])
def test_non_text_detail_renders_empty(value):
    assert render_markdown(value) == ""


@pytest.mark.parametrize(("url", "ok"), [
    ("https://example.org", True),
    ("http://example.org/x", True),
    ("HTTPS://EXAMPLE.ORG", True),
    ("javascript:alert(1)", False),
    ("https:///nohost", False),
    ("//example.org", False),
    ("/relative", False),
    ("data:text/html,x", False),
    ("https://exa mple.org", False),
    ("https://example.org/\nx", False),
])
def test_safe_link(url, ok):
    assert safe_link(url) is ok


def test_hostile_card_is_drawn_inert_by_the_cards_endpoint(try_client):
    # Everything a schema-valid response can carry as text is hostile here.
    system = "https://myocds.dev/fhir/CodeSystem/advice"
    hostile = card(
        "warning",
        "STAT-03",
        "<script>window.pwned=5</script> CK <b>high</b>",
        detail=HOSTILE_DETAIL,
        source={"label": "<img src=x onerror=alert(1)>",
                "topic": {"system": system, "code": 'STAT-03"><script>x</script>'}},
        links=[{"label": "<b>good</b>", "url": "https://example.org/g", "type": "absolute"},
               {"label": "app", "url": "https://example.org/launch", "type": "smart"}],
        suggestions=[{"label": "<script>s</script>", "uuid": "0b3cc6a2-0d5c-4b9e-8f0e-2f4c1d7a9e12",
                      "actions": [{"type": "create", "description": "<b>x</b>",
                                   "resource": {"resourceType": "ServiceRequest",
                                                "note": [{"text": "</pre><script>y</script>"}]}}]}],
        selectionBehavior="at-most-one",
        overrideReasons=[{"system": system, "code": 'x"><script>',
                          "display": "<script>z</script>"}],
    )
    response = try_client.post("/try/cards", json={"responses": [
        {"serviceId": "<script>svc</script>", "response": {"cards": [hostile]}}]})
    assert response.status_code == 200, response.get_json()
    html = response.get_data(as_text=True)
    assert "<script" not in html.lower()
    assert "&lt;img src=x onerror=alert(1)&gt;" in html  # the label, shown as text
    for tag, attrs in tags_of(html):
        assert tag not in ("img", "iframe", "style", "b"), tag
        assert not any(name.startswith("on") for name in attrs), (tag, attrs)
        href = attrs.get("href")
        if href is not None:
            assert safe_link(href), href
    assert 'href="https://example.org/g"' in html
    # A SMART link needs an EHR launch: shown disabled, never as a link.
    assert "(SMART app)" in html and 'href="https://example.org/launch"' not in html


@pytest.mark.parametrize("where", ["links", "source"])
def test_a_javascript_url_never_reaches_the_page(try_client, where):
    # Our response schema already refuses it; the template would show it as text anyway.
    extra = (
        {"links": [{"label": "x", "url": "javascript:alert(1)", "type": "absolute"}]}
        if where == "links"
        else {"source": {"label": "x", "url": "javascript:alert(1)"}}
    )
    bad = card("info", "STAT-04", "x", **extra)
    response = try_client.post("/try/cards", json={"responses": [
        {"serviceId": "a", "response": {"cards": [bad]}}]})
    assert response.status_code == 400
