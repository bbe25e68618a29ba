"""An in-memory FHIR server: read and search over one patient's record (a collection Bundle).

Not part of the service's production path (``cds_service.fhir`` never imports it). Three users:
the tests (a request's ``prefetch`` is built by running each service's own templates against a
scenario's record, ``build_prefetch``), the local FHIR server the tests start (which answers HTTP
with ``search``), and the CLI / try-it page. The subset is the one CDS Hooks 2.0
recommends prefetch templates keep to (cds-hooks-2.0.md §3.4): instance reads, type searches by
patient reference, token parameters with ``system|code`` lists, date parameters with the
``eq ne lt gt le ge`` prefixes, ``_id``, ``_sort`` on dates, ``_count`` paging with ``next``
links, and ``_include`` of an order's ``medication`` (rules.md r2). Anything else raises
``UnsupportedSearch`` rather than being silently ignored, so a template that a real EHR would
answer differently fails loudly in the tests. With a ``base`` (the test server), ``urn:uuid:``
references between entries read ``Type/id``, as a server stores them.

Prefetch templates are filled by the service's own ``fhir.prefetch.render_template``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from cds_service.fhir.elements import as_dict, as_list
from cds_service.fhir.prefetch import render_template
from cds_service.services import ServiceDeclaration

# Paging: the offset parameter of the next links this module writes (HAPI FHIR's name for it).
PAGE_OFFSET_PARAM = "_getpagesoffset"

_RESOURCE_TYPE_RE = re.compile(r"^[A-Z][A-Za-z]+$")

Resource = dict[str, Any]


class UnsupportedSearch(ValueError):
    """A request this in-memory search does not implement (or that is not valid FHIR)."""


def build_prefetch(
    service: ServiceDeclaration, context: Mapping[str, Any], record: Mapping[str, Any]
) -> dict[str, Any]:
    """The ``prefetch`` an EHR holding ``record`` would send for ``service``.

    A read that finds nothing gives ``null`` (CDS Hooks: "no data"); a search gives a searchset
    Bundle, possibly empty. A template that cannot be rendered is omitted, as clients do.
    """
    prefetch: dict[str, Any] = {}
    for key, template in service.prefetch.items():
        url = render_template(template, context)
        if url is None:
            continue
        prefetch[key] = search(record, url)
    return prefetch


# ---------------------------------------------------------------------------------------------
# Search


def search(record: Mapping[str, Any], url: str, base: str | None = None) -> Resource | None:
    """Answer a relative FHIR read or search URL against ``record`` (a Bundle of resources).

    A read (``Patient/x``) returns the resource or ``None``; a search (``Observation?...``, also
    ``Observation/_search?...``) returns a searchset Bundle. With ``base`` the Bundle's
    ``fullUrl``s and links are absolute (``{base}/Observation/1``), as a FHIR server writes them;
    without it entries keep the record's own ``fullUrl`` and links are relative.
    """
    parts = urlsplit(url)
    if parts.scheme or parts.netloc:
        raise UnsupportedSearch("expected a relative FHIR URL")
    segments = [unquote(s) for s in parts.path.strip("/").split("/") if s]
    if not segments or not _RESOURCE_TYPE_RE.match(segments[0]):
        raise UnsupportedSearch("expected a resource type")
    resource_type = segments[0]
    every = _entries(record)
    if base:
        every = _as_served(every)
    entries = [e for e in every if e["resource"].get("resourceType") == resource_type]
    if len(segments) == 2 and segments[1] != "_search":
        if parts.query:
            raise UnsupportedSearch("parameters on a read are not supported")
        for entry in entries:
            if entry["resource"].get("id") == segments[1]:
                return entry["resource"]
        return None
    if len(segments) > 2:
        raise UnsupportedSearch("only reads and type-level searches are supported")
    params = parse_qsl(parts.query, keep_blank_values=True)
    return _search_type(resource_type, entries, params, base, every)


def _entries(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [
        e
        for e in record.get("entry") or ()
        if isinstance(e, dict) and isinstance(e.get("resource"), dict)
    ]


def _as_served(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The entries as a FHIR server holds them: a ``urn:uuid:`` reference to another entry's
    ``fullUrl`` reads ``Type/id`` (servers resolve them when they store a transaction)."""
    targets = {
        e["fullUrl"]: f"{e['resource']['resourceType']}/{e['resource']['id']}"
        for e in entries
        if isinstance(e.get("fullUrl"), str)
        and e["fullUrl"].startswith("urn:uuid:")
        and isinstance(e["resource"].get("id"), str)
        and isinstance(e["resource"].get("resourceType"), str)
    }
    if not targets:
        return entries

    def rewrite(value: Any) -> Any:
        if isinstance(value, list):
            return [rewrite(v) for v in value]
        if not isinstance(value, dict):
            return value
        out = {k: rewrite(v) for k, v in value.items()}
        reference = out.get("reference")
        if isinstance(reference, str) and reference in targets:
            out["reference"] = targets[reference]
        return out

    return [{**e, "resource": rewrite(e["resource"])} for e in entries]


