"""Client authentication (CDS Hooks 2.0 §Security). Owned by the trust work (issue 5).

Interface used by the HTTP layer: ``Authenticator(settings).verify(authorization_header,
audience_url) -> Caller`` raising ``Unauthorized``. Until JWT verification lands, a service
with ``MYOCDS_AUTH=required`` refuses every call: the safe default.
"""

from __future__ import annotations

from dataclasses import dataclass

from cds_service.errors import Unauthorized
from cds_service.settings import Settings


@dataclass(frozen=True)
class Caller:
    issuer: str | None
    tenant: str | None
    # fhirServer base URLs this issuer may have us call (empty when authentication is off).
    fhir_allow: tuple[str, ...] = ()


ANONYMOUS = Caller(issuer=None, tenant=None)


class Authenticator:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def verify(self, authorization: str | None, audience: str) -> Caller:
        if not self.settings.auth_required:
            return ANONYMOUS
        raise Unauthorized("JWT verification is not available")
