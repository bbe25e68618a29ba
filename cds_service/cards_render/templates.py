"""Card templates (``cards/<RULE-ID>.json``) and sources (``cards/sources.json``): load and check.

Everything a clinician may reword lives in ``cards/`` (docs/ARCHITECTURE.md "Card templates").
``load_templates`` reads it once at start-up and refuses a broken file with a
``ConfigurationError`` naming the file and the problem, so a bad template stops the service
instead of producing a broken card in front of a clinician.

Where ``cards/`` is: the ``cards_dir`` argument, else the ``MYOCDS_CARDS_DIR`` environment
variable, else the ``cards/`` shipped in the package (``cds_service.packaged``: the repository's
``cards/`` in a checkout or an editable install, package data in a wheel).
"""

from __future__ import annotations

import json
import os
import re
import string
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

import jsonschema
from markdown_it import MarkdownIt

from cds_service.cards_render import markdown
from cds_service.errors import ConfigurationError
from cds_service.packaged import data_dir

CARDS_DIR_ENV = "MYOCDS_CARDS_DIR"
SOURCES_FILE = "sources.json"
_PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_CARDS_DIR = data_dir("cards")
# The project's own CodeSystems (docs/ARCHITECTURE.md): a template's rule and display must be a
# concept of the advice CodeSystem, its override codes concepts of the override-reason one.
DEFAULT_MAPPINGS_DIR = data_dir("fhir_mappings")
ADVICE_SYSTEM = "https://myocds.dev/fhir/CodeSystem/advice"
OVERRIDE_REASON_SYSTEM = "https://myocds.dev/fhir/CodeSystem/override-reason"
ADVICE_CODESYSTEM = ("CodeSystem-myocds-advice.json", ADVICE_SYSTEM)
OVERRIDE_CODESYSTEM = ("CodeSystem-myocds-override-reason.json", OVERRIDE_REASON_SYSTEM)

INDICATORS = ("critical", "warning", "info")  # most urgent first (rules.md "Card identity")
# A rule's review status in the catalogue: a draft reaches cards on the try-it pages only, a
# retired rule no card at all (cds_service.pipeline).
RULE_STATUSES = ("draft", "active", "retired")
SEED_KIND = "seed"
# rules.md "What every card must show" (r2): how a card's detail names a seed source. A seed entry
# of sources.json may say otherwise in its "caution" (the pharmacy pages are not AI-generated).
SEED_CAUTION = "expert summary (AI-generated, not peer reviewed)"
# rules.md r2: a rule whose only support is a seed says this in its detail.
LOCAL_PROTOCOL_NOTE = (
    "This rule is a local protocol: not from a published guideline; thresholds are site settings."
)
# rules.md (r2) "verified sources first": the order sources appear in on a card (stable within a
# rank, so the template's own order decides among equals).
_VERIFICATION_RANK = {"V": 0, "DESIGN": 1, "UNVERIFIED": 2, "S": 3}

# Placeholders are plain names of Advice.values keys: no attribute or index access (a template
# must not reach into objects), no positional fields, no conversions or format specs (the values
# arrive already formatted).
_PLACEHOLDER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Characters RFC 3986 never allows raw in a URL; a link with one of them may break the Markdown
# link or the client's URL parser.
_URL_FORBIDDEN = re.compile(r'[\s"<>\\^`{|}\x00-\x1f\x7f]')
# The markdown renderer clients use (GFM; the Sandbox passes raw HTML through): a template whose
# text parses as raw HTML is refused.
_MARKDOWN = MarkdownIt("commonmark", {"html": True}).enable("table")


@dataclass(frozen=True)
class Source:
    key: str
    title: str
    url: str
    kind: str  # guideline | label | lab | review | seed | design | code
    verified: str  # V | S | UNVERIFIED | DESIGN
    note: str | None = None
    caution: str | None = None  # seeds: how the detail names it (default SEED_CAUTION)

    @property
    def is_seed(self) -> bool:
        return self.kind == SEED_KIND

    @property
    def rank(self) -> int:
        """Verified sources first, seeds last (rules.md r2)."""
        if self.is_seed:
            return len(_VERIFICATION_RANK)
        return _VERIFICATION_RANK.get(self.verified, len(_VERIFICATION_RANK) - 1)