# _include: resource type -> reference element, per include parameter name (R4 search parameters).
_INCLUDES: dict[str, dict[str, str]] = {
    "medication": {
        "MedicationRequest": "medicationReference",
        "MedicationStatement": "medicationReference",
        "MedicationAdministration": "medicationReference",
        "MedicationDispense": "medicationReference",
    },
}


def _include_element(resource_type: str, value: str) -> tuple[str, str]:
    """``MedicationRequest:medication[:Medication]`` -> (reference element, target type)."""
    source, _, rest = value.partition(":")
    name, _, target = rest.partition(":")
    element = _INCLUDES.get(name, {}).get(source)
    if source != resource_type or element is None or target not in ("", "Medication"):
        raise UnsupportedSearch(f"_include={value!r} on {resource_type} is not supported")
    return element, "Medication"


def _included(
    page: list[dict[str, Any]],
    includes: list[tuple[str, str]],
    every: list[dict[str, Any]],
    prefix: str,
) -> list[dict[str, Any]]:
    """The entries the page's references name (rules.md "Medication of an order": ``Type/id`` by
    type and id whatever the fullUrl, an absolute or ``urn:uuid:`` reference by fullUrl), each
    once and none already in the page."""
    found: list[dict[str, Any]] = []
    seen = {id(e["resource"]) for e in page}
    for element, target_type in includes:
        for entry in page:
            reference = as_dict(entry["resource"].get(element)).get("reference")
            if not isinstance(reference, str) or reference.startswith("#"):
                continue  # contained: already inside the resource
            for candidate in every:
                resource = candidate["resource"]
                if resource.get("resourceType") != target_type or id(resource) in seen:
                    continue
                if _search_entry(candidate, prefix).get("fullUrl") == reference or (
                    "://" not in reference
                    and _reference_key({"reference": reference})
                    == f"{target_type}/{resource.get('id')}"
                ):
                    seen.add(id(resource))
                    found.append(candidate)
    return found


