"""Fixtures of the FHIR data layer tests: the local FHIR server and settings that may call it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cds_service.fhir.client import FhirClient
from cds_service.services import ServiceDeclaration, find_service
from cds_service.settings import Settings
from tests.support.fhir_server import FhirTestServer


def declared_service(service_id: str, hook: str) -> ServiceDeclaration:
    """The service declared for (id, hook); fails the test module if there is none."""
    service = find_service(service_id, hook)
    assert service is not None, (service_id, hook)
    return service


def reset_when_idle(server: FhirTestServer) -> None:
    """Reset the server once the handlers of the last call are done: a handler records its request
    after the client already has the answer, and a reset under it broke that handler and the
    kept-alive connection the next gather reused ("fhirServer could not be reached", flaky)."""
    assert server.wait_until_idle(timeout=2.0)
    server.reset()


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
        # Generous: these settings serve tests about data, not time (the deadline and timeout
        # tests set their own), and CI machines are loaded.
        fhir_timeout_seconds=10.0,
        hook_deadline_seconds=20.0,
    )


@pytest.fixture
def fhir_client() -> Iterator[FhirClient]:
    """One FHIR client (connection pool, pins, fetch threads) for the test, as ``create_app``
    holds one; closed after the test once its fetches have stopped."""
    client = FhirClient(pool_size=16)
    yield client
    client.close(wait_for_fetches=True)
