"""Our JSON Schemas for CDS Hooks 2.0 (``cds_service/schemas/*.json``, Draft 2020-12).

Used on input (request and feedback bodies) and, in tests, on output (responses and discovery).
The request schema's per-hook parts (which context fields a hook needs) are not in
``request.json``: ``request_schema`` adds them from the hook declarations (``cds_service.hooks``).
A violation becomes ``SchemaViolation`` whose message and ``expression`` name the field at fault.
The message is composed here from the schema, never from the instance: a rejected value may be a
patient id or a token, and OperationOutcome diagnostics must not carry either.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError, best_match
from referencing import Registry, Resource

from cds_service.errors import SchemaViolation
from cds_service.hooks import HOOKS, Hooks

SCHEMA_NAMES = ("common", "request", "response", "feedback", "discovery")

# RFC 3339 §5.6 date-time: a time zone is mandatory ("Z" or an offset); hour 00-23, minute
# 00-59, second 00-60 (60: a leap second), offset hours 00-23.
_RFC3339 = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[Tt]([01]\d|2[0-3]):([0-5]\d):([0-5]\d|60)(\.\d+)?"
    r"([Zz]|[+-](?:[01]\d|2[0-3]):[0-5]\d)$"
)

_FORMATS = FormatChecker(formats=())


@_FORMATS.checks("date-time", raises=ValueError)
def _is_rfc3339(value: object) -> bool:
    if not isinstance(value, str):
        return True
    parse_rfc3339(value)  # ValueError: not the grammar, an impossible date, out of range
    return True


@_FORMATS.checks("uuid", raises=ValueError)
def _is_uuid(value: object) -> bool:
    if not isinstance(value, str):
        return True
    UUID(value)
    # The canonical 8-4-4-4-12 form only: UUID() alone also takes braces and "urn:uuid:".
    return len(value) == 36 and all(value[i] == "-" for i in (8, 13, 18, 23))


@_FORMATS.checks("uri")
def _is_absolute_uri(value: object) -> bool:
    if not isinstance(value, str):
        return True
    parts = urlsplit(value)
    return bool(parts.scheme and parts.netloc) and not any(c.isspace() for c in value)


OUT_OF_RANGE = "is outside the years 0001-9999 once in UTC"


def parse_rfc3339(value: str) -> datetime:
    """An RFC 3339 date-time as an aware datetime in UTC; ``ValueError`` (never another error)
    for anything else, including an impossible date (2025-02-30) and an instant outside the
    years 0001-9999 once in UTC (``9999-12-31T23:59:59-00:01``). A leap second (``:60``) is
    read as the last microsecond of its minute: Python's datetime has no 61st second."""
    match = _RFC3339.match(value)
    if match is None:
        raise ValueError("not an RFC 3339 date-time")
    day, hour, minute, second, fraction, offset = match.groups()
    leap = second == "60"
    text = f"{day}T{hour}:{minute}:{'59' if leap else second}{'' if leap else fraction or ''}"
    zone = "+00:00" if offset in ("Z", "z") else offset
    try:
        moment = datetime.fromisoformat(text + zone)
        if leap:
            moment = moment.replace(microsecond=999999)
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValueError(OUT_OF_RANGE) from None


@cache
def _files() -> dict[str, dict[str, Any]]:
    folder = resources.files("cds_service") / "schemas"
    return {
        name: json.loads((folder / f"{name}.json").read_text(encoding="utf-8"))
        for name in SCHEMA_NAMES
    }


def request_schema(hooks: Hooks = HOOKS) -> dict[str, Any]:
    """``request.json`` with, for each declared hook, what its context must hold: a call on that
    hook without one of its required context fields is refused naming the field."""
    base = _files()["request"]
    parts = [
        {
            "if": {"properties": {"hook": {"const": hook.name}}, "required": ["hook"]},
            "then": {"properties": {"context": hook.context_schema()}},
        }
        for hook in hooks
        if hook.context_schema()
    ]
    return {**base, "allOf": parts} if parts else dict(base)


@cache
def _schemas(hooks: Hooks = HOOKS) -> dict[str, dict[str, Any]]:
    return {**_files(), "request": request_schema(hooks)}