def _search_type(
    resource_type: str,
    entries: list[dict[str, Any]],
    params: list[tuple[str, str]],
    base: str | None,
    every: list[dict[str, Any]],
) -> Resource:
    count: int | None = None
    includes: list[tuple[str, str]] = []
    offset = 0
    sort_keys: list[tuple[str, bool]] = []  # (parameter, descending)
    filters: list[Callable[[Resource], bool]] = []
    for raw_name, value in params:
        name, _, modifier = raw_name.partition(":")
        if name == "_count":
            count = _non_negative(raw_name, value)
        elif name == PAGE_OFFSET_PARAM:
            offset = _non_negative(raw_name, value)
        elif name == "_sort":
            sort_keys.extend(_sort_keys(resource_type, modifier, value))
        elif name in ("_format", "_pretty"):
            continue  # presentation only; we always answer JSON
        elif name == "_include" and not modifier:
            includes.append(_include_element(resource_type, value))
        elif modifier and not (modifier == "Patient" and name in ("patient", "subject")):
            raise UnsupportedSearch(f"modifier :{modifier} on {name} is not supported")
        else:
            filters.append(_filter(resource_type, name, value))

    matched = [e for e in entries if all(f(e["resource"]) for f in filters)]
    for parameter, descending in reversed(sort_keys):
        matched = _sorted(matched, resource_type, parameter, descending)

    page = matched[offset:] if count is None else matched[offset : offset + count]
    query = [(n, v) for n, v in params if n != PAGE_OFFSET_PARAM]
    prefix = f"{base.rstrip('/')}/" if base else ""
    links = [{"relation": "self", "url": _page_url(prefix, resource_type, query, offset)}]
    if count is not None and offset + count < len(matched):
        links.append(
            {"relation": "next", "url": _page_url(prefix, resource_type, query, offset + count)}
        )
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(matched),
        "link": links,
        "entry": [_search_entry(e, prefix) for e in page]
        + [_search_entry(e, prefix, "include") for e in _included(page, includes, every, prefix)],
    }


def _search_entry(entry: dict[str, Any], prefix: str, mode: str = "match") -> dict[str, Any]:
    resource = entry["resource"]
    out: dict[str, Any] = {}
    if prefix and resource.get("id"):
        out["fullUrl"] = f"{prefix}{resource['resourceType']}/{resource['id']}"
    elif entry.get("fullUrl"):
        out["fullUrl"] = entry["fullUrl"]
    out["resource"] = resource
    out["search"] = {"mode": mode}
    return out


def _page_url(prefix: str, resource_type: str, query: list[tuple[str, str]], offset: int) -> str:
    params = list(query)
    if offset:
        params.append((PAGE_OFFSET_PARAM, str(offset)))
    encoded = urlencode(params, safe="|,:/")
    return f"{prefix}{resource_type}" + (f"?{encoded}" if encoded else "")


def _non_negative(name: str, value: str) -> int:
    if not value.isdigit():
        raise UnsupportedSearch(f"{name} must be a non-negative integer")
    return int(value)


# ---------------------------------------------------------------------------------------------
# Parameters

# Reference parameters naming the patient: the element they search, per resource type.
_PATIENT_ELEMENTS = ("subject", "patient")

# Token parameters: parameter -> resource type -> element (CodeableConcept(s) or code).
_TOKEN_ELEMENTS: dict[str, dict[str, str]] = {
    "code": {
        "Observation": "code",
        "Condition": "code",
        "Procedure": "code",
        "ServiceRequest": "code",
        "MedicationRequest": "medicationCodeableConcept",
        "MedicationAdministration": "medicationCodeableConcept",
        "MedicationStatement": "medicationCodeableConcept",
        "Medication": "code",
    },
    "category": {
        "Observation": "category",
        "Condition": "category",
        "MedicationRequest": "category",
        "MedicationStatement": "category",
        "MedicationAdministration": "category",
    },
    "intent": {"MedicationRequest": "intent", "ServiceRequest": "intent"},
    "clinical-status": {"Condition": "clinicalStatus"},
}
_STATUS_TYPES = frozenset(
    {
        "Observation",
        "MedicationRequest",
        "MedicationAdministration",
        "MedicationStatement",
        "Medication",
        "ServiceRequest",
        "Procedure",
    }
)


def _date_of(*elements: str) -> Callable[[Resource], tuple[datetime, datetime] | None]:
    """Reads the first present ``element[x]`` (dateTime, instant, date or Period) as a range."""

    def read(resource: Resource) -> tuple[datetime, datetime] | None:
        for element in elements:
            for suffix in ("", "DateTime", "Instant", "Date", "Period"):
                value = resource.get(element + suffix)
                if value is None:
                    continue
                if isinstance(value, dict):  # Period
                    start = _stored_range(value.get("start"))
                    end = _stored_range(value.get("end"))
                    if start is None and end is None:
                        continue
                    return (
                        start[0] if start else datetime.min.replace(tzinfo=UTC),
                        end[1] if end else datetime.max.replace(tzinfo=UTC),
                    )
                stored = _stored_range(value)
                if stored is not None:
                    return stored
        return None

    return read


