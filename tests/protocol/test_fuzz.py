"""Fuzzing through the HTTP interface: no 5xx, every answer schema-valid.

2,050 generated requests (hypothesis, derandomized so the suite is repeatable) plus the
schemathesis run in ``test_openapi.py``; ``scripts/fuzz.py`` runs 20,000 with the same
strategies.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import date

import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings

from cds_service.settings import Settings
from tests.support.strategies import (
    DEAD_FHIR,
    Call,
    check_response,
    feedback_calls,
    local_only_getaddrinfo,
    raw_calls,
    service_calls,
)


def fuzz(max_examples: int) -> settings:
    return settings(
        max_examples=max_examples,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )


def fuzz_settings(base: Settings) -> Settings:
    return base.with_overrides(
        today=date(2026, 1, 15),
        fhir_allow=(DEAD_FHIR,),
        fhir_timeout_seconds=0.5,
        hook_deadline_seconds=1.0,
    )


@pytest.fixture(scope="module")
def fuzz_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FlaskClient]:
    from cds_service import create_app

    database = tmp_path_factory.mktemp("fuzz") / "fuzz.sqlite3"
    base = Settings().with_overrides(auth="off", database_url=f"sqlite:///{database}")
    app = create_app(fuzz_settings(base))
    yield app.test_client()
    app.extensions["myocds"].store.dispose()


@pytest.fixture(scope="module", autouse=True)
def no_dns_beyond_this_machine() -> Iterator[None]:
    """Any name other than localhost fails to resolve: the fuzzer can never reach the network."""
    real = socket.getaddrinfo
    socket.getaddrinfo = local_only_getaddrinfo(real, "fuzz")  # type: ignore[assignment]
    yield
    socket.getaddrinfo = real


COUNTS: dict[str, int] = {}


def _run(client: FlaskClient, call: Call, name: str) -> None:
    COUNTS[name] = COUNTS.get(name, 0) + 1
    check_response(call, call.send(client))


@fuzz(1150)
@given(call=service_calls())
def test_service_calls(fuzz_client: FlaskClient, call: Call) -> None:
    _run(fuzz_client, call, "service")


@fuzz(350)
@given(call=feedback_calls())
def test_feedback_calls(fuzz_client: FlaskClient, call: Call) -> None:
    _run(fuzz_client, call, "feedback")


@fuzz(550)
@given(call=raw_calls())
def test_raw_requests(fuzz_client: FlaskClient, call: Call) -> None:
    _run(fuzz_client, call, "raw")


def test_at_least_2000_requests_were_generated() -> None:
    # Runs after the three fuzz tests above (file order); hypothesis may stop early when a
    # strategy's space is exhausted, so count what was actually sent.
    if len(COUNTS) < 3:
        pytest.skip("run with the fuzz tests above to count their requests")
    assert sum(COUNTS.values()) >= 2000, COUNTS