@cache
def _registry(hooks: Hooks = HOOKS) -> Registry:
    return Registry().with_resources(
        (schema["$id"], Resource.from_contents(schema)) for schema in _schemas(hooks).values()
    )


@cache
def validator(name: str, hooks: Hooks = HOOKS) -> Draft202012Validator:
    """The validator of one schema (``request``, ``response``, ``feedback``, ``discovery``);
    the request's per-hook parts from ``hooks``."""
    schema = _schemas(hooks)[name]
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, registry=_registry(hooks), format_checker=_FORMATS)


# The key of ``checkers_for`` for a request on no declared hook, and for the other schemas.
_GENERIC = ""
# Keywords whose values are data, not schemas: a {"$ref": ...} inside one is not a reference;
# and the definitions, validated only where a reference names one.
_DATA_KEYWORDS = frozenset({"const", "enum", "default", "examples", "$defs", "definitions"})
# Members beside a $ref that do not take part in validation.
_ANNOTATIONS = frozenset({"description", "title", "$comment"})


class _CannotResolve(Exception):
    """A schema whose references this module does not write out (a cycle, an $id inside)."""


def _resolved(node: Any, resolver: Any, within: tuple[int, ...] = ()) -> Any:
    """``node`` with every ``$ref`` replaced by the schema it names, recursively.

    jsonschema looks each reference up on every validation (URL joins, JSON pointers, a new
    validator per step); written out, the same keywords are checked in the same order and each
    error is the same (keyword, value, instance path; its ``schema`` has the same ``type``), so
    ``best_match`` and ``describe`` say the same. A $ref beside other validation keywords
    becomes an ``allOf`` of its target in its place, whose errors are its target's as they were.
    """
    if isinstance(node, list):
        return [_resolved(item, resolver, within) for item in node]
    if not isinstance(node, dict):
        return node
    if "$id" in node and within or any(
        key in node for key in ("$anchor", "$dynamicRef", "$dynamicAnchor", "$recursiveRef")
    ):
        raise _CannotResolve(str(sorted(node)))
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "$ref" and isinstance(value, str):
            target = resolver.lookup(value)
            if id(target.contents) in within:
                raise _CannotResolve(value)  # a recursive schema: left to jsonschema
            contents = _resolved(target.contents, target.resolver, (*within, id(target.contents)))
            if set(node) - {"$ref"} <= _ANNOTATIONS:
                return contents
            if "allOf" in node:
                raise _CannotResolve(value)
            out["allOf"] = [contents]
        elif key in _DATA_KEYWORDS:
            out[key] = value
        else:
            out[key] = _resolved(value, resolver, within)
    return out


@cache
def checkers_for(
    name: str, hooks: Hooks = HOOKS
) -> dict[str, Draft202012Validator]:
    """The validators ``validate`` uses for schema ``name``, by hook for ``request`` (the request
    schema's ``allOf`` holds one if/then per hook: a call on a declared hook is checked against
    the base schema and that hook's ``then`` alone, a call on no declared hook against the base
    schema alone, which is what the ifs leave of it), else one for all (key ``_GENERIC``)."""
    validator(name, hooks)  # checks the schema
    base = _schemas(hooks)[name]
    variants: dict[str, dict[str, Any]] = {_GENERIC: base}
    if name == "request":
        base = {key: value for key, value in base.items() if key != "allOf"}
        variants = {_GENERIC: base}
        for hook in hooks:
            if hook.context_schema():
                variants[hook.name] = {
                    **base, "allOf": [{"properties": {"context": hook.context_schema()}}],
                }
    registry = _registry(hooks)
    checkers: dict[str, Draft202012Validator] = {}
    for key, variant in variants.items():
        try:
            written_out = _resolved(variant, registry.resolver(base_uri=variant["$id"]))
        except _CannotResolve:
            written_out = variant  # jsonschema follows its references itself
        checkers[key] = Draft202012Validator(
            written_out, registry=registry, format_checker=_FORMATS
        )
    return checkers


def prepare_checkers(hooks: Hooks = HOOKS) -> None:
    """Build what ``validate`` checks request and feedback bodies with, now: at start-up, so the
    first call does not pay for it and ``myocds serve`` freezes it with the app before forking
    (objects a worker makes later are scanned by every full garbage collection)."""
    for name in ("request", "feedback"):
        checkers_for(name, hooks)