@dataclass(frozen=True)
class OverrideReason:
    code: str
    display: str


@dataclass(frozen=True)
class CardTemplate:
    rule: str
    display: str
    hooks: tuple[str, ...]
    indicators: tuple[str, ...]
    summary: str
    reasoning: str
    sources: tuple[str, ...]
    override_reasons: tuple[OverrideReason, ...]
    suggestions: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    plan: str | None = None
    path: Path | None = None
    # The rule catalogue (issue 15): the rule's own version, its review status, who reviewed it
    # and when. A template without them (a stand-alone test template) is an active rule.
    version: str | None = None
    status: str = "active"
    reviewed_by: str | None = None
    reviewed_on: date | None = None

    @property
    def indicator_text(self) -> str:
        return " / ".join(self.indicators)


@dataclass(frozen=True)
class Citations:
    """How a card cites its rule's sources; depends on the template and ``sources.json`` only, so
    ``Templates`` works it out once per template when loaded, not on every card."""

    sources: tuple[Source, ...]  # verified first, seeds last (rules.md r2)
    seed_only: bool  # every source a seed: the rule is a local protocol
    section: str  # the detail's closing "Sources" section (Markdown)
    links: tuple[Mapping[str, str], ...]  # card.links: absolute links to the non-seed sources


@dataclass(frozen=True)
class Templates:
    """Every card template by rule id, and the sources they cite."""

    cards: Mapping[str, CardTemplate]
    sources: Mapping[str, Source]
    directory: Path
    # The advice CodeSystem's version: the catalogue's (source.topic.version, discovery).
    catalogue_version: str | None = None
    _citations: Mapping[str, Citations] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        citations = {rule: self._cite(template) for rule, template in self.cards.items()}
        object.__setattr__(self, "_citations", MappingProxyType(citations))

    def __getitem__(self, rule: str) -> CardTemplate:
        return self.cards[rule]

    def __contains__(self, rule: object) -> bool:
        return rule in self.cards

    def __iter__(self) -> Iterator[str]:
        return iter(self.cards)

    def __len__(self) -> int:
        return len(self.cards)

    def sources_of(self, template: CardTemplate) -> tuple[Source, ...]:
        """The template's sources, verified first and seeds last (rules.md r2), otherwise in the
        template's order."""
        return self.citations(template).sources

    def seed_only(self, template: CardTemplate) -> bool:
        """Is every source of this rule a seed (rules.md r2: then it is a local protocol)?"""
        return self.citations(template).seed_only

    def citations(self, template: CardTemplate) -> Citations:
        """How a card of ``template`` cites its sources (worked out at load for every template
        of this set; on the spot for any other)."""
        if self.cards.get(template.rule) is template:
            return self._citations[template.rule]
        return self._cite(template)

    def _cite(self, template: CardTemplate) -> Citations:
        cited = (self.sources[key] for key in template.sources)
        sources = tuple(sorted(cited, key=lambda source: source.rank))
        seed_only = bool(sources) and all(source.is_seed for source in sources)
        return Citations(
            sources=sources,
            seed_only=seed_only,
            section=_sources_section(sources, seed_only),
            links=_source_links(sources),
        )

    def rule_version(self, rule: str | None) -> str | None:
        """The version of a rule's template (None for a rule without one)."""
        template = self.cards.get(rule) if rule is not None else None
        return template.version if template is not None else None

    def live_rules(self, rules: Iterable[str], *, drafts: bool = False) -> tuple[str, ...]:
        """The rules that may give a card: active ones (and drafts on the try-it pages), never a
        retired one; a rule without a template is kept (``require`` refuses those at start-up)."""
        allowed = ("active", "draft") if drafts else ("active",)
        return tuple(
            rule for rule in rules if rule not in self.cards or self.cards[rule].status in allowed
        )

    def require(self, rules: Iterable[str]) -> None:
        """Raise ``ConfigurationError`` unless every rule in ``rules`` has a template (a service
        declaring a rule with no template could not show that rule's card)."""
        missing = sorted(set(rules) - set(self.cards))
        if missing:
            raise ConfigurationError(
                f"{self.directory.name}/: no card template for rule(s) {', '.join(missing)} "
                f"(expected {', '.join(f'{rule}.json' for rule in missing)})"
            )


