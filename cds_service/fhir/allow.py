"""Which fhirServer we may call (owned by the trust work, issue 5).

``check_fhir_server(url, settings, caller)`` raises ``FhirServerRefused`` (412) unless the base
URL may be called: https, or a prefix listed in ``MYOCDS_FHIR_ALLOW``; with authentication on,
also within the caller's issuer allow-list.
"""

from __future__ import annotations

from cds_service.errors import FhirServerRefused
from cds_service.protocol.auth import Caller
from cds_service.settings import Settings


def _allowed_by_prefix(url: str, prefixes: tuple[str, ...]) -> bool:
    return any(url == p or url.startswith(p.rstrip("/") + "/") or url.startswith(p) for p in prefixes)


def check_fhir_server(url: str, settings: Settings, caller: Caller) -> None:
    if settings.auth_required and not _allowed_by_prefix(url, caller.fhir_allow):
        raise FhirServerRefused("fhirServer is not on the allow-list of the calling issuer")
    if _allowed_by_prefix(url, settings.fhir_allow):
        return
    if not url.startswith("https://"):
        raise FhirServerRefused("fhirServer must use https (or be listed in MYOCDS_FHIR_ALLOW)")
