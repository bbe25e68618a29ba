"""What a code means: medication, observation and condition classes from ``fhir_mappings/``.

The knowledge is data: FHIR R4 ValueSets in ``fhir_mappings/ValueSet-*.json`` (canonical
``https://myocds.dev/fhir/ValueSet/<id>``), loaded once at import and checked; a missing or broken
file raises ``ConfigurationError`` so the service does not start with a silent gap in what it
recognises. The Observation LOINC groups are ``cds_service.services.OBSERVATION_CODES`` (the same
table the prefetch templates are built from), not a second copy here.

How the ValueSets are read (documented in ``fhir_mappings/README.md``):

- ``compose.include.concept``: explicit codes. NDC codes are compared on labeler and product
  segments (rules.md "IVIG"), ICD-10-CM codes without the dot, ATC codes upper-case.
- ``compose.include.filter`` ``concept is-a X``: understood for ATC and ICD-10-CM only, where the
  hierarchy is the code prefix (``C10AA`` covers ``C10AA05``; ``I80.1`` covers ``I80.11``).
- extension ``text-match`` on the ValueSet: a name or pattern looked for in ``text`` and every
  ``coding.display`` (``match`` = ``word``: whole word, case-insensitive; ``regex``: a
  case-insensitive search). A class found only this way is flagged ``matched_by_name``.
- extension ``concentration`` on an NDC concept, or inside a brand's ``text-match``: the product
  strength in g/mL, so an IVIG dose in mL converts to grams.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from cds_service.errors import ConfigurationError
from cds_service.fhir.elements import as_dict, as_list, to_decimal
from cds_service.packaged import data_dir
from cds_service.record.model import Medication
from cds_service.record.units import UCUM
from cds_service.services import LOINC, OBSERVATION_CODES

MAPPINGS_DIR = data_dir("fhir_mappings")
VALUESET_BASE = "https://myocds.dev/fhir/ValueSet/"
TEXT_MATCH_URL = "https://myocds.dev/fhir/StructureDefinition/text-match"
CONCENTRATION_URL = "https://myocds.dev/fhir/StructureDefinition/concentration"

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
NDC = "http://hl7.org/fhir/sid/ndc"
ATC = "http://www.whocc.no/atc"
SNOMED = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"

# The same code systems as HL7 OIDs: some EHR interfaces (Epic among them) send these.
_SYSTEM_ALIASES = {
    "urn:oid:2.16.840.1.113883.6.1": LOINC,
    "urn:oid:2.16.840.1.113883.6.88": RXNORM,
    "urn:oid:2.16.840.1.113883.6.69": NDC,
    "urn:oid:2.16.840.1.113883.6.73": ATC,
    "urn:oid:2.16.840.1.113883.6.96": SNOMED,
    "urn:oid:2.16.840.1.113883.6.90": ICD10CM,
}
# Systems whose is-a hierarchy is the code prefix, so a filter can be evaluated without a server.
_PREFIX_HIERARCHY = frozenset({ATC, ICD10CM})

# The ValueSets the service needs: id -> what it classifies.
REQUIRED_VALUESETS = (
    "statin",
    "ivig",
    "estrogen",
    "diabetes",
    "venous-thromboembolism",
    "hmgcr-myopathy",
    "subcutaneous-route",
)
# ConditionFact.kinds label per condition ValueSet.
CONDITION_KINDS = {
    "diabetes": "diabetes",
    "venous-thromboembolism": "vte",
    "hmgcr-myopathy": "hmgcr-myopathy",
}

# Matching runs on EHR text: bound the length so a pathological display cannot stall a call.
_MAX_TEXT = 4096
_PERCENT = re.compile(r"(?<![\d.])(\d{1,2}(?:\.\d+)?)\s*%")


@dataclass(frozen=True)
class TextRule:
    label: str  # the name or pattern as written in the ValueSet
    pattern: re.Pattern[str]
    concentration: Decimal | None = None  # g/mL, IVIG brands sold in one strength
    # A whole-word rule (match "word"): its name as a regular expression (``pattern`` is this
    # between the word boundaries); None for a "regex" rule.
    word: str | None = None


# A whole word: no letter or digit just before it, none just after it.
_WORD_BEFORE = r"(?<![^\W_])"
_WORD_AFTER = r"(?![^\W_])"


@dataclass(frozen=True)
class CompiledValueSet:
    url: str
    codes: frozenset[tuple[str, str]]  # (system, normalised code)
    prefixes: tuple[tuple[str, str], ...]  # (system, normalised code prefix): is-a filters
    texts: tuple[TextRule, ...]
    concentrations: Mapping[tuple[str, str], Decimal]  # (system, normalised code) -> g/mL
    # One alternation of every text rule: most texts match none, and one search says so. The
    # whole-word names share one pair of word boundaries, ``_WORD_BEFORE(?:a|b|...)_WORD_AFTER``,
    # which finds a text matching any of them exactly when one of their patterns does (the
    # engine backtracks into the alternation), in a quarter of the time of one pair per name.
    any_text: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        words = [rule.word for rule in self.texts if rule.word is not None]
        parts = [f"{_WORD_BEFORE}(?:{'|'.join(words)}){_WORD_AFTER}"] if words else []
        parts += [f"(?:{rule.pattern.pattern})" for rule in self.texts if rule.word is None]
        combined = "|".join(parts) or r"(?!)"
        object.__setattr__(self, "any_text", re.compile(combined, re.IGNORECASE))

    def has_code(self, system: str, code: str) -> bool:
        key = (system, code)
        if key in self.codes:
            return True
        return any(system == s and code.startswith(p) for s, p in self.prefixes)

    def text_rule(self, texts: Iterable[str]) -> TextRule | None:
        for text in texts:
            bounded = text[:_MAX_TEXT]
            if not self.any_text.search(bounded):
                continue
            for rule in self.texts:
                if rule.pattern.search(bounded):
                    return rule
        return None


# --- codes -----------------------------------------------------------------------------------


def normalise_system(system: object) -> str | None:
    if not isinstance(system, str) or not system.strip():
        return None
    text = system.strip().rstrip("/")
    return _SYSTEM_ALIASES.get(text, text)


def normalise_ndc(code: str) -> str | None:
    """NDC → "LLLLL-PPPP": the labeler and product segments of the 11-digit 5-4-2 form, or None.

    rules.md "IVIG" (r2): compared after normalising to 5-4-2, so leading zeros do not matter.
    Hyphenated codes (4-4-2, 5-3-2, 5-4-1, 5-4-2, or product-only labeler-product; any segment
    with more or fewer leading zeros) are padded segment by segment; without hyphens an
    11-digit code is 5-4-2 and a 9-digit code labeler-product 5-4. A 10-digit NDC without
    hyphens is ambiguous (three layouts) and is not guessed.
    """
    text = code.strip().replace(" ", "")
    parts = text.split("-")
    if not all(p.isdigit() for p in parts):
        return None
    if len(parts) == 1:
        if len(text) in (9, 11):
            return f"{text[:5]}-{text[5:9]}"
        return None
    if len(parts) not in (2, 3):
        return None
    # Leading zeros do not matter: "0944", "00944" and "000944" are one labeler.
    segments = [part.lstrip("0") for part in parts]
    limits = (5, 4, 2)[: len(parts)]
    if any(len(seg) > limit for seg, limit in zip(segments, limits, strict=True)):
        return None
    labeler, product = segments[0], segments[1]
    return f"{labeler.zfill(5)}-{product.zfill(4)}"


def normalise_code(system: str, code: object) -> str | None:
    if not isinstance(code, str) or not code.strip():
        return None
    text = code.strip()
    if system == NDC:
        return normalise_ndc(text)
    if system == ICD10CM:
        return text.replace(".", "").upper()
    if system == ATC:
        return text.upper()
    return text


def codings(concept: object) -> list[tuple[str, str]]:
    """(system, normalised code) of every usable coding of a CodeableConcept."""
    out: list[tuple[str, str]] = []
    for coding in as_list(as_dict(concept).get("coding")):
        c = as_dict(coding)
        system = normalise_system(c.get("system"))
        if system is None:
            continue
        code = normalise_code(system, c.get("code"))
        if code is not None:
            out.append((system, code))
    return out


def concept_texts(concept: object) -> list[str]:
    """``text`` and every ``coding.display`` of a CodeableConcept (non-empty strings)."""
    c = as_dict(concept)
    texts = [c.get("text")] + [as_dict(x).get("display") for x in as_list(c.get("coding"))]
    return [t for t in texts if isinstance(t, str) and t.strip()]


def coding_keys(concept: object) -> tuple[str, ...]:
    """"system|code" of every coding as written (for provenance)."""
    out: list[str] = []
    for coding in as_list(as_dict(concept).get("coding")):
        c = as_dict(coding)
        system, code = c.get("system"), c.get("code")
        if isinstance(code, str) and code.strip():
            out.append(f"{system if isinstance(system, str) else ''}|{code.strip()}")
    return tuple(out)


# --- loading ---------------------------------------------------------------------------------


def load_valuesets(directory: Path = MAPPINGS_DIR) -> dict[str, CompiledValueSet]:
    """Read and check every ``ValueSet-*.json``; raises ConfigurationError on any defect."""
    from fhir.resources.R4B.valueset import ValueSet  # the R4 gate, as for incoming resources

    if not directory.is_dir():
        raise ConfigurationError(f"fhir_mappings directory not found: {directory}")
    compiled: dict[str, CompiledValueSet] = {}
    for path in sorted(directory.glob("ValueSet-*.json")):
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            ValueSet.parse_obj(raw)
            vs = _compile(raw)
        except ConfigurationError as exc:
            raise ConfigurationError(f"{path.name}: {exc.message}") from exc
        except (OSError, ValueError) as exc:  # unreadable, not JSON, or not a valid ValueSet
            raise ConfigurationError(f"{path.name}: not a valid FHIR R4 ValueSet: {exc}") from exc
        key = vs.url.removeprefix(VALUESET_BASE)
        if key in compiled:
            raise ConfigurationError(f"{path.name}: duplicate ValueSet url {vs.url}")
        compiled[key] = vs
    missing = [name for name in REQUIRED_VALUESETS if name not in compiled]
    if missing:
        raise ConfigurationError(f"fhir_mappings is missing ValueSet(s): {', '.join(missing)}")
    return compiled


def _compile(raw: Mapping[str, Any]) -> CompiledValueSet:
    url = raw.get("url")
    if not isinstance(url, str) or not url.startswith(VALUESET_BASE):
        raise ConfigurationError(f"url must start with {VALUESET_BASE}")
    codes: set[tuple[str, str]] = set()
    prefixes: list[tuple[str, str]] = []
    concentrations: dict[tuple[str, str], Decimal] = {}
    for include in as_list(as_dict(raw.get("compose")).get("include")):
        inc = as_dict(include)
        system = normalise_system(inc.get("system"))
        if system is None:
            raise ConfigurationError("compose.include without a system")
        for concept in as_list(inc.get("concept")):
            code = normalise_code(system, as_dict(concept).get("code"))
            if code is None:
                raise ConfigurationError(f"unreadable code {as_dict(concept).get('code')!r}")
            codes.add((system, code))
            for ext in as_list(as_dict(concept).get("extension")):
                if as_dict(ext).get("url") == CONCENTRATION_URL:
                    concentrations[(system, code)] = _concentration(as_dict(ext))
        for flt in as_list(inc.get("filter")):
            f = as_dict(flt)
            if f.get("property") != "concept" or f.get("op") != "is-a":
                raise ConfigurationError(f"filter {f.get('property')} {f.get('op')} not understood")
            if system not in _PREFIX_HIERARCHY:
                raise ConfigurationError(f"is-a filter on {system} cannot be evaluated locally")
            prefix = normalise_code(system, f.get("value"))
            if prefix is None:
                raise ConfigurationError("is-a filter without a value")
            prefixes.append((system, prefix))
    texts = tuple(_text_rule(as_dict(e)) for e in as_list(raw.get("extension"))
                  if as_dict(e).get("url") == TEXT_MATCH_URL)
    if not codes and not prefixes and not texts:
        raise ConfigurationError("the ValueSet matches nothing (no concept, filter or text-match)")
    return CompiledValueSet(url, frozenset(codes), tuple(prefixes), texts, concentrations)


def _text_rule(ext: Mapping[str, Any]) -> TextRule:
    parts = {as_dict(e).get("url"): as_dict(e) for e in as_list(ext.get("extension"))}
    text = parts.get("text", {}).get("valueString")
    match = parts.get("match", {}).get("valueCode", "word")
    if not isinstance(text, str) or not text.strip():
        raise ConfigurationError("text-match without text")
    word = None
    if match == "word":
        # Whole word: no letter or digit either side ("Lipitorx" is not Lipitor).
        word = re.escape(text.strip())
        pattern = re.compile(f"{_WORD_BEFORE}{word}{_WORD_AFTER}", re.IGNORECASE)
    elif match == "regex":
        try:
            pattern = re.compile(text, re.IGNORECASE)
        except re.error as exc:
            raise ConfigurationError(f"text-match regex {text!r}: {exc}") from exc
    else:
        raise ConfigurationError(f"text-match match={match!r} (word or regex)")
    conc = _concentration(parts["concentration"]) if "concentration" in parts else None
    return TextRule(text.strip(), pattern, conc, word)


def _concentration(ext: Mapping[str, Any]) -> Decimal:
    q = as_dict(ext.get("valueQuantity"))
    if q.get("code") != "g/mL" or normalise_system(q.get("system")) != UCUM:
        raise ConfigurationError("concentration must be a UCUM g/mL quantity")
    try:
        value = Decimal(str(q.get("value")))
    except InvalidOperation as exc:
        raise ConfigurationError("concentration value is not a number") from exc
    if not value.is_finite() or not 0 < value <= 1:
        raise ConfigurationError("concentration must be between 0 and 1 g/mL")
    return value


# LOINC code -> observation kind, from the one table the prefetch templates also use.
_LOINC_KIND: dict[str, str] = {
    code: kind for kind, codes in OBSERVATION_CODES.items() for code in codes
}


# --- classification --------------------------------------------------------------------------


def observation_kind(code_concept: object) -> str | None:
    """The rule kind (a key of OBSERVATION_CODES) of an Observation.code, or None."""
    for system, code in codings(code_concept):
        if system == LOINC and code in _LOINC_KIND:
            return _LOINC_KIND[code]
    return None


def condition_kinds(concept: object) -> tuple[str, ...]:
    """The condition classes (``ConditionFact.kinds``) a Condition.code belongs to.

    The text rules read the Condition's text as one (``code.text`` and every ``coding.display``
    joined), so an exclusion such as "arterial" anywhere in it (rules.md r2, venous
    thromboembolism) holds whichever part says it.
    """
    pairs = codings(concept)
    texts = [" | ".join(concept_texts(concept))]
    kinds: list[str] = []
    for name, kind in CONDITION_KINDS.items():
        vs = VALUESETS[name]
        if any(vs.has_code(s, c) for s, c in pairs) or vs.text_rule(texts) is not None:
            kinds.append(kind)
    return tuple(kinds)


def is_subcutaneous(dosages: Iterable[object]) -> bool:
    """rules.md "IVIG", as written: route SNOMED 34206005, or SC, SQ, subcut or subcutaneous as a
    whole word in ``route.text`` or the dosage ``text``."""
    vs = VALUESETS["subcutaneous-route"]
    for dosage in dosages:
        d = as_dict(dosage)
        route = d.get("route")
        if any(vs.has_code(s, c) for s, c in codings(route)):
            return True
        texts = [t for t in (as_dict(route).get("text"), d.get("text")) if isinstance(t, str)]
        if vs.text_rule(texts) is not None:
            return True
    return False


def classify_medication(
    concept: object, medication_resource: Mapping[str, Any] | None = None
) -> Medication:
    """Classify the medication of an order, statement or administration.

    ``concept`` is its ``medicationCodeableConcept`` (None when it refers to a Medication);
    ``medication_resource`` the resolved Medication, whose ``code`` and every
    ``ingredient.itemCodeableConcept`` count. Codes decide first; the names of ``text-match``
    are the fallback; ``matched_by_name`` is set when a name decided a class and no code
    matched anything.
    """
    concepts: list[object] = []
    if concept is not None:
        concepts.append(concept)
    med = as_dict(medication_resource)
    if med:
        concepts.append(med.get("code"))
        ingredients = as_list(med.get("ingredient"))
        concepts.extend(as_dict(i).get("itemCodeableConcept") for i in ingredients)
    pairs = [pair for c in concepts for pair in codings(c)]
    texts = [t for c in concepts for t in concept_texts(c)]

    by_code = by_name = False
    found: dict[str, bool] = {}
    brand: TextRule | None = None
    for name in ("statin", "ivig", "estrogen"):
        vs = VALUESETS[name]
        if any(vs.has_code(s, c) for s, c in pairs):
            found[name] = by_code = True
            continue
        rule = vs.text_rule(texts)
        found[name] = rule is not None
        if rule is not None:
            by_name = True
            if name == "ivig":
                brand = rule
    if found["ivig"] and brand is None:
        brand = VALUESETS["ivig"].text_rule(texts)

    concentration = None
    if found["ivig"]:
        concentration = _ivig_concentration(pairs, med, brand, texts)
    codes = tuple(k for c in concepts for k in coding_keys(c))
    return Medication(
        display=_display(concepts),
        is_statin=found["statin"],
        is_ivig=found["ivig"],
        is_estrogen=found["estrogen"],
        # rules.md: "matched by name" only when no code matched at all.
        matched_by_name=by_name and not by_code,
        identified=True,
        codes=codes,
        concentration_g_per_ml=concentration,
    )


def unidentified_medication(display: str) -> Medication:
    """A medicationReference that could not be resolved: no class, no rule fires on it."""
    return Medication(display=display, identified=False)


def _ivig_concentration(
    pairs: list[tuple[str, str]],
    med: Mapping[str, Any],
    brand: TextRule | None,
    texts: list[str],
) -> Decimal | None:
    """Product strength in g/mL: the NDC product, then the Medication's ingredient strength, then
    a brand sold in one strength, then a single "N %" in the product text."""
    table = VALUESETS["ivig"].concentrations
    for pair in pairs:
        if pair in table:
            return table[pair]
    for ingredient in as_list(med.get("ingredient")):
        strength = _ratio_g_per_ml(as_dict(ingredient).get("strength"))
        if strength is not None:
            return strength
    if brand is not None and brand.concentration is not None:
        return brand.concentration
    percents = {Decimal(m) for t in texts for m in _PERCENT.findall(t[:_MAX_TEXT])}
    if len(percents) == 1:
        value = percents.pop() / 100
        if 0 < value <= Decimal("0.3"):
            return value
    return None


_MASS_TO_G = {"g": Decimal(1), "mg": Decimal("0.001")}
_VOLUME_TO_ML = {"ml": Decimal(1), "l": Decimal(1000)}


def _ratio_g_per_ml(ratio: object) -> Decimal | None:
    r = as_dict(ratio)
    num, den = as_dict(r.get("numerator")), as_dict(r.get("denominator"))
    num_unit = _unit_of(num)
    den_unit = _unit_of(den)
    if num_unit not in _MASS_TO_G or den_unit not in _VOLUME_TO_ML:
        return None
    n, d = to_decimal(num.get("value")), to_decimal(den.get("value", 1))
    if n is None or d is None or n <= 0 or d <= 0:
        return None
    value = n * _MASS_TO_G[num_unit] / (d * _VOLUME_TO_ML[den_unit])
    return value if value <= 1 else None


def _unit_of(quantity: Mapping[str, Any]) -> str | None:
    unit = quantity.get("code") if normalise_system(quantity.get("system")) == UCUM else None
    unit = unit or quantity.get("unit") or quantity.get("code")
    return unit.strip().lower() if isinstance(unit, str) else None


def _display(concepts: list[object]) -> str:
    for concept in concepts:
        texts = concept_texts(concept)
        if texts:
            return texts[0].strip()
    for concept in concepts:
        for key in coding_keys(concept):
            return key
    return "unnamed medication"


# Loaded once, at import: a broken mapping stops the service at start-up, not mid-call.
VALUESETS: dict[str, CompiledValueSet] = load_valuesets()