def _sources_section(sources: Iterable[Source], seed_only: bool) -> str:
    """The sources by name, verified first; a seed unlinked and named for what it is; a rule
    with seeds only said to be a local protocol (rules.md r2)."""
    cited = []
    for source in sources:
        if source.is_seed:
            cited.append(f"{markdown.escape(source.title)} \u2014 {source.caution or SEED_CAUTION}")
            continue
        entry = markdown.link(source.title, source.url)
        if source.kind == "design":
            entry += " (service design choice, configurable)"
        elif source.verified == "UNVERIFIED":
            entry += " (not verified)"
        cited.append(entry)
    listed = "**Sources:**\n\n" + "\n".join(f"- {entry}" for entry in cited)
    if seed_only:
        return LOCAL_PROTOCOL_NOTE + "\n\n" + listed
    return listed


def _source_links(sources: Iterable[Source]) -> tuple[Mapping[str, str], ...]:
    """Absolute links to the sources, verified first; a seed is never a link (rules.md r2): it
    is named in the detail only."""
    links: list[Mapping[str, str]] = []
    urls: set[str] = set()
    for source in sources:
        if source.is_seed or source.url in urls:
            continue  # two keys for one page (the two captures of the AmeriPharma page)
        urls.add(source.url)
        link = {"label": source.title, "url": source.url, "type": "absolute"}
        links.append(MappingProxyType(link))
    return tuple(links)


def cards_directory(cards_dir: str | os.PathLike[str] | None = None) -> Path:
    """The cards directory: the argument, else ``MYOCDS_CARDS_DIR``, else the shipped ``cards/``."""
    if cards_dir is not None:
        return Path(cards_dir)
    configured = os.environ.get(CARDS_DIR_ENV, "").strip()
    return Path(configured) if configured else DEFAULT_CARDS_DIR


def load_templates(
    cards_dir: str | os.PathLike[str] | None = None,
    *,
    mappings_dir: str | os.PathLike[str] | None = DEFAULT_MAPPINGS_DIR,
) -> Templates:
    """Load and check ``cards/sources.json`` and every ``cards/*.json`` template.

    With ``mappings_dir`` (default: the shipped ``fhir_mappings/``), each template's rule and
    display must also be a concept of the advice CodeSystem and its override codes concepts of the
    override-reason CodeSystem; ``None`` skips that check (tests of stand-alone templates).

    Raises ``ConfigurationError`` listing every problem found, each prefixed by its file.
    """
    directory = cards_directory(cards_dir)
    if not directory.is_dir():
        raise ConfigurationError(
            f"card templates directory {directory} not found (set {CARDS_DIR_ENV} to the "
            "repository's cards/ directory)"
        )
    problems: list[str] = []
    sources, declared = _load_sources(directory, problems)
    cards: dict[str, CardTemplate] = {}
    for path in sorted(directory.glob("*.json")):
        if path.name == SOURCES_FILE or not path.is_file():
            continue
        template = _load_template(path, declared, problems)
        if template is not None:
            cards[template.rule] = template
    catalogue_version = None
    if mappings_dir is not None:
        _check_codesystems(cards.values(), Path(mappings_dir), problems)
        catalogue_version = _catalogue_version(Path(mappings_dir), problems)
    if problems:
        raise ConfigurationError(
            "broken card template(s), the service cannot start:\n- " + "\n- ".join(problems)
        )
    return Templates(
        cards=MappingProxyType(cards),
        sources=MappingProxyType(sources),
        directory=directory,
        catalogue_version=catalogue_version,
    )


