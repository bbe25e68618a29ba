"""What ``create_app`` builds once and every request shares (``app.extensions["myocds"]``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cds_service.cards_render import Templates
from cds_service.catalogue import Catalogue
from cds_service.fhir.client import FhirClient
from cds_service.protocol.auth import Authenticator
from cds_service.protocol.store import Store
from cds_service.settings import Settings


@dataclass(frozen=True)
class AppState:
    settings: Settings
    authenticator: Authenticator
    store: Store
    templates: Templates  # loaded and validated at start-up
    discovery: dict[str, Any]  # the GET /cds-services document, derived from the services once
    catalogue: Catalogue  # the hooks, rules and services, checked against the templates
    fhir: FhirClient  # what every call's fallback fetches share; closed with the app