# Date parameters, per resource type (R4 search parameter names).
_DATE_PARAMS: dict[str, dict[str, Callable[[Resource], tuple[datetime, datetime] | None]]] = {
    "Observation": {"date": _date_of("effective")},
    "MedicationAdministration": {"effective-time": _date_of("effective")},
    "MedicationStatement": {"effective": _date_of("effective")},
    "MedicationRequest": {"authoredon": _date_of("authoredOn")},
    "Condition": {"onset-date": _date_of("onset"), "recorded-date": _date_of("recordedDate")},
    "Encounter": {"date": _date_of("period")},
    "Procedure": {"date": _date_of("performed")},
}


def _stored_range(value: Any) -> tuple[datetime, datetime] | None:
    """A date of a stored resource as a range; None when it is not one (a flawed record's date
    counts as absent, as for an undated resource, rather than failing the search)."""
    if not isinstance(value, str):
        return None
    try:
        return _parse_range(value)
    except UnsupportedSearch:
        return None


def _last_updated(resource: Resource) -> tuple[datetime, datetime] | None:
    return _stored_range(as_dict(resource.get("meta")).get("lastUpdated"))


def _date_reader(
    resource_type: str, name: str
) -> Callable[[Resource], tuple[datetime, datetime] | None] | None:
    if name == "_lastUpdated":
        return _last_updated
    return _DATE_PARAMS.get(resource_type, {}).get(name)


def _filter(resource_type: str, name: str, value: str) -> Callable[[Resource], bool]:
    alternatives = _split_or(value)
    if name == "_id":
        ids = set(alternatives)
        return lambda r: _text(r.get("id")) in ids
    if name in ("patient", "subject") and resource_type != "Patient":
        wanted = {_patient_reference(v) for v in alternatives}
        elements = ("subject",) if name == "subject" else _PATIENT_ELEMENTS
        return lambda r: any(_reference_key(r.get(e)) in wanted for e in elements)
    if name == "status" and resource_type in _STATUS_TYPES:
        statuses = set(alternatives)
        return lambda r: _text(r.get("status")) in statuses
    element = _TOKEN_ELEMENTS.get(name, {}).get(resource_type)
    if element is not None:
        tokens = [_parse_token(v) for v in alternatives]
        return lambda r: _token_matches(r.get(element), tokens)
    reader = _date_reader(resource_type, name)
    if reader is not None:
        conditions = [_date_condition(v) for v in alternatives]
        return lambda r: _date_matches(reader(r), conditions)
    raise UnsupportedSearch(f"search parameter {name!r} on {resource_type} is not supported")


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _split_or(value: str) -> list[str]:
    """Split a parameter value on unescaped commas ("or"), undoing FHIR's backslash escapes."""
    parts: list[str] = []
    current: list[str] = []
    chars = iter(value)
    for char in chars:
        if char == "\\":
            current.append(next(chars, ""))
        elif char == ",":
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _patient_reference(value: str) -> str:
    return value if "/" in value else f"Patient/{value}"


def _reference_key(reference: Any) -> str | None:
    """``{"reference": "http://x/fhir/Patient/1"}`` -> ``"Patient/1"`` (relative, comparable)."""
    if not isinstance(reference, dict):
        return None
    text = reference.get("reference")
    if not isinstance(text, str):
        return None
    segments = text.split("?")[0].rstrip("/").split("/")
    if "_history" in segments:
        segments = segments[: segments.index("_history")]
    return "/".join(segments[-2:]) if len(segments) >= 2 else None


def _parse_token(value: str) -> tuple[str | None, str | None]:
    """``system|code`` -> (system, code); ``code`` -> (None, code); ``|code`` -> ("", code)."""
    if "|" not in value:
        return None, value
    system, _, code = value.partition("|")
    return system, code or None