# --- sources ---------------------------------------------------------------------------------


def _load_sources(directory: Path, problems: list[str]) -> tuple[dict[str, Source], set[str]]:
    """The valid sources, and every key declared (valid or not: a template citing a declared but
    broken source is not reported twice)."""
    path = directory / SOURCES_FILE
    where = _display_path(path)
    if not path.is_file():
        problems.append(f"{where}: file not found (every cited source must be declared there)")
        return {}, set()
    data = _read_json(path, problems)
    if data is None:
        return {}, set()
    if not isinstance(data, dict):
        problems.append(f"{where}: must be a JSON object of sources by key")
        return {}, set()
    broken: set[str] = set()
    for error in _validator("sources.schema.json").iter_errors(data):
        if error.absolute_path:
            broken.add(str(error.absolute_path[0]))
        problems.append(f"{where}: {_describe(error)}")
    sources: dict[str, Source] = {}
    for key, entry in data.items():
        if key == "$schema" or key in broken:
            continue
        if "caution" in entry and entry["kind"] != SEED_KIND:
            problems.append(f"{where}: source {key}: caution applies to seed sources only")
            continue
        url_problem = absolute_https_problem(entry["url"])
        if url_problem:
            problems.append(f"{where}: source {key}: url {entry['url']!r} {url_problem}")
            continue
        sources[key] = Source(
            key=key,
            title=entry["title"].strip(),
            url=entry["url"],
            kind=entry["kind"],
            verified=entry["verified"],
            note=entry.get("note"),
            caution=_caution(entry),
        )
    return sources, set(data) - {"$schema"}


def _caution(entry: Mapping[str, Any]) -> str | None:
    if entry["kind"] != SEED_KIND:
        return None
    caution = entry.get("caution")
    return caution.strip() if isinstance(caution, str) else SEED_CAUTION


def absolute_https_problem(url: str) -> str | None:
    """Why ``url`` is not an absolute https URL a client can open, or None when it is."""
    if _URL_FORBIDDEN.search(url):
        return "contains a space, quote, angle bracket or other character not allowed in a URL"
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        return f"cannot be parsed ({exc})"
    if parts.scheme != "https":
        return "is not an absolute https URL"
    if not parts.hostname or "." not in parts.hostname:
        return "has no host name"
    return None


# --- templates -------------------------------------------------------------------------------


def _load_template(path: Path, declared: set[str], problems: list[str]) -> CardTemplate | None:
    where = _display_path(path)
    data = _read_json(path, problems)
    if data is None:
        return None
    errors = _schema_errors(_validator("template.schema.json"), data)
    if errors:
        problems.extend(f"{where}: {error}" for error in errors)
        return None

    found: list[str] = []
    if data["rule"] != path.stem:
        found.append(f"rule {data['rule']!r} does not match the file name (expected {path.stem!r})")
    texts = _texts(data)
    for member, text in texts:
        found.extend(f"{member}: {problem}" for problem in placeholder_problems(text))
    for member in ("reasoning", "plan"):
        if member in data and contains_raw_html(data[member]):
            found.append(
                f"{member}: contains raw HTML (write < and > as &lt; and &gt;, or add a space)"
            )
    for key in data["sources"]:
        if key not in declared:
            found.append(f"source {key!r} is not declared in {SOURCES_FILE}")
    codes = [reason["code"] for reason in data["overrideReasons"]]
    duplicates = sorted({code for code in codes if codes.count(code) > 1})
    if duplicates:
        found.append(f"overrideReasons: duplicate code(s) {', '.join(duplicates)}")
    found.extend(_review_problems(data))
    if found:
        problems.extend(f"{where}: {problem}" for problem in found)
        return None

    indicator = data["indicator"]
    indicators = (indicator,) if isinstance(indicator, str) else tuple(indicator)
    return CardTemplate(
        rule=data["rule"],
        display=data["display"].strip(),
        hooks=tuple(data["hooks"]),
        indicators=tuple(i for i in INDICATORS if i in indicators),
        summary=data["summary"].strip(),
        reasoning=data["reasoning"].strip(),
        plan=data["plan"].strip() if "plan" in data else None,
        sources=tuple(data["sources"]),
        suggestions=MappingProxyType(dict(data.get("suggestions", {}))),
        override_reasons=tuple(
            OverrideReason(code=r["code"], display=r["display"].strip())
            for r in data["overrideReasons"]
        ),
        path=path,
        version=data.get("version"),
        status=data.get("status", "active"),
        reviewed_by=data.get("reviewedBy"),
        reviewed_on=date.fromisoformat(data["reviewedOn"]) if "reviewedOn" in data else None,
    )


