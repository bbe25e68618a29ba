"""Prefetch: the service's templates filled from the hook context, and the values a client sent.

CDS Hooks 2.0 §Prefetch (cds-hooks-2.0.md §3.3-3.5), per prefetch key of the service:

- present, a resource or Bundle: used as sent (a Bundle's ``next`` link is followed by ``gather``);
- present, an OperationOutcome (or a Bundle carrying one): the client could not get it, so it is
  treated as absent (``has_outcome``);
- ``null``: "no data", not fetched;
- absent: the template is filled (``render_template``) and fetched from ``fhirServer``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from cds_service.fhir.elements import FHIR_ID

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
