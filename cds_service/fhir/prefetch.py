"""Prefetch: the service's templates filled from the hook context, and the values a client sent.

CDS Hooks 2.0 §Prefetch (cds-hooks-2.0.md §3.3-3.5), per prefetch key of the service:

- present, a resource or Bundle: used as sent (a Bundle's ``next`` link is followed by ``gather``);
- present, an OperationOutcome (or a Bundle carrying one): the client could not get it, so it is
  treated as absent (``Accepted.failed``);
- ``null``: "no data", not fetched;
- absent: the template is filled (``render_template``) and fetched from ``fhirServer``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from cds_service.errors import Unprocessable
from cds_service.fhir.client import next_link
from cds_service.fhir.elements import FHIR_ID
from cds_service.fhir.parse import InvalidResource, read_resource, unpack_bundle

Resource = dict[str, Any]

_TOKEN_RE = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
# CDS Hooks 2.0 §Prefetch tokens: the four user identifiers, derived from context.userId "Type/id".
_USER_TOKENS = {
    "userPractitionerId": "Practitioner",
    "userPractitionerRoleId": "PractitionerRole",
    "userPatientId": "Patient",
    "userRelatedPersonId": "RelatedPerson",
}
_REFERENCE_VALUE_RE = re.compile(rf"^[A-Z][A-Za-z]+/{FHIR_ID}$")


def render_template(template: str, context: Mapping[str, Any]) -> str | None:
    """Fill the 2.0 prefetch tokens of ``template`` from a hook ``context``; URL-encode values.

    ``{{context.X}}`` takes a root-level primitive of the context (2.0: only those are tokens);
    ``{{userPractitionerId}}`` and the three other user tokens come from ``context.userId``
    (``Practitioner/123`` gives ``userPractitionerId`` = ``123``). Returns ``None`` when any token
    cannot be filled: like the Sandbox, a template that still needs a value is not requested.
    """
    missing = False

    def fill(match: re.Match[str]) -> str:
        nonlocal missing
        value = _token_value(match.group(1), context)
        if value is None:
            missing = True
            return ""
        # A whole "Type/id" value (context.userId used as a read) keeps its slash; anything else is
        # one opaque value, so "/", "?", "&", "#" inside it cannot change the request.
        return quote(value, safe="/" if _is_reference_value(value) else "")

    rendered = _TOKEN_RE.sub(fill, template)
    return None if missing else rendered


def _is_reference_value(value: str) -> bool:
    # "Type/." or "Type/.." would be a dot segment and step out of the resource type's path.
    return bool(_REFERENCE_VALUE_RE.match(value)) and value.partition("/")[2].strip(".") != ""


def _token_value(token: str, context: Mapping[str, Any]) -> str | None:
    if token.startswith("context."):
        field_name = token.removeprefix("context.")
        if "." in field_name or field_name not in context:
            return None
        return _primitive_text(context[field_name])
    resource_type = _USER_TOKENS.get(token)
    if resource_type is None:
        return None
    user_id = context.get("userId")
    if not isinstance(user_id, str):
        return None
    kind, _, ident = user_id.partition("/")
    if kind != resource_type or not ident or "/" in ident:
        return None
    return ident


def _primitive_text(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value if value else None
    if isinstance(value, int | float):
        return str(value)
    return None  # objects, arrays and null are not 2.0 prefetch tokens


def is_safe_relative(rendered: str) -> bool:
    """A rendered template stays a relative request under fhirServer (no scheme, no dot segment)."""
    parts = urlsplit(rendered)
    if parts.scheme or parts.netloc or rendered.startswith("/"):
        return False
    return all(unquote(seg) not in (".", "..") for seg in parts.path.split("/"))


@dataclass(frozen=True)
class KeyPlan:
    """What a prefetch template asks for: a resource type, and the id when it is a read."""

    resource_type: str
    read_id: str | None  # the id for a read template ("Patient/{{...}}"), None for a search

    @classmethod
    def of(cls, rendered_or_template: str) -> KeyPlan:
        path = urlsplit(rendered_or_template).path.strip("/")
        segments = path.split("/")
        query = "?" in rendered_or_template
        is_read = len(segments) == 2 and segments[1] != "_search" and not query
        return cls(segments[0], unquote(segments[1]) if is_read else None)


@dataclass
class Accepted:
    """A prefetch value as sent, read: its entries (fullUrl, resource), the entries skipped per
    type, and the next link of a paged Bundle; or ``failed``: an OperationOutcome, or a Bundle
    carrying one, the client's way of saying it could not get the data (then nothing else)."""

    entries: list[tuple[str | None, Resource]] = field(default_factory=list)
    skipped: Mapping[str, int] = field(default_factory=dict)
    next_url: str | None = None
    failed: bool = False


def accept(key: str, template: str, value: Any, context: Mapping[str, Any]) -> Accepted:
    """Read a prefetch value sent by the client; ``Unprocessable`` when it is not what the
    template asks for."""
    if not isinstance(value, dict) or not isinstance(value.get("resourceType"), str):
        raise _unprocessable(key, "the value is not a FHIR resource")
    if value["resourceType"] == "OperationOutcome":
        return Accepted(failed=True)
    if value["resourceType"] == "Bundle":
        try:
            unpacked = unpack_bundle(value)
        except InvalidResource as exc:
            raise _unprocessable(key, f"malformed Bundle ({exc})") from None
        if unpacked.outcomes:
            return Accepted(failed=True)
        return Accepted(unpacked.entries, unpacked.skipped, next_link(value))
    rendered = render_template(template, context)
    plan = KeyPlan.of(rendered if rendered is not None else template)
    if value["resourceType"] != plan.resource_type:
        raise _unprocessable(
            key, f"expected a {plan.resource_type} or a Bundle, got a {value['resourceType']}"
        )
    resource = read_resource(value)  # a dict with its resourceType: readable
    if (
        plan.read_id is not None
        and rendered is not None
        and resource.get("id")
        not in (
            None,
            plan.read_id,
        )
    ):
        raise _unprocessable(key, "the resource is not the one the template reads")
    return Accepted([(None, resource)])


def _unprocessable(key: str, reason: str) -> Unprocessable:
    return Unprocessable(f"prefetch key '{key}': {reason}", expression=f"prefetch.{key}")