def _texts(data: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Every (member, text) of a template that may hold placeholders."""
    texts = [(m, data[m]) for m in ("summary", "reasoning", "plan") if m in data]
    texts.extend((f"suggestions[{k!r}]", v) for k, v in data.get("suggestions", {}).items())
    texts.extend(
        (f"overrideReasons[{i}].display", r["display"])
        for i, r in enumerate(data["overrideReasons"])
    )
    return texts


def placeholder_names(text: str) -> tuple[str, ...]:
    """The placeholder names in a (well-formed) template text, in order of appearance."""
    return tuple(name for _, name in markdown.template_pieces(text) if name is not None)


def placeholder_problems(text: str) -> list[str]:
    """What is wrong with the ``{placeholders}`` of ``text`` (empty when all are well-formed)."""
    try:
        fields = list(string.Formatter().parse(text))
    except ValueError as exc:
        return [f"malformed placeholder ({exc}; write a literal brace as {{{{ or }}}})"]
    problems = []
    for _, name, spec, conversion in fields:
        if name is None:
            continue
        shown = (
            "{"
            + name
            + ("!" + conversion if conversion else "")
            + (":" + spec if spec else "")
            + "}"
        )
        if not name:
            problems.append(f"empty placeholder {shown} (name the Advice value)")
        elif not _PLACEHOLDER.match(name):
            problems.append(f"placeholder {shown} is not a plain name (letters, digits, _)")
        elif conversion or spec:
            problems.append(f"placeholder {shown} has a conversion or format spec; use {{{name}}}")
    return problems


def contains_raw_html(markdown: str) -> bool:
    """Does this Markdown contain raw HTML (a tag, comment or HTML block) once rendered?"""
    for token in _MARKDOWN.parse(markdown):
        if token.type == "html_block":
            return True
        if any(child.type == "html_inline" for child in token.children or ()):
            return True
    return False


def _review_problems(data: Mapping[str, Any]) -> list[str]:
    """A rule in use (active or retired) names its version, who reviewed it and when; a review
    date is a real date."""
    problems = []
    if "reviewedOn" in data:
        try:
            date.fromisoformat(data["reviewedOn"])
        except ValueError:
            problems.append(f"reviewedOn: {data['reviewedOn']!r} is not a date (YYYY-MM-DD)")
    if data.get("status", "active") != "draft" and "status" in data:
        missing = [m for m in ("version", "reviewedBy", "reviewedOn") if m not in data]
        if missing:
            problems.append(
                f"status {data['status']!r} needs {', '.join(missing)} (a rule is reviewed "
                "before it reaches a clinician)"
            )
    return problems


# --- CodeSystems -----------------------------------------------------------------------------


def catalogue_version(mappings_dir: str | os.PathLike[str] = DEFAULT_MAPPINGS_DIR) -> str | None:
    """The rule catalogue's version: the shipped advice CodeSystem's ``version``."""
    return _catalogue_version(Path(mappings_dir), [])


def _catalogue_version(mappings_dir: Path, problems: list[str]) -> str | None:
    """The advice CodeSystem's ``version``: the rule catalogue's version."""
    path = mappings_dir / ADVICE_CODESYSTEM[0]
    data = _read_json(path, []) if path.is_file() else None
    version = data.get("version") if isinstance(data, dict) else None
    if data is not None and not (isinstance(version, str) and version.strip()):
        problems.append(f"{_display_path(path)}: no version (the rule catalogue's version)")
        return None
    return version


def codesystem_concepts(path: Path, canonical: str, problems: list[str]) -> dict[str, str] | None:
    """code -> display of a CodeSystem file, or None (with the problem noted) when unusable."""
    where = _display_path(path)
    if not path.is_file():
        problems.append(f"{where}: file not found")
        return None
    data = _read_json(path, problems)
    if data is None:
        return None
    if not isinstance(data, dict) or data.get("resourceType") != "CodeSystem":
        problems.append(f"{where}: not a FHIR CodeSystem")
        return None
    if data.get("url") != canonical:
        problems.append(f"{where}: url is {data.get('url')!r}, expected {canonical!r}")
        return None
    concepts: dict[str, str] = {}
    for concept in data.get("concept") or ():
        if not isinstance(concept, dict) or not isinstance(concept.get("code"), str):
            problems.append(f"{where}: a concept has no code")
            continue
        concepts[concept["code"]] = str(concept.get("display", ""))
    return concepts


def _check_codesystems(
    templates: Iterable[CardTemplate], mappings_dir: Path, problems: list[str]
) -> None:
    advice_file, advice_url = ADVICE_CODESYSTEM
    override_file, override_url = OVERRIDE_CODESYSTEM
    advice = codesystem_concepts(mappings_dir / advice_file, advice_url, problems)
    overrides = codesystem_concepts(mappings_dir / override_file, override_url, problems)
    if advice is None or overrides is None:
        return
    for template in templates:
        where = _display_path(template.path) if template.path else template.rule
        if template.rule not in advice:
            problems.append(f"{where}: rule {template.rule} is not a concept of {advice_file}")
        elif advice[template.rule] != template.display:
            problems.append(
                f"{where}: display {template.display!r} differs from {advice_file}'s "
                f"{advice[template.rule]!r} (source.topic must match the CodeSystem)"
            )
        for reason in template.override_reasons:
            if reason.code not in overrides:
                problems.append(
                    f"{where}: override reason {reason.code!r} is not a concept of {override_file}"
                )


# --- helpers ---------------------------------------------------------------------------------


def _display_path(path: Path) -> str:
    return f"{path.parent.name}/{path.name}"


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _read_json(path: Path, problems: list[str]) -> Any:
    where = _display_path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(f"{where}: cannot be read as UTF-8 ({exc})")
        return None
    try:
        return json.loads(text, object_pairs_hook=_reject_duplicate_keys)
    except json.JSONDecodeError as exc:
        problems.append(f"{where}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}")
    except ValueError as exc:
        problems.append(f"{where}: invalid JSON: {exc}")
    return None


_VALIDATORS: dict[str, jsonschema.protocols.Validator] = {}


def _validator(schema_file: str) -> jsonschema.protocols.Validator:
    if schema_file not in _VALIDATORS:
        schema = json.loads((_PACKAGE_DIR / schema_file).read_text(encoding="utf-8"))
        validator_class = jsonschema.validators.validator_for(schema)
        validator_class.check_schema(schema)
        _VALIDATORS[schema_file] = validator_class(schema)
    return _VALIDATORS[schema_file]


def _schema_errors(validator: jsonschema.protocols.Validator, data: Any) -> list[str]:
    errors = sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path)))
    return [_describe(error) for error in errors]


def _describe(error: jsonschema.ValidationError) -> str:
    where = "/".join(str(part) for part in error.absolute_path)
    # A oneOf/anyOf failure's own message dumps the whole value; its best sub-error is clearer.
    if error.context:
        best = jsonschema.exceptions.best_match(error.context)
        message = best.message
    else:
        message = error.message
    return f"{where}: {message}" if where else message