def _token_matches(element: Any, tokens: list[tuple[str | None, str | None]]) -> bool:
    codings: list[tuple[str | None, str | None]] = []
    for item in element if isinstance(element, list) else [element]:
        if isinstance(item, str):
            codings.append((None, item))
        elif isinstance(item, dict):
            for coding in as_list(item.get("coding")):
                if isinstance(coding, dict):
                    codings.append((coding.get("system"), coding.get("code")))
    for system, code in tokens:
        for have_system, have_code in codings:
            if code is not None and have_code != code:
                continue
            if system is None or (system == "" and not have_system) or system == have_system:
                return True
    return False


def _sort_keys(resource_type: str, modifier: str, value: str) -> list[tuple[str, bool]]:
    keys: list[tuple[str, bool]] = []
    for part in _split_or(value):
        descending = part.startswith("-") or modifier == "desc"
        name = part.removeprefix("-")
        if modifier not in ("", "asc", "desc") or _date_reader(resource_type, name) is None:
            raise UnsupportedSearch(f"_sort by {part!r} on {resource_type} is not supported")
        keys.append((name, descending))
    return keys


def _sorted(
    entries: list[dict[str, Any]], resource_type: str, parameter: str, descending: bool
) -> list[dict[str, Any]]:
    reader = _date_reader(resource_type, parameter)
    assert reader is not None  # checked by _sort_keys
    dated = [(reader(e["resource"]), e) for e in entries]
    with_date = [(d, e) for d, e in dated if d is not None]
    # Servers put resources without the sort element last in either direction (HAPI does).
    without_date = [e for d, e in dated if d is None]
    with_date.sort(key=lambda pair: pair[0][0], reverse=descending)
    return [e for _, e in with_date] + without_date


# ---------------------------------------------------------------------------------------------
# Dates (FHIR search "date" semantics: every value is a range at its own precision)

_PREFIXES = ("eq", "ne", "lt", "gt", "le", "ge", "sa", "eb", "ap")


def _parse_range(text: str) -> tuple[datetime, datetime]:
    """A FHIR date/dateTime/instant as the half-open range it denotes (UTC when no offset)."""
    text = text.strip()
    try:
        if len(text) == 4:
            start = datetime(int(text), 1, 1, tzinfo=UTC)
            return start, start.replace(year=start.year + 1)
        if len(text) == 7:
            year, month = int(text[:4]), int(text[5:7])
            start = datetime(year, month, 1, tzinfo=UTC)
            end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
            return start, end
        if len(text) == 10:
            start = datetime.fromisoformat(text).replace(tzinfo=UTC)
            return start, start + timedelta(days=1)
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise UnsupportedSearch("not a FHIR date") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    # Precision of the written value: seconds unless fractions were given.
    step = timedelta(microseconds=1) if "." in text else timedelta(seconds=1)
    if len(text) == 16 or (len(text) > 16 and text[16] != ":"):
        step = timedelta(minutes=1)
    return moment, moment + step


def _date_condition(value: str) -> tuple[str, tuple[datetime, datetime]]:
    prefix = value[:2] if value[:2] in _PREFIXES else "eq"
    if prefix in ("sa", "eb", "ap"):
        raise UnsupportedSearch(f"date prefix {prefix!r} is not supported")
    raw = value[2:] if value[:2] in _PREFIXES else value
    return prefix, _parse_range(raw)


def _date_matches(
    target: tuple[datetime, datetime] | None,
    conditions: Iterable[tuple[str, tuple[datetime, datetime]]],
) -> bool:
    if target is None:
        return False
    t_start, t_end = target
    for prefix, (p_start, p_end) in conditions:
        contained = p_start <= t_start and t_end <= p_end
        if prefix == "eq" and contained:
            return True
        if prefix == "ne" and not contained:
            return True
        if prefix in ("gt", "ge") and (t_end > p_end or (prefix == "ge" and contained)):
            return True
        if prefix in ("lt", "le") and (t_start < p_start or (prefix == "le" and contained)):
            return True
    return False
