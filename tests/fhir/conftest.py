"""Fixtures of the FHIR data layer tests: the local FHIR server and settings that may call it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cds_service.services import ServiceDeclaration, find_service
from cds_service.settings import Settings
from tests.support.fhir_server import FhirTestServer


def declared_service(service_id: str, hook: str) -> ServiceDeclaration:
    """The service declared for (id, hook); fails the test module if there is none."""
    service = find_service(service_id, hook)
    assert service is not None, (service_id, hook)
    return service


@pytest.fixture
def fhir_server() -> Iterator[FhirTestServer]:
    """A FHIR server on 127.0.0.1 (random port) with an empty record; stopped after the test."""
    server = FhirTestServer().start()
    yield server
    server.stop()


@pytest.fixture
def fhir_settings(fhir_server: FhirTestServer) -> Settings:
    """Authentication off and the local server allow-listed (it is plain http on loopback)."""
    return Settings().with_overrides(
        auth="off",
        fhir_allow=(fhir_server.base_url,),
        fhir_timeout_seconds=2.0,
        hook_deadline_seconds=3.0,
    )