def schema(name: str) -> dict[str, Any]:
    return _schemas()[name]


def validate(name: str, instance: Any, hooks: Hooks = HOOKS) -> None:
    """Raise ``SchemaViolation`` naming the field when ``instance`` breaks schema ``name``.

    Checked by ``checkers_for``: the same schema with its ``$ref``s written out, and for a request
    on a declared hook only that hook's part; the same errors, so the same message."""
    checkers = checkers_for(name, hooks)
    checker = checkers[_GENERIC]
    if name == "request" and isinstance(instance, dict):
        hook = instance.get("hook")
        if isinstance(hook, str):
            checker = checkers.get(hook, checker)
    error = best_match(checker.iter_errors(instance))
    if error is not None:
        expression, reason = describe(error)
        where = expression or "the JSON body"
        raise SchemaViolation(f"{where} {reason}", expression=expression or None)


def errors(name: str, instance: Any) -> list[str]:
    """Every violation as "<field> <reason>" (for test assertions and reports)."""
    found = []
    for error in validator(name).iter_errors(instance):
        expression, reason = describe(error)
        found.append(f"{expression or '(root)'} {reason}")
    return found


def describe(error: ValidationError) -> tuple[str, str]:
    """(FHIRPath-style field expression, reason) for one error, without the rejected value."""
    path: list[str | int] = list(error.absolute_path)
    kind = error.validator
    spec = error.validator_value
    instance = error.instance
    if kind == "required":
        missing = _first_missing(spec, instance)
        return _expression([*path, missing]), "is required"
    if kind == "dependentRequired":
        for trigger, needed in spec.items():
            if isinstance(instance, dict) and trigger in instance:
                missing = _first_missing(needed, instance)
                if missing:
                    return _expression([*path, missing]), f"is required when {trigger} is present"
    if kind in ("anyOf", "oneOf") and all(set(branch) == {"required"} for branch in spec):
        options = " or ".join(", ".join(branch["required"]) for branch in spec)
        return _expression(path), f"needs {options}"
    if kind == "format" and str(error.cause) == OUT_OF_RANGE:
        return _expression(path), OUT_OF_RANGE  # a valid date-time, just not one we can hold
    reason = _REASONS.get(str(kind))
    text = reason(spec) if reason else f"does not satisfy the schema rule '{kind}'"
    return _expression(path), text


def _first_missing(names: Iterable[str], instance: object) -> str:
    present = instance if isinstance(instance, dict) else {}
    return next((n for n in names if n not in present), "")


def _expression(path: Sequence[str | int]) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _type_name(spec: object) -> str:
    names = {"object": "an object", "array": "an array", "string": "a string",
             "integer": "an integer", "number": "a number", "boolean": "true or false",
             "null": "null"}
    if isinstance(spec, list):
        return " or ".join(names.get(str(s), str(s)) for s in spec)
    return names.get(str(spec), str(spec))


_REASONS = {
    "type": lambda spec: f"must be {_type_name(spec)}",
    "enum": lambda spec: "must be one of " + ", ".join(json.dumps(v) for v in spec),
    "const": lambda spec: f"must be {json.dumps(spec)}",
    "minLength": lambda spec: "must not be empty" if spec == 1 else f"is shorter than {spec}",
    "maxLength": lambda spec: f"is longer than {spec} characters",
    "minItems": lambda spec: "must not be empty" if spec == 1 else f"needs {spec} items or more",
    "maxItems": lambda spec: f"has more than {spec} items",
    "minProperties": lambda spec: "must not be empty",
    "pattern": lambda spec: "has an invalid form",
    "format": lambda spec: f"is not a valid {spec}",
    "minimum": lambda spec: f"must be at least {spec}",
    "additionalProperties": lambda spec: "has a member that is not allowed here",
    "not": lambda spec: "has a member that is not allowed here",
    "anyOf": lambda spec: "matches none of the allowed forms",
    "oneOf": lambda spec: "matches none of the allowed forms",
    "maxContains": lambda spec: f"has more than {spec} matching items",
}
